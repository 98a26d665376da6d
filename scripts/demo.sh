#!/usr/bin/env bash
# The README's first command: installs what is missing, builds in Release,
# starts tally-server on its embedded default config, and runs the demo
# federation (20 simulated clients, 30 rounds of FedAvg) against it over gRPC
# on loopback. Ports: TALLY_PORT (default 50051), TALLY_METRICS_PORT (9464).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
BUILD_DIR="${BUILD_DIR:-build}"
PORT="${TALLY_PORT:-50051}"
METRICS_PORT="${TALLY_METRICS_PORT:-9464}"
WORK="$(mktemp -d -t tally-demo.XXXXXX)"
LOG="$WORK/tally-server.log"

"$BUILD_DIR/server/tally-server" --listen="127.0.0.1:$PORT" --metrics_port="$METRICS_PORT" \
  --port_file="$WORK/port" >"$LOG" 2>&1 &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -s "$WORK/port" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "tally-server failed to start:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$WORK/port" ] || { echo "tally-server did not start in 10 s; log: $LOG" >&2; exit 1; }
echo "tally-server pid $SERVER_PID on 127.0.0.1:$PORT, metrics on :$METRICS_PORT, log $LOG"

"$BUILD_DIR/sim/tally-sim" --server="127.0.0.1:$PORT" "$@"
echo
echo "Server metrics (excerpt):"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^tally_(rounds_completed|updates_accepted|model_version|update_bytes_received)' || true
