#!/usr/bin/env bash
# tally-sim with compressed uploads: the upload bytes it reports per client
# per round are exactly what compress/README.md's wire formats give for the
# model's size, and training still improves accuracy (tally-sim exits 1
# otherwise; checked here too).
#   tests/sim_codec_test.sh <path to tally-sim>
set -euo pipefail
sim=$1
fail() { echo "sim_codec_test: FAIL: $*" >&2; exit 1; }

# run EXPECTED_BYTES CODEC_LABEL ARGS...: a short in-process run whose summary
# must say "upload <EXPECTED_BYTES>.0 B per client per round" and name the
# codec the server assigned.
run() {
  local expected=$1 label=$2 out
  shift 2
  out=$("$sim" --quiet --clients=4 --rounds=4 --samples_per_client=100 --test_samples=500 \
        --seed=3 "$@" 2>&1) || fail "tally-sim $* exited $?: $out"
  grep -q "upload codec  *$label" <<<"$out" || fail "$*: codec is not '$label': $out"
  grep -q "upload  *$expected\.0 B per client per round" <<<"$out" ||
    fail "$*: want $expected B per client per round: $(grep 'upload ' <<<"$out")"
  local initial final
  initial=$(sed -n 's/^  initial accuracy *\([0-9.]*\).*/\1/p' <<<"$out")
  final=$(sed -n 's/^  final accuracy *\([0-9.]*\).*/\1/p' <<<"$out")
  awk -v i="$initial" -v f="$final" 'BEGIN { exit !(f > i + 0.1) }' ||
    fail "$*: accuracy $initial -> $final did not improve by 0.1"
}

# Model [32,10]+[10]: d = 330 floats, float32 1320 B.
# int8, block 256: nb = ceil(330 / 256) = 2 scales (f32), then 330 int8 codes:
# 4 * 2 + 330 = 338.
run 338 "int8 (block 256), error feedback" --upload_codec=int8
# qsgd, s = 7, block 512: w = 1 + ceil(log2(8)) = 4 bits per entry; one bucket
# norm (f32) then ceil(330 * 4 / 8) = 165 bytes: 4 + 165 = 169.
run 169 "qsgd s=7 (block 512), no error feedback" --upload_codec=qsgd --error_feedback=false
# sign, block 100: nb = 4 scales, then ceil(330 / 8) = 42 bytes: 16 + 42 = 58.
run 58 "sign (block 100), error feedback" --upload_codec=sign --codec_block_size=100
# Model [8,10]+[10]: d = 90. topk, ratio 0.125: k = ceil(0.125 * 90) = 12; the
# encoder sends n = k = 12. varint n (1 byte), 12 index varints (every index
# and gap < 90 < 128: 1 byte each), 12 f32 values: 1 + 12 + 48 = 61.
run 61 "topk 12.5%, error feedback" --upload_codec=topk --codec_ratio=0.125 --features=8
# The same with float16 values: 1 + 12 + 24 = 37.
run 37 "topk 12.5% f16, error feedback" --upload_codec=topk --codec_ratio=0.125 --features=8 \
  --codec_half_values
# Uncompressed: 4 * 330 = 1320.
run 1320 "float32" --upload_codec=float32

# A bad codec or parameter fails at start with exit 2, naming it.
set +e
msg=$("$sim" --upload_codec=zip 2>&1); rc=$?
set -e
[[ $rc == 2 ]] && grep -q -- "--upload_codec=zip" <<<"$msg" || fail "--upload_codec=zip: $rc $msg"
set +e
msg=$("$sim" --upload_codec=topk --codec_ratio=2 2>&1); rc=$?
set -e
[[ $rc == 2 ]] && grep -q "ratio" <<<"$msg" || fail "--codec_ratio=2: $rc $msg"
echo "sim_codec_test: OK"
