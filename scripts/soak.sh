#!/usr/bin/env bash
# Bounded soak (issue 6): tally-bench against its own tally-server on
# loopback, CLIENTS clients for ROUNDS rounds (defaults: 200 clients x 100k
# parameters x 5600 rounds, ~10 minutes on a quiet 2-core machine), sampling the server's
# RSS every 10 s. Prints the samples, the first and last, and fails if the
# last exceeds the first after the warm-up (WARMUP seconds, default 30) by
# more than 10 % or if any push failed.
#   scripts/soak.sh                     # after scripts/build.sh
#   CLIENTS=50 ROUNDS=500 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-200}
PARAMS=${PARAMS:-100000}
ROUNDS=${ROUNDS:-5600}
SCHEDULE=${SCHEDULE:-sync}
WARMUP=${WARMUP:-30}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build/bench/tally-bench --clients="$CLIENTS" --params="$PARAMS" --rounds="$ROUNDS" \
  --schedule="$SCHEDULE" --json="$out/soak.json" >"$out/bench.log" 2>&1 &
bench=$!
server=""
for _ in $(seq 1 100); do
  server=$(pgrep -P "$bench" tally-server || true)
  [[ -n $server ]] && break
  sleep 0.1
done
[[ -n $server ]] || { cat "$out/bench.log"; echo "soak: no server started" >&2; exit 1; }
start=$(date +%s)
samples=()
while kill -0 "$bench" 2>/dev/null && [[ -r /proc/$server/status ]]; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null || true)
  [[ -n $rss ]] && samples+=("$(( $(date +%s) - start ))s:$((rss / 1024))MiB")
  sleep 10
done
rc=0
wait "$bench" || rc=$?
cat "$out/bench.log"
echo "soak: server RSS samples: ${samples[*]}"
[[ $rc == 0 ]] || { echo "soak: FAIL: tally-bench exited $rc" >&2; exit 1; }
# First sample after warm-up vs the last one.
first="" last=""
for s in "${samples[@]}"; do
  t=${s%%s:*}
  v=${s##*:}
  v=${v%MiB}
  if [[ -z $first && $t -ge $WARMUP ]]; then first=$v; fi
  last=$v
done
[[ -n $first ]] || first=$last
echo "soak: RSS after warm-up ${first} MiB, at the end ${last} MiB"
if (( last * 10 > first * 11 )); then
  echo "soak: FAIL: RSS grew by more than 10 %" >&2
  exit 1
fi
echo "soak: OK"
