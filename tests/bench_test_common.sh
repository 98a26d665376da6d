# Sourced by the tally-bench shell tests (bench_codec_test.sh,
# bench_relays_test.sh): their arguments, fail() and a scratch dir $tmp
# removed on exit. Usage: source bench_test_common.sh NAME "$@"
set -euo pipefail
test_name=$1
bench=$2
server=$3
fail() { echo "$test_name: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
