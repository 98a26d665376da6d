# Sourced by the shell tests that run tally-server processes
# (health_probe_test.sh, server_startup_test.sh): fail(), a scratch dir $tmp,
# the array $pids of processes to kill on exit, and start_server.
# Usage: source server_test_common.sh TEST_NAME TALLY_SERVER
set -euo pipefail
test_name=$1
server=$2
fail() { echo "$test_name: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# start_server NAME ARGS...: tally-server ARGS on a free loopback port, its
# output in $tmp/NAME.log; sets $port once it serves, and $server_pid.
start_server() {
  local name=$1
  shift
  "$server" --listen=127.0.0.1:0 --port_file="$tmp/$name.port" "$@" >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 200); do
    [[ -s $tmp/$name.port ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/$name.log" >&2; fail "$name did not start"; }
    sleep 0.05
  done
  port=$(cat "$tmp/$name.port")
  [[ $port =~ ^[0-9]+$ ]] || fail "$name wrote no port"
}
