#!/usr/bin/env bash
# tally-server starting as an operator meets it: a second server on a busy
# gRPC port, or on a busy metrics port, exits 1 naming the address;
# --version prints tally's version, commit and build type, as /metrics'
# tally_build_info does; checkpoint files that are all corrupt stop the start
# (naming each file) unless --start_fresh_if_corrupt, which keeps them as
# *.corrupt.
#   tests/server_startup_test.sh <tally-server> <python3> <version> <commit> <build type>
set -euo pipefail
python=$2
version=$3
commit=$4
build_type=$5
# shellcheck source=tests/server_test_common.sh
source "$(dirname "$0")/server_test_common.sh" server_startup_test "$1"

# expect_failure PATTERN ARGS...: tally-server ARGS exits 1 (within 30 s, not
# serving) printing PATTERN; its output is in $out.
expect_failure() {
  local pattern=$1 rc
  shift
  set +e
  out=$(timeout 30 "$server" "$@" 2>&1)
  rc=$?
  set -e
  [[ $rc == 1 ]] || fail "'$*' exited $rc, want 1: $out"
  grep -qF -- "$pattern" <<<"$out" || fail "'$*' does not say '$pattern': $out"
}

# A free TCP port on 127.0.0.1 (closed again; nothing else on this machine
# is expected to take it in the next seconds).
free_port() {
  "$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# --version: tally's, not Abseil's default.
out=$("$server" --version)
want="tally-server $version (commit $commit, $build_type build)"
[[ $out == "$want" ]] || fail "--version printed '$out', want '$want'"

# Busy ports. The first server serves gRPC and /metrics on loopback.
echo 'metrics_address: "127.0.0.1"' >"$tmp/metrics.textproto"
metrics_port=$(free_port)
start_server first --config="$tmp/metrics.textproto" --metrics_port="$metrics_port"
grpc_port=$port
expect_failure "listen_address: cannot listen on '127.0.0.1:$grpc_port'" \
  --listen="127.0.0.1:$grpc_port" --metrics_port=-1
expect_failure "metrics_port: cannot serve /metrics on 127.0.0.1:$metrics_port" \
  --config="$tmp/metrics.textproto" --listen=127.0.0.1:0 --metrics_port="$metrics_port"
# The first one still answers, with its build in /metrics.
metrics=$("$python" -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
  "http://127.0.0.1:$metrics_port/metrics")
line="tally_build_info{build_type=\"$build_type\",commit=\"$commit\",version=\"$version\"} 1"
grep -qF -- "$line" <<<"$metrics" ||
  fail "/metrics has no '$line': $(grep build_info <<<"$metrics")"

# Every checkpoint file corrupt: no start, each file named.
ckpt=$tmp/ckpt
mkdir "$ckpt"
printf 'TALLYCK4 torn' >"$ckpt/model.tallyckpt"
printf 'garbage' >"$ckpt/model.tallyckpt.prev"
expect_failure "has no valid checkpoint" --checkpoint_dir="$ckpt" --listen=127.0.0.1:0 \
  --metrics_port=-1
grep -qF "'$ckpt/model.tallyckpt' is truncated" <<<"$out" || fail "newest file not named: $out"
grep -qF "'$ckpt/model.tallyckpt.prev' is truncated" <<<"$out" || fail ".prev not named: $out"
grep -qF -- "--start_fresh_if_corrupt" <<<"$out" || fail "the way out is not said: $out"
[[ -f $ckpt/model.tallyckpt && -f $ckpt/model.tallyckpt.prev ]] || fail "files were touched"
# With the flag: the initial model, the evidence kept aside.
start_server fresh --checkpoint_dir="$ckpt" --metrics_port=-1 --start_fresh_if_corrupt
[[ $(cat "$ckpt/model.tallyckpt.corrupt") == 'TALLYCK4 torn' ]] || fail "no .corrupt"
[[ $(cat "$ckpt/model.tallyckpt.prev.corrupt") == garbage ]] || fail "no .prev.corrupt"
grep -q "starting from the initial model" "$tmp/fresh.log" ||
  fail "no warning: $(cat "$tmp/fresh.log")"
echo "server_startup_test: OK"
