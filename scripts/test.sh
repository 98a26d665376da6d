#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): installs what is
# missing, builds everything in Release, runs the whole test suite, the
# SDK on arm64 under qemu-user (scripts/edge_test.sh, docs/edge.md), then
# fuzzes every codec decoder for a few seconds each (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
BUILD_DIR="${BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
BUILD_DIR="$BUILD_DIR" scripts/edge_test.sh
scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
