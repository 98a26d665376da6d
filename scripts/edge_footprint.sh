#!/usr/bin/env bash
# The SDK's footprint for docs/edge.md: stripped sizes of the SDK libraries
# (x86-64 and arm64) and, per upload codec, the CPU time and peak resident
# memory of pushing a 10M-parameter update, natively and on arm64 under
# qemu-aarch64 (emulated: CPU times are the emulator's, not a board's).
# Needs the builds of scripts/edge_test.sh (BUILD_DIR, ARM64_BUILD_DIR).
#   scripts/edge_footprint.sh [params]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
ARM64_BUILD_DIR=${ARM64_BUILD_DIR:-build-arm64}
params=${1:-10000000}
tmp=$(mktemp -d)
server_pid=
trap '[[ -n $server_pid ]] && kill $server_pid 2>/dev/null; rm -rf "$tmp"' EXIT

echo "stripped SDK libraries (libtally_client.so + libtally_proto.so):"
for arch in x86-64:$BUILD_DIR:strip arm64:$ARM64_BUILD_DIR:aarch64-linux-gnu-strip; do
  IFS=: read -r name dir strip <<<"$arch"
  total=0
  for lib in "$dir/client/libtally_client.so" "$dir/libtally_proto.so"; do
    "$strip" -o "$tmp/stripped" "$(readlink -f "$lib")"
    size=$(stat -c %s "$tmp/stripped")
    total=$((total + size))
    printf '  %-7s %-22s %8d bytes\n' "$name" "$(basename "$lib")" "$size"
  done
  printf '  %-7s %-22s %8d bytes\n' "$name" "total" "$total"
done

cat >"$tmp/server.textproto" <<CONFIG
model { tensors { name: "w" shape: [$params] } }
rounds { clients_per_round: 1 min_clients: 1 }
compression {
  upload { codec: "int8" }
  upload { codec: "topk" params { ratio: 0.01 } }
}
CONFIG
"$BUILD_DIR/server/tally-server" --config="$tmp/server.textproto" --listen=127.0.0.1:0 \
  --metrics_port=-1 --port_file="$tmp/port" >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do [[ -s $tmp/port ]] && break; sleep 0.05; done
target=127.0.0.1:$(cat "$tmp/port")
for codec in float32 int8 topk; do
  echo "x86-64, codec $codec:"
  "$BUILD_DIR/examples/edge_footprint" --target="$target" --client_id="x86-$codec" \
    --codec="$codec" --pushes=2 | sed 's/^/  /'
  echo "arm64 (emulated), codec $codec:"
  qemu-aarch64 "$ARM64_BUILD_DIR/examples/edge_footprint" --target="$target" \
    --client_id="arm64-$codec" --codec="$codec" --pushes=2 | sed 's/^/  /'
done
