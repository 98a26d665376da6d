#!/usr/bin/env bash
# Installs the client SDK from a build tree into a temporary prefix, builds
# examples/edge_client against it with find_package(tally), and checks that
# the example runs (no server needed: without arguments it prints its usage
# and exits with 2).
#
#   tests/install_test.sh <build dir> <temp dir>
#
# Installs everything the build tree installs (so every installed target must
# be built). TALLY_INSTALL_COMPONENT=sdk installs only the SDK component.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <build dir> <temp dir>" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
mkdir -p "$2"
tmp_dir=$(cd "$2" && pwd)
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=$tmp_dir/prefix
edge_build=$tmp_dir/edge_build

fail() {
  echo "install_test: FAIL: $*" >&2
  exit 1
}

rm -rf "$prefix" "$edge_build"
component=()
if [[ -n ${TALLY_INSTALL_COMPONENT:-} ]]; then component=(--component "$TALLY_INSTALL_COMPONENT"); fi
cmake --install "$build_dir" --prefix "$prefix" "${component[@]}"

[[ -f $prefix/include/tally/client.h ]] || fail "include/tally/client.h not installed"
[[ -f $prefix/include/tally/model_file.h ]] || fail "include/tally/model_file.h not installed"
[[ -f $prefix/include/tally/tally_c.h ]] || fail "include/tally/tally_c.h (the C API) not installed"
for lib in libtally_client.so libtally_proto.so; do
  compgen -G "$prefix/lib*/$lib" >/dev/null || fail "$lib not installed"
done
compgen -G "$prefix/lib*/cmake/tally/tallyConfig.cmake" >/dev/null ||
  fail "tallyConfig.cmake not installed"
# The installed header must not leak gRPC or protobuf.
if grep -Eq '#include [<"](grpc|google/protobuf|core/)' "$prefix"/include/tally/*.h; then
  fail "the installed headers include gRPC, protobuf or tally core headers"
fi

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$source_dir/examples/edge_client" -B "$edge_build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
cmake --build "$edge_build"

binary=$edge_build/edge_client
[[ -x $binary ]] || fail "$binary was not built"
[[ -x $edge_build/edge_train ]] || fail "$edge_build/edge_train was not built"

set +e
output=$("$binary" 2>&1)
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "edge_client without arguments exited with $rc, want 2 (output: $output)"
grep -q "usage:" <<<"$output" || fail "edge_client printed no usage message (output: $output)"

# Against a real server: the installed SDK joins, pulls and pushes.
server_bin=$build_dir/server/tally-server
if [[ -x $server_bin ]]; then
  source "$source_dir/tests/tally_server.sh"
  start_tally_server "$server_bin" "$tmp_dir"
  output=$("$binary" "$server_target" edge-1 2>&1) ||
    fail "edge_client against tally-server failed: $output"
  grep -q "pushed: update" <<<"$output" || fail "edge_client did not push: $output"
  echo "$output"
fi

echo "install_test: OK"
