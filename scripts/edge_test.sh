#!/usr/bin/env bash
# The C++ SDK on arm64, proven under emulation (docs/edge.md):
#   1. installs what is missing: the native build's packages
#      (scripts/install_deps.sh), Debian's arm64 cross toolchain, qemu-user
#      and the :arm64 -dev packages (adding the arm64 architecture);
#   2. builds the native tally-server (BUILD_DIR, default build/) and the
#      SDK for arm64 (TALLY_SDK_ONLY with cmake/aarch64-linux-gnu.cmake,
#      ARM64_BUILD_DIR, default build-arm64/);
#   3. runs under qemu-aarch64: the SDK's unit tests (tally_sdk_tests) and
#      the C API test against a native server on loopback;
#   4. runs the same federation twice, once with the x86-64 edge_train and
#      once with the arm64 one under qemu, each against its own fresh native
#      server: an int8 client for 6 rounds, then a top-k (error feedback)
#      client on a metered link until round 20, during which the server is
#      restarted (SIGTERM, resumed from its checkpoint); the final models
#      must be equal bit for bit. An arm64 build that lets the compiler fuse
#      multiply-adds (edge_train_fma) is run too and reported, not required
#      to match; the statically linked arm64 build (TALLY_STATIC_GRPC,
#      edge_train_static) must match too.
# The last line says PASS or FAIL and how long it took.
#   scripts/edge_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
BUILD_DIR=${BUILD_DIR:-build}
ARM64_BUILD_DIR=${ARM64_BUILD_DIR:-build-arm64}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
tmp=$(mktemp -d)
pids=()
result="FAIL"
finish() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
  echo "edge_test: $result in $(($(date +%s) - started)) s"
}
trap finish EXIT
fail() {
  result="FAIL ($*)"
  exit 1
}
step() { echo "== edge_test: $* ($(($(date +%s) - started)) s)"; }

build() {
  scripts/install_deps.sh
  scripts/install_deps.sh --edge
  step "native build ($BUILD_DIR)"
  BUILD_DIR=$BUILD_DIR scripts/build.sh
  step "arm64 SDK build ($ARM64_BUILD_DIR)"
  cmake -S . -B "$ARM64_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" -DTALLY_SDK_ONLY=ON \
    -DTALLY_STATIC_GRPC=ON >/dev/null
  cmake --build "$ARM64_BUILD_DIR" -j "$(nproc)"
  aarch64-linux-gnu-readelf -h "$ARM64_BUILD_DIR/client/libtally_client.so" | grep -q AArch64 ||
    fail "libtally_client.so is not an arm64 library"
  # The static build needs no shared library but glibc's.
  if aarch64-linux-gnu-readelf -d "$ARM64_BUILD_DIR/examples/edge_train_static" | grep NEEDED |
    grep -vqE '\[(libc|libm|ld-linux-aarch64)\.so'; then
    fail "edge_train_static needs more than glibc"
  fi
}

server=$root/$BUILD_DIR/server/tally-server
port=""

