#!/usr/bin/env bash
# Runs a command against a fresh tally-server on a free loopback port and
# exits with the command's status. The server gets a small model (kernel
# [8, 2] + bias [2]), one update per round and int8 / topk uploads; the
# command finds it at $TALLY_TARGET (127.0.0.1:PORT).
#   tests/with_server.sh <tally-server> <command> [args...]
# Used by the C API test (natively, and under qemu-user by
# scripts/edge_test.sh) and the Python ctypes example's test.
set -euo pipefail
server=$1
shift
tmp=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
cat >"$tmp/server.textproto" <<'CONFIG'
model {
  tensors { name: "dense/kernel" shape: [8, 2] }
  tensors { name: "dense/bias" shape: [2] }
  init { kind: UNIFORM scale: 0.1 seed: 3 }
}
rounds { clients_per_round: 1 min_clients: 1 }
compression {
  upload { codec: "int8" }
  upload { codec: "topk" params { ratio: 0.25 } }
}
CONFIG
"$server" --config="$tmp/server.textproto" --listen=127.0.0.1:0 --metrics_port=-1 \
  --port_file="$tmp/port" >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
  [[ -s $tmp/port ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.05
done
[[ -s $tmp/port ]] || { echo "with_server: tally-server wrote no port" >&2; exit 1; }
export TALLY_TARGET=127.0.0.1:$(cat "$tmp/port")
set +e
"$@"
rc=$?
set -e
[[ $rc -eq 0 ]] || { echo "with_server: the server's log:" >&2; tail -20 "$tmp/server.log" >&2; }
exit $rc
