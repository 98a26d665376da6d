#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DTALLY_SANITIZE=address, in build-asan/) and runs all of it:
#   scripts/sanitize.sh
# Not part of .ci/run: a sanitized build of everything takes ~8 minutes on
# 2 cores. Run it before merging changes to server/, client/ or the kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALLY_SANITIZE=address \
  -DTALLY_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-asan -j "$(nproc)" --target tally_unit_tests tally_tests
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
build-asan/tests/tally_unit_tests "$@"
build-asan/tests/tally_tests "$@"
