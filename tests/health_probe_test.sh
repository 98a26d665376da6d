#!/usr/bin/env bash
# tally-health against real tally-server processes: SERVING is exit 0; an
# unknown service, a closed port, a peer that never answers (--timeout), the
# wrong TLS trust and bad flags are non-zero with grpc_health_probe's codes
# (tools/tally_health.cc); TLS and mutual TLS with tests/gen_test_pki.sh.
#   tests/health_probe_test.sh <tally-health> <tally-server> <python3>
set -euo pipefail
health=$1
python=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/server_test_common.sh
source "$here/server_test_common.sh" health_probe_test "$2"

# start_configured NAME CONFIG_TEXT: start_server with this config, no /metrics.
start_configured() {
  printf '%s\n' "$2" >"$tmp/$1.textproto"
  start_server "$1" --config="$tmp/$1.textproto" --metrics_port=-1
}

# expect CODE ARGS...: tally-health ARGS exits CODE; its output is in $out.
expect() {
  local want=$1 rc
  shift
  set +e
  out=$("$health" "$@" 2>&1)
  rc=$?
  set -e
  [[ $rc == "$want" ]] || fail "tally-health $* exited $rc, want $want: $out"
}

start_configured plain 'rounds { clients_per_round: 2 }'
plain_pid=$server_pid
expect 0 --address="127.0.0.1:$port"
grep -q "127.0.0.1:$port: SERVING" <<<"$out" || fail "no SERVING line: $out"
expect 3 --address="127.0.0.1:$port" --service=no.such.Service
grep -q "service name unknown" <<<"$out" || fail "unknown service not said: $out"
# Plaintext server, TLS probe: the handshake fails.
expect 2 --address="127.0.0.1:$port" --tls
expect 1 --address="127.0.0.1:$port" --tls_cert_file=/dev/null
expect 1 --address="127.0.0.1:$port" extra-argument

# A stopped server's port: connection refused, at once.
kill -TERM "$plain_pid"
wait "$plain_pid" || fail "tally-server did not exit 0 on SIGTERM"
expect 2 --address="127.0.0.1:$port"
grep -q "cannot connect" <<<"$out" || fail "refused connection not said: $out"

# A peer that accepts the connection but never speaks: --timeout bounds it.
"$python" -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
conns = []
end = time.monotonic() + 60
while time.monotonic() < end:
    s.settimeout(1)
    try:
        conns.append(s.accept()[0])
    except socket.timeout:
        pass
' >"$tmp/silent.port" &
pids+=("$!")
for _ in $(seq 1 100); do [[ -s $tmp/silent.port ]] && break; sleep 0.05; done
silent=$(head -n1 "$tmp/silent.port")
start=$(date +%s%N)
expect 2 --address="127.0.0.1:$silent" --timeout=500ms
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
(( elapsed_ms >= 400 && elapsed_ms < 5000 )) || fail "--timeout=500ms took $elapsed_ms ms"

# TLS with client certificates on (the deploy/k8s configuration): the probe
# needs the CA, and the name in the certificate when dialling an address.
"$here/gen_test_pki.sh" "$tmp/pki"
pki=$tmp/pki
start_configured tls "tls { cert_file: \"$pki/server.pem\" key_file: \"$pki/server.key\"
                             client_ca_file: \"$pki/ca.pem\" }"
expect 0 --address="127.0.0.1:$port" --tls_ca_file="$pki/ca.pem" --tls_server_name=localhost
expect 0 --address="localhost:$port" --tls_ca_file="$pki/ca.pem"
expect 0 --address="127.0.0.1:$port" --tls_ca_file="$pki/ca.pem" \
  --tls_cert_file="$pki/alice.pem" --tls_key_file="$pki/alice.key"
expect 2 --address="127.0.0.1:$port"
expect 2 --address="127.0.0.1:$port" --tls_ca_file="$pki/other-ca.pem"
expect 2 --address="127.0.0.1:$port" --tls_ca_file="$pki/ca.pem" --tls_server_name=not-in-cert
expect 1 --address="127.0.0.1:$port" --tls_ca_file="$tmp/missing.pem"
grep -q "cannot read" <<<"$out" || fail "missing CA file not said: $out"
echo "health_probe_test: OK"
