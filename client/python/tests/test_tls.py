"""TLS, mutual TLS and bearer tokens against real tally-server processes
(the C++ tests/tls_test.cc's setups): a fresh test PKI from
tests/gen_test_pki.sh (openssl CLI), tokens stored as SHA-256. Each wrong
identity or missing credential raises its named exception."""
import hashlib
import os
import subprocess
import time

import numpy as np
import pytest

from conftest import REPO, build_binary
from tally.client import Client
from tally.errors import AuthenticationError, PermissionDeniedError, TallyError, TlsError
from tally.testing import ServerProcess

MODEL = 'model { tensors { name: "w" shape: 4 } } rounds { clients_per_round: 1 }'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca.pem, server.pem (localhost, 127.0.0.1), alice / bob / admin (CN
    ops) client certificates, mallory (CN alice, other CA), expired (CN
    alice, 2020), other-ca.pem; tokens.txt for alice and ops."""
    directory = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", os.path.join(REPO, "tests", "gen_test_pki.sh"), str(directory)],
                   check=True, capture_output=True)
    with open(directory / "tokens.txt", "w") as f:
        f.write("# identity sha256(token)\n")
        for identity in ("alice", "ops"):
            digest = hashlib.sha256(f"{identity}-secret".encode()).hexdigest()
            f.write(f"{identity} {digest}\n")
    return lambda name: str(directory / name)


def server(pki, require_client_cert, tokens):
    config = (f'{MODEL} tls {{ cert_file: "{pki("server.pem")}" key_file: "{pki("server.key")}" '
              f'client_ca_file: "{pki("ca.pem")}" '
              f'require_client_cert: {str(require_client_cert).lower()} }}')
    if tokens:
        config += f' auth {{ tokens_file: "{pki("tokens.txt")}" admin_identities: "ops" }}'
    return ServerProcess(build_binary("tally-server"), config)


def client(pki, target, client_id, cert=None, ca="ca.pem", **options):
    if cert is not None:
        options.update(cert_file=pki(f"{cert}.pem"), key_file=pki(f"{cert}.key"))
    return Client(target, client_id, ca_file=pki(ca), seed=1, max_attempts=2,
                  initial_backoff=0.01, **options)


def one_round(c):
    """Join, train task, pull, push ones; returns the next model."""
    c.join()
    task = c.get_task(wait=10)
    model = c.pull_model()
    c.push_update(delta=np.ones(4, np.float32), round=task.round, base_version=model.version)
    c.wait_for_version(model.version, timeout=10)
    return c.pull_model()


def test_mutual_tls(pki):
    with server(pki, require_client_cert=True, tokens=False) as s:
        alice = client(pki, s.target, "alice", cert="alice")
        np.testing.assert_array_equal(one_round(alice).params, np.ones(4, np.float32))
        cases = [
            # Alice's certificate naming another client.
            (PermissionDeniedError, "authenticated as 'alice'",
             client(pki, s.target, "bob", cert="alice")),
            # No, an expired or another CA's certificate: the server closes
            # the connection after the handshake; the exception says so.
            (TlsError, "requires a client certificate.*set cert_file and key_file",
             client(pki, s.target, "alice")),
            (TlsError, "refused this client's certificate.*tls.client_ca_file",
             client(pki, s.target, "alice", cert="expired")),
            (TlsError, "refused this client's certificate",
             client(pki, s.target, "alice", cert="mallory")),
            # This client refuses the server: unknown CA, or not the name it dialled.
            (TlsError, "refused the certificate of the server.*ca_file must hold the CA",
             client(pki, s.target, "alice", cert="alice", ca="other-ca.pem")),
            (TlsError, "Hostname mismatch.*must name 'other.example'",
             client(pki, s.target, "alice", cert="alice", server_name="other.example")),
        ]
        for error, words, c in cases:
            with pytest.raises(error, match=words):
                c.join()
            c.close()
        alice.close()


def test_bearer_tokens_and_admin(pki):
    with server(pki, require_client_cert=False, tokens=True) as s:
        alice = client(pki, s.target, "alice", token="alice-secret")
        np.testing.assert_array_equal(one_round(alice).params, np.ones(4, np.float32))
        with pytest.raises(PermissionDeniedError, match="admin_identities"):
            alice.server_status()
        ops = client(pki, s.target, "ops", token="ops-secret")
        assert ops.server_status().rounds_completed == 1
        bob = client(pki, s.target, "bob", cert="bob")  # A certificate still works.
        assert bob.join().layout.num_params == 4
        cases = [(AuthenticationError, "requires a client certificate or a bearer token",
                  client(pki, s.target, "alice")),
                 (AuthenticationError, "unknown bearer token",
                  client(pki, s.target, "alice", token="guess")),
                 (PermissionDeniedError, "not as client 'bob'",
                  client(pki, s.target, "bob", token="alice-secret"))]
        for error, words, c in cases:
            with pytest.raises(error, match=words):
                c.join()
            c.close()
        for c in (alice, ops, bob):
            c.close()
    with pytest.raises(TallyError, match="need TLS"):
        Client("127.0.0.1:1", "alice", token="alice-secret")


def test_tls_set_ups_that_do_not_fit_say_what_to_change(pki):
    """TLS on one side only fails at once (not after connect_timeout), with
    the option to change; a file of the wrong kind is named at Client()."""
    start = time.monotonic()
    with ServerProcess(build_binary("tally-server"), MODEL) as plaintext:
        with pytest.raises(TlsError, match="does not speak TLS.*drop ca_file"):
            client(pki, plaintext.target, "alice").join()
    with server(pki, require_client_cert=False, tokens=False) as s:
        c = Client(s.target, "alice", max_attempts=1)
        with pytest.raises(TlsError, match="speaks TLS and this client plaintext: set ca_file"):
            c.join()
        c.close()
    assert time.monotonic() - start < 30
    cases = [(dict(ca_file=pki("server.key")), "ca_file: .* holds a private key, not a certificate"),
             (dict(ca_file=pki("ca.pem"), cert_file=pki("alice.pem"), key_file=pki("bob.key")),
              "is not the key of the certificate in cert_file"),
             (dict(ca_file=pki("ca.pem"), cert_file=pki("alice.pem"), key_file=pki("alice.pem")),
              "holds a certificate, not a private key"),
             (dict(ca_file=pki("ca.pem"), cert_file=pki("alice.key"), key_file=pki("alice.key")),
              "cert_file: .* holds a private key")]
    for options, words in cases:
        with pytest.raises(TallyError, match=words):
            Client("127.0.0.1:1", "alice", **options)
