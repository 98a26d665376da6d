#!/usr/bin/env bash
# Fuzzes every codec decoder (and encoder) in compress/ and the model file
# readers of core/model_file.h (safetensors, .npz) with libFuzzer +
# AddressSanitizer + UndefinedBehaviorSanitizer, for a bounded time each:
#   scripts/fuzz.sh [seconds per target, default 20]
# Builds only compress/ and core/vector_ops.cc with clang, in build-fuzz/
# (tests/fuzz/CMakeLists.txt), seeds the runs with the hand-made malformed
# payloads of tests/compress_corpus.h plus valid payloads of every codec, and
# runs tests/fuzz/codec_fuzzer once per codec (TALLY_FUZZ_CODEC) and once in
# free mode. Needs clang-14 and libclang-rt-14-dev (libFuzzer's runtime).
# Exits non-zero if any run finds a crash; reproducers land in
# build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-20}"
BUILD="${TALLY_FUZZ_BUILD_DIR:-build-fuzz}"
CXX_CLANG="${TALLY_FUZZ_CXX:-clang++}"

cmake -S tests/fuzz -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CXX_CLANG" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"

seeds="$BUILD/seeds"
rm -rf "$seeds"
mkdir -p "$seeds" "$BUILD/artifacts"
"$BUILD/make_codec_corpus" "$seeds"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for codec in all float32 float16 bfloat16 int8 qsgd sign topk randk spsa; do
  work="$BUILD/corpus-$codec"
  mkdir -p "$work"
  echo "== fuzz.sh: $codec for ${SECONDS_PER_TARGET}s"
  if [ "$codec" = all ]; then unset TALLY_FUZZ_CODEC; else export TALLY_FUZZ_CODEC="$codec"; fi
  if ! "$BUILD/codec_fuzzer" "$work" "$seeds" -max_total_time="$SECONDS_PER_TARGET" \
      -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$BUILD/artifacts/$codec-" >"$BUILD/fuzz-$codec.log" 2>&1; then
    failed+=("$codec")
    tail -n 40 "$BUILD/fuzz-$codec.log"
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$BUILD/fuzz-$codec.log" |
    tr '\n' ' '
  echo
done
unset TALLY_FUZZ_CODEC

# The model file readers (core/model_file.h), seeded with files tally writes.
model_seeds="$BUILD/seeds-model-files"
rm -rf "$model_seeds"
mkdir -p "$model_seeds" "$BUILD/tmp"
export TMPDIR="$BUILD/tmp"  # The fuzzer's input files.
"$BUILD/model_file_fuzzer" --seeds="$model_seeds" >/dev/null 2>&1
for format in safetensors npz; do
  work="$BUILD/corpus-$format"
  mkdir -p "$work"
  echo "== fuzz.sh: model files ($format) for ${SECONDS_PER_TARGET}s"
  if ! TALLY_FUZZ_FORMAT=$format "$BUILD/model_file_fuzzer" "$work" "$model_seeds" \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$format-" \
      >"$BUILD/fuzz-$format.log" 2>&1; then
    failed+=("$format")
    tail -n 40 "$BUILD/fuzz-$format.log"
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$BUILD/fuzz-$format.log" |
    tr '\n' ' '
  echo
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (see $BUILD/fuzz-*.log, $BUILD/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crashes"
