#!/usr/bin/env bash
# tally-bench --relays=2: a root and two relay processes, the clients spread
# over the relays; every measured update is accepted at a relay and the root
# accepts one combined update per relay and round.
#   tests/bench_relays_test.sh <path to tally-bench> <path to tally-server>
# shellcheck source=tests/bench_test_common.sh
source "$(dirname "$0")/bench_test_common.sh" bench_relays_test "$@"

# 5 clients (3 + 2 over the relays) x 2 measured rounds (+1 warm-up) of
# d = 100000.
out=$("$bench" --server_bin="$server" --clients=5 --params=100000 --rounds=2 \
      --warmup_rounds=1 --relays=2 --json="$tmp/out.json" 2>&1) || fail "tally-bench: $out"
grep -q "behind 2 relays" <<<"$out" || fail "no relays in the summary: $out"
grep -q "relay 1 .*: 3 clients,.*stop OK" <<<"$out" || fail "relay 1: $out"
grep -q "relay 2 .*: 2 clients,.*stop OK" <<<"$out" || fail "relay 2: $out"
json=$(cat "$tmp/out.json")
grep -q '"relays": 2}' <<<"$json" || fail "config.relays: $json"
grep -q '"updates_accepted": 10,' <<<"$json" || fail "not 5 x 2 measured updates: $json"
grep -q '"final_round_observed": true' <<<"$json" || fail "last round not published: $json"
# At the root: 2 relay batches per round, warm-up included (3 rounds).
grep -q '"rounds_completed": 3, "rounds_failed": 0, "updates_accepted": 6, "updates_rejected": 0' \
  <<<"$json" || fail "root did not count 2 relay batches per round: $json"
[ "$(grep -o '"stop_status": "OK"' <<<"$json" | wc -l)" -eq 3 ] || fail "a process did not drain: $json"
echo "bench_relays_test: OK"
