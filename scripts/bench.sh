#!/usr/bin/env bash
# Runs the documented benchmark set and rewrites the generated tables of
# docs/benchmarks.md from the results (scripts/bench_tables.py), so the
# numbers are refreshed by one command. Each tally-bench configuration runs
# REPEAT times, interleaved (every configuration once, then again), each
# run's JSON (with the machine's load averages) kept in RESULTS; tables show
# min–max (median) over the repetitions.
#   scripts/build.sh && scripts/bench.sh          # everything, ~15 min on 2 cores
#   REPEAT=1 SETS="ingest connections" scripts/bench.sh
#   RESULTS=/tmp/bench DOC=/tmp/page scripts/bench.sh   # another page
# Sets: ingest codecs schedules relays connections kernels rules codecs_micro.
# With SETS, only those sets' tables are rewritten; the rest stay.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
REPEAT=${REPEAT:-3}
SETS=${SETS:-"ingest codecs schedules relays connections kernels rules codecs_micro"}
DOC=${DOC:-}
[[ -n $DOC ]] || DOC=docs/benchmarks.md
RESULTS=${RESULTS:-$(mktemp -d /tmp/tally-bench-results.XXXXXX)}
mkdir -p "$RESULTS"
bench=$BUILD_DIR/bench/tally-bench
micro=$BUILD_DIR/bench/tally_micro_bench
[[ -x $bench && -x $micro ]] || { echo "bench.sh: build first (scripts/build.sh)" >&2; exit 1; }
# 10,000 connections need 10,000 descriptors at each end (the started server
# inherits this limit).
ulimit -n "$(ulimit -Hn)"

selected() { [[ " $SETS " == *" $1 "* ]]; }

# name|set|tally-bench arguments (shell words). bench_tables.py knows the names.
dense="--params=10000000 --rounds=5"
runs=(
  "shared|ingest|--clients=10 $dense"
  "own|ingest|--clients=10 $dense --connection_per_client"
  "own_pull|ingest|--clients=10 $dense --connection_per_client --pull"
  "own_callback|ingest|--clients=10 $dense --connection_per_client --driver=callback"
  "own_nobdp|ingest|--clients=10 $dense --connection_per_client --server_config='grpc { bdp_probe: false }'"
  "int8|codecs|--clients=10 --params=10000000 --rounds=10 --connection_per_client --codec=int8"
  "topk|codecs|--clients=10 --params=10000000 --rounds=10 --connection_per_client --codec=topk --codec_ratio=0.01"
  "fedasync|schedules|--clients=64 --params=1000000 --rounds=20 --connection_per_client --schedule=fedasync"
  "fedbuff|schedules|--clients=64 --params=1000000 --rounds=20 --connection_per_client --schedule=fedbuff"
  "sync64|schedules|--clients=64 --params=1000000 --rounds=20 --connection_per_client"
  "single10|relays|--clients=10 --params=10000000 --rounds=3 --connection_per_client"
  "relays10|relays|--clients=10 --params=10000000 --rounds=3 --connection_per_client --relays=2"
  "conn1k|connections|--clients=1000 --params=10000 --rounds=3 --driver=callback --connection_per_client"
  "conn10k|connections|--clients=10000 --params=10000 --rounds=3 --driver=callback --connection_per_client"
  "conn10k_quota|connections|--clients=10000 --params=10000 --rounds=3 --driver=callback --connection_per_client --server_config='grpc { memory_bytes: 268435456 }'"
)

for r in $(seq 1 "$REPEAT"); do
  for run in "${runs[@]}"; do
    IFS='|' read -r name set args <<<"$run"
    selected "$set" || continue
    echo "bench.sh: [$r/$REPEAT] $name (load $(cut -d' ' -f1-3 /proc/loadavg)): tally-bench $args"
    eval "set -- $args"
    if ! "$bench" "$@" --json="$RESULTS/$name.$r.json" >"$RESULTS/$name.$r.log" 2>&1; then
      cat "$RESULTS/$name.$r.log" >&2
      echo "bench.sh: $name failed; results so far in $RESULTS" >&2
      exit 1
    fi
  done
done

# micro NAME FILTER [ENV...]: tally_micro_bench, medians of 3 repetitions
# (its JSON has the load averages).
micro() {
  local name=$1 filter=$2
  shift 2
  echo "bench.sh: $name (load $(cut -d' ' -f1-3 /proc/loadavg)): tally_micro_bench $filter"
  env "$@" "$micro" --benchmark_filter="$filter" --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true --benchmark_format=json \
    --benchmark_out="$RESULTS/$name.micro.json" --benchmark_out_format=json >/dev/null
}
if selected kernels; then
  micro kernels 'BM_StripedAccumulatorAddBytes|BM_AllFiniteBytes|BM_AxpyBytes'
fi
if selected rules; then
  micro rules2 'BM_Rule/.*/50/1000000/'
  micro rules1 'BM_Rule/.*/50/1000000/' TALLY_RULE_THREADS=1
fi
if selected codecs_micro; then
  micro codecs_micro 'BM_Codec'
fi

python3 scripts/bench_tables.py --results "$RESULTS" --doc "$DOC" --sets "$SETS"
echo "bench.sh: results in $RESULTS; tables written to $DOC"