# start_server DIR N: a native server on 127.0.0.1:$port (a free one the
# first time) with DIR's config and checkpoints; sets $server_pid.
start_server() {
  local dir=$1 n=$2
  rm -f "$dir/port"
  "$server" --config="$dir/server.textproto" --listen="127.0.0.1:${port:-0}" \
    --metrics_port=-1 --checkpoint_dir="$dir/ckpt" --port_file="$dir/port" \
    >"$dir/server.$n.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 200); do
    [[ -s $dir/port ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$dir/server.$n.log" >&2; fail "server $n died"; }
    sleep 0.05
  done
  [[ -s $dir/port ]] || fail "server $n wrote no port"
  port=$(cat "$dir/port")
}

write_config() {
  cat >"$1/server.textproto" <<'EOF'
model {
  tensors { name: "dense/kernel" shape: [16, 4] }
  tensors { name: "dense/bias" shape: [4] }
  init { kind: UNIFORM scale: 0.1 seed: 7 }
}
rounds { clients_per_round: 1 min_clients: 1 total_rounds: 20 local_steps: 5 }
checkpoint_interval_ms: 1
compression {
  upload { codec: "int8" params { block_size: 16 } }
  upload { codec: "topk" params { ratio: 0.25 } }
}
EOF
}

# federation NAME BINARY [RUNNER...]: the int8 then top-k clients against a
# fresh server restarted during the top-k phase; the final model goes to
# $tmp/NAME/model.bin.
federation() {
  local name=$1 dir=$tmp/$1 client
  shift
  mkdir -p "$dir"
  write_config "$dir"
  port=""
  start_server "$dir" 1
  "${@:2}" "$1" --target="127.0.0.1:$port" --client_id=edge-int8 --codec=int8 --rounds=6 \
    --seed=42 >"$dir/int8.log" 2>&1 || { cat "$dir/int8.log" >&2; fail "$name int8 client"; }
  # 2000 B/s: a round moves ~360 bytes, so the restart lands mid-phase.
  "${@:2}" "$1" --target="127.0.0.1:$port" --client_id=edge-topk --codec=topk --seed=42 \
    --max_bandwidth=2000 --model_out="$dir/model.bin" >"$dir/topk.log" 2>&1 &
  client=$!
  pids+=("$client")
  for _ in $(seq 1 600); do
    [[ $(grep -c pushed "$dir/topk.log") -ge 3 ]] && break
    sleep 0.05
  done
  kill -TERM "$server_pid"
  wait "$server_pid" || fail "$name: the server did not drain cleanly"
  start_server "$dir" 2
  grep -q "resumed from checkpoint" "$dir/server.2.log" || fail "$name: no checkpoint resumed"
  wait "$client" || { cat "$dir/topk.log" >&2; fail "$name top-k client"; }
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  echo "$name: $(grep -c pushed "$dir/int8.log") int8 + $(grep -c pushed "$dir/topk.log") top-k" \
    "rounds; restarted server resumed at version $(grep -m1 -o 'resumed.*version [0-9]*' \
    "$dir/server.2.log" | grep -o '[0-9]*$'), the client retried $(grep -c 'attempts [2-9]' \
    "$dir/topk.log") push(es) and restarted $(grep -c 'round failed' "$dir/topk.log") round(s);" \
    "$(tail -1 "$dir/topk.log")"
}

# max_diff A B: the largest |a - b| over two float32 files.
max_diff() {
  python3 -c 'import struct,sys
a,b=(open(p,"rb").read() for p in sys.argv[1:])
x,y=(struct.unpack("<%df"%(len(s)//4),s) for s in (a,b))
print(max(abs(p-q) for p,q in zip(x,y)) if len(x)==len(y) else "sizes differ")' "$1" "$2"
}

build
arm=$root/$ARM64_BUILD_DIR
step "arm64 SDK unit tests under qemu-aarch64"
qemu-aarch64 "$arm/tests/tally_sdk_tests" --gtest_brief=1 >"$tmp/sdk_tests.log" 2>&1 ||
  { tail -40 "$tmp/sdk_tests.log" >&2; fail "arm64 tally_sdk_tests"; }
grep -E "^\[  PASSED  \]" "$tmp/sdk_tests.log"
step "arm64 C API test under qemu-aarch64, native server"
tests/with_server.sh "$server" qemu-aarch64 "$arm/tests/tally_c_api_test" | tail -1 ||
  fail "arm64 C API test"

step "federation: x86-64 clients"
federation x86 "$root/$BUILD_DIR/examples/edge_train"
step "federation: arm64 clients under qemu-aarch64"
federation arm64 "$arm/examples/edge_train" qemu-aarch64
step "federation: arm64 clients linked statically"
federation arm64-static "$arm/examples/edge_train_static" qemu-aarch64
step "federation: arm64 clients with fused multiply-adds"
federation arm64-fma "$arm/examples/edge_train_fma" qemu-aarch64

fma_diff=$(max_diff "$tmp/x86/model.bin" "$tmp/arm64-fma/model.bin")
echo "arm64 with FMA contraction vs x86-64: max |difference| $fma_diff (expected to differ)"
for name in arm64 arm64-static; do
  if ! cmp -s "$tmp/x86/model.bin" "$tmp/$name/model.bin"; then
    fail "$name model != x86-64 model, max |difference| $(max_diff "$tmp/x86/model.bin" "$tmp/$name/model.bin")"
  fi
done
result="PASS (arm64 SDK tests, C API test, server restart; arm64 models (shared and static) == x86-64 model bit for bit)"
