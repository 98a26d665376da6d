# Sourced by the shell tests that need a tally-server on loopback
# (install_test.sh, python_install_test.sh). The caller defines fail().
#
#   start_tally_server <tally-server> <dir>
#
# starts it on 127.0.0.1:0 without metrics (log: <dir>/server.log), waits for
# its port and sets server_target=127.0.0.1:PORT; SIGTERM on exit.
start_tally_server() {
  local bin=$1 dir=$2
  rm -f "$dir/port"
  "$bin" --listen=127.0.0.1:0 --metrics_port=-1 --port_file="$dir/port" \
    >"$dir/server.log" 2>&1 &
  server_pid=$!
  trap 'kill -TERM $server_pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do [[ -s $dir/port ]] && break; sleep 0.1; done
  [[ -s $dir/port ]] || fail "tally-server did not start: $(cat "$dir/server.log")"
  server_target=127.0.0.1:$(cat "$dir/port")
}
