#!/usr/bin/env bash
# tally-bench's federation modes against real servers on loopback, with
# both drivers (a thread per client; callback state machines):
# --connection_per_client gives every client its own TCP connection (the
# server's port has one ESTABLISHED socket per client, one in all without
# it), --pull downloads the model every round (model bytes x clients x
# rounds), and --id_prefix lets two tally-bench processes drive one server.
#   tests/bench_modes_test.sh <path to tally-bench> <path to tally-server>
# shellcheck source=tests/bench_test_common.sh
source "$(dirname "$0")/bench_test_common.sh" bench_modes_test "$@"

# json_field FILE KEY: the first number after "KEY": in FILE.
json_field() { grep -o "\"$2\": [0-9.]*" "$1" | head -1 | awk '{print $2}'; }

# 3 clients x 2 measured rounds (+1 warm-up) of d = 100000 (400000 bytes),
# by both drivers.
for driver in threads callback; do
  out=$("$bench" --server_bin="$server" --clients=3 --params=100000 --rounds=2 --warmup_rounds=1 \
        --connection_per_client --pull --driver=$driver --json="$tmp/own.json" 2>&1) ||
    fail "tally-bench --driver=$driver: $out"
  [ "$(json_field "$tmp/own.json" server_connections_joined)" = 3 ] ||
    fail "$driver: not 3 connections on the server's port: $(cat "$tmp/own.json")"
  grep -q '"download": {"bytes": 2400000, "pulls": 6,' "$tmp/own.json" ||
    fail "$driver: --pull: not 6 pulls of 400000 bytes: $(cat "$tmp/own.json")"
  grep -q '"updates_accepted": 6,' "$tmp/own.json" || fail "$driver: not 3 x 2 measured updates"
  grep -q '"bytes_accepted": 2400000,' "$tmp/own.json" || fail "$driver: not 6 x 400000 bytes"
  grep -q "a connection per client, pull + push" <<<"$out" || fail "$driver: summary: $out"
  grep -q "PullModel .*p50" <<<"$out" || fail "$driver: no PullModel latency: $out"
done

out=$("$bench" --server_bin="$server" --clients=3 --params=100000 --rounds=1 --driver=callback \
      --json="$tmp/shared.json" 2>&1) || fail "tally-bench: $out"
[ "$(json_field "$tmp/shared.json" server_connections_joined)" = 1 ] ||
  fail "shared: not 1 connection: $(cat "$tmp/shared.json")"
grep -q '"download": {"bytes": 0, "pulls": 0,' "$tmp/shared.json" || fail "pulled without --pull"

# --server_config reaches the started server: its gRPC transport settings
# (grpc.bdp_probe, grpc.memory_bytes) are accepted and the load completes;
# an invalid one stops the run with the field's name.
out=$("$bench" --server_bin="$server" --clients=2 --params=1000 --rounds=1 --json="$tmp/grpc.json" \
      --server_config='grpc { bdp_probe: false memory_bytes: 67108864 }' 2>&1) ||
  fail "--server_config grpc: $out"
grep -q '"server_config": "grpc { bdp_probe: false memory_bytes: 67108864 }"' "$tmp/grpc.json" ||
  fail "no server_config in the JSON"
if out=$("$bench" --server_bin="$server" --clients=2 --params=1000 --rounds=1 --json= \
         --server_config='grpc { memory_bytes: 1000 }' 2>&1); then
  fail "grpc.memory_bytes 1000 accepted: $out"
fi
grep -q "grpc.memory_bytes" <<<"$out" || fail "no field name in: $out"

# Two processes (one per driver), 2 clients each, rounds of 4 at one server.
cat >"$tmp/server.textproto" <<CONFIG
model { tensors { name: "w" shape: 1000 } }
rounds { clients_per_round: 4 min_clients: 4 }
CONFIG
"$server" --config="$tmp/server.textproto" --listen=127.0.0.1:0 --metrics_port=-1 \
  --port_file="$tmp/port" >"$tmp/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 200); do [[ -s $tmp/port ]] && break; sleep 0.05; done
[[ -s $tmp/port ]] || fail "server did not start: $(cat "$tmp/server.log")"
target=127.0.0.1:$(cat "$tmp/port")
driver_a=threads driver_b=callback
for prefix in a b; do
  driver=driver_$prefix
  "$bench" --target="$target" --clients=2 --params=1000 --rounds=3 --warmup_rounds=0 \
    --id_prefix="bench-$prefix-" --connection_per_client --driver="${!driver}" \
    --json="$tmp/$prefix.json" \
    >"$tmp/$prefix.out" 2>&1 &
  eval "pid_$prefix=\$!"
done
wait "$pid_a" || fail "--id_prefix=bench-a-: $(cat "$tmp/a.out")"
wait "$pid_b" || fail "--id_prefix=bench-b-: $(cat "$tmp/b.out")"
for prefix in a b; do
  grep -q '"updates_accepted": 6,' "$tmp/$prefix.json" || fail "$prefix: not 2 x 3 updates"
  grep -q "\"id_prefix\": \"bench-$prefix-\"" "$tmp/$prefix.json" || fail "$prefix: no id_prefix"
done
# Both saw the same 3 rounds of 4 updates (the later one's status may count more).
grep -q '"rounds_completed": 3,' "$tmp/a.json" "$tmp/b.json" || fail "not rounds of 4 updates"
echo "bench_modes_test: OK"
