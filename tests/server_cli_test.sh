#!/usr/bin/env bash
# tally-server's command line as a user meets it: --help lists every flag,
# flags override the config, and an invalid config fails at start naming the
# field.
#   tests/server_cli_test.sh <path to tally-server>
set -euo pipefail
server=$1
fail() { echo "server_cli_test: FAIL: $*" >&2; exit 1; }
# expect_failure PATTERN ARGS...: tally-server exits 1 printing PATTERN.
expect_failure() {
  local pattern=$1 msg rc
  shift
  set +e
  msg=$("$server" "$@" 2>&1)
  rc=$?
  set -e
  [[ $rc == 1 ]] || fail "'$*' exited $rc, want 1"
  grep -q -- "$pattern" <<<"$msg" || fail "'$*' printed: $msg"
}

help=$("$server" --help 2>&1 || true)
for flag in config listen metrics_port checkpoint_dir rule pre f schedule port_file log_level \
            print_config shutdown_grace_ms role upstream relay_id log_format \
            start_fresh_if_corrupt; do
  grep -q -- "--$flag " <<<"$help" || fail "--help does not document --$flag"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/server.textproto" <<'CFG'
rounds { clients_per_round: 6 }
optimizer { name: "fedadam" }
CFG
out=$("$server" --config="$tmp/server.textproto" --listen=127.0.0.1:7001 --metrics_port=-1 \
      --checkpoint_dir="$tmp/ckpt" --rule=trimmed_mean --pre=clipping,nnm --f=2 --print_config)
grep -q 'listen_address: "127.0.0.1:7001"' <<<"$out" || fail "--listen not applied: $out"
grep -q 'metrics_port: -1' <<<"$out" || fail "--metrics_port not applied"
grep -q "checkpoint_dir: \"$tmp/ckpt\"" <<<"$out" || fail "--checkpoint_dir not applied"
grep -q 'rule: "trimmed_mean"' <<<"$out" || fail "--rule not applied"
[[ $(grep -c 'pre: ' <<<"$out") == 2 ]] || fail "--pre not applied"
grep -q 'learning_rate: 0.1' <<<"$out" || fail "fedadam's default learning rate missing"

expect_failure "strategy.rule: krum: f=3 requires n > 2f, got n=6" \
  --config="$tmp/server.textproto" --rule=krum --f=3
echo 'rounds { min_clients: 50 }' >"$tmp/bad.textproto"
expect_failure "rounds.min_clients" --config="$tmp/bad.textproto"
expect_failure "missing.textproto" --config="$tmp/missing.textproto"

# An asynchronous schedule from the command line, its defaults filled in.
out=$("$server" --config="$tmp/server.textproto" --schedule=fedbuff --print_config)
grep -q 'name: "fedbuff"' <<<"$out" || fail "--schedule not applied: $out"
grep -q 'buffer_size: 3' <<<"$out" || fail "fedbuff's default buffer_size missing: $out"
grep -q 'num_clients: 6' <<<"$out" || fail "num_clients does not default to clients_per_round"
expect_failure "schedule.name: unknown 'fedbuf'" --config="$tmp/server.textproto" --schedule=fedbuf
expect_failure "needs batches of updates" --schedule=fedasync --rule=median
echo 'schedule { name: "fedbuff" buffer_size: 2 } strategy { rule: "krum" f: 1 }' \
  >"$tmp/krum.textproto"
expect_failure "strategy.rule: krum" --config="$tmp/krum.textproto"
# Relay mode: the flags, and its config errors before any connection.
out=$("$server" --role=relay --upstream=root.example:50051 --relay_id=r1 --print_config)
grep -q 'upstream: "root.example:50051"' <<<"$out" || fail "--upstream not applied: $out"
grep -q 'id: "r1"' <<<"$out" || fail "--relay_id not applied: $out"
expect_failure "--role=relay needs --upstream" --role=relay
expect_failure "run with --role=relay" --upstream=root.example:50051
expect_failure "--role: 'proxy'" --role=proxy
expect_failure "a relay keeps no state" --role=relay --upstream=root.example:50051 \
  --checkpoint_dir="$tmp/ckpt"
echo "server_cli_test: OK"
