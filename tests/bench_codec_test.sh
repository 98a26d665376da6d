#!/usr/bin/env bash
# tally-bench --codec: the started server accepts the codec, every pushed
# update is the codec's encoding of d floats (compress/README.md), and the
# JSON reports payload and represented bytes.
#   tests/bench_codec_test.sh <path to tally-bench> <path to tally-server>
# shellcheck source=tests/bench_test_common.sh
source "$(dirname "$0")/bench_test_common.sh" bench_codec_test "$@"

# run EXPECTED_BYTES ARGS...: 2 clients x 3 measured rounds of d = 100000.
run() {
  local expected=$1 out
  shift
  out=$("$bench" --server_bin="$server" --clients=2 --params=100000 --rounds=3 \
        --warmup_rounds=1 --json="$tmp/out.json" "$@" 2>&1) || fail "tally-bench $*: $out"
  grep -q "codec  *${1#--codec=}, $expected bytes per update" <<<"$out" ||
    fail "$*: want $expected bytes per update: $out"
  grep -q "\"bytes_accepted\": $((6 * expected))," "$tmp/out.json" ||
    fail "$*: bytes_accepted is not 6 x $expected: $(cat "$tmp/out.json")"
  grep -q '"updates_accepted": 6,' "$tmp/out.json" || fail "$*: not 6 updates"
  grep -q '"represented_gb_per_second": ' "$tmp/out.json" || fail "$*: no represented rate"
}

# int8, block 256: 4 * ceil(100000 / 256) + 100000 = 4 * 391 + 100000.
run 101564 --codec=int8
# float32 through the encoded path: 4 * 100000.
run 400000 --codec=float32
# bfloat16: 2 * 100000.
run 200000 --codec=bfloat16
echo "bench_codec_test: OK"
