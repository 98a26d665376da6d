#!/usr/bin/env bash
# Generates a throwaway PKI for the TLS tests with the openssl CLI:
#   tests/gen_test_pki.sh DIR
# ca.pem: the test CA; server.pem/key: CN localhost, SAN DNS:localhost and
# IP:127.0.0.1; alice.pem/key, bob.pem/key and admin.pem/key (CN ops): client
# certificates of the CA; mallory.pem/key: CN alice from another CA
# (other-ca.pem); expired.pem/key: CN alice from the CA, valid only in 2020.
# EC P-256 keys (fast to make). Nothing here is secret or reused.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "gen_test_pki: failed: $*" >&2; "$@"; exit 1; }; }
key() { q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }
ca() {  # NAME
  key "$1"
  q openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1"
}
leaf() {  # CA NAME CN SAN EKU
  key "$2"
  q openssl req -new -key "$2.key" -out "$2.csr" -subj "/CN=$3"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$4" "$5" >"$2.ext"
  q openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial \
    -out "$2.pem" -days 2 -extfile "$2.ext"
}
ca ca
ca other-ca
leaf ca server localhost "DNS:localhost,IP:127.0.0.1" serverAuth
leaf ca alice alice "DNS:alice" clientAuth
leaf ca bob bob "DNS:bob" clientAuth
leaf ca admin ops "DNS:ops" clientAuth
leaf other-ca mallory alice "DNS:alice" clientAuth
# Expired: `openssl ca` is the CLI that sets explicit validity dates.
mkdir -p db
: >db/index.txt
echo 01 >db/serial
cat >db/ca.cnf <<'CNF'
[ca]
default_ca = test
[test]
database = db/index.txt
serial = db/serial
new_certs_dir = db
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
CNF
key expired
q openssl req -new -key expired.key -out expired.csr -subj "/CN=alice" \
  -addext "extendedKeyUsage=clientAuth"
q openssl ca -batch -config db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
  -out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z -notext
