#!/usr/bin/env bash
# Builds the test suite with ThreadSanitizer (-DTALLY_SANITIZE=thread, in
# build-tsan/) and runs every test TSan can check; exits non-zero on any
# report (TSan's exit code 66) or test failure:
#   scripts/tsan.sh [gtest flags, e.g. --gtest_filter='CoordinatorStressTest.*']
# Not part of .ci/run. Run it before merging changes to locking in core/,
# aggregators/ or server/.
#
# What is not run: tests that move RPCs through gRPC. Debian's gRPC and
# Abseil are not built with TSan, so gRPC's own synchronisation (absl::Mutex,
# atomics in libgrpc) is invisible to it and every hand-off between a
# reactor's callbacks is reported (thousands of reports per test, in
# grpcpp's inlined call code and in our reactors). The coordinator, store,
# pools and accumulators they exercise are covered without gRPC by
# CoordinatorStressTest and the other unit tests. A new test that starts a
# server or makes RPCs belongs in GRPC_TESTS below.
set -euo pipefail
cd "$(dirname "$0")/.."
GRPC_TESTS='ServerIntegrationTest.*:TlsTest.*:AsyncServerTest.*:ClientTest.*:FederationTest.*'
GRPC_TESTS+=':SimAttackFederationTest.*:CheckpointTest.RestartedServerResumesFromItsCheckpoint:RelayTest.*'
GRPC_TESTS+=':ExactServerTest.*:StallServerTest.*'
GRPC_TESTS+=':LocalDpTest.*:PrivacyServerTest.*:WorkflowServerTest.*'
GRPC_TESTS+=':ClientIntegrationTest.*:ClientMeteredTest.*:ServerSessionTest.*:ServerStartupTest.*'
GRPC_TESTS+=':ModelInitTest.TheCppSdkWritesAModelAServerStartsFrom:ModelInitTest.ARealServerServesTheFilesValues'
GRPC_TESTS+=':ModelInitTest.ACheckpointWinsOverTheFile:CheckpointTest.AFlippedHeaderBitFallsBackToThePreviousCheckpoint'
scripts/install_deps.sh
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALLY_SANITIZE=thread \
  -DTALLY_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-tsan -j "$(nproc)" --target tally_unit_tests tally_tests
export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
build-tsan/tests/tally_unit_tests "$@"
build-tsan/tests/tally_tests --gtest_filter="-$GRPC_TESTS" "$@"
