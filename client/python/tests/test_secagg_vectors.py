"""Cross-language secure aggregation: the C++ code (tally-secagg-vectors,
tools/secagg_vectors.cc) and the Python SDK (tally.secagg_crypto,
tally.secagg) must produce the same bytes -- key agreement, HKDF, AEAD, the
PRG's mask words (bit-identical, or masks would not cancel), the seeded
permutation, Shamir shares, key derivations and whole masked inputs -- and
C++ and Python clients must be able to share one round whose unmasked sum is
the plain sum of their quantized inputs, bit for bit.
"""
import os
import subprocess
import struct

import numpy as np
import pytest

from conftest import build_binary
from tally import secagg
from tally import secagg_crypto as sc

HEX = bytes.fromhex


def parse(path):
    out = []
    with open(path) as f:
        for line in f:
            tokens = line.split()
            if tokens and not tokens[0].startswith("#"):
                out.append((tokens[0], dict(t.split("=", 1) for t in tokens[1:])))
    return out


def counting(start):
    return bytes((start + 13 * i) % 256 for i in range(32))


def mask_params(f):
    n_values = len(HEX(f["x"])) // 4
    return secagg.SecAggParams(int(f["instance"]), int(f["n"]), int(f["k"]), int(f["t"]),
                               int(f["bits"]), float(f["clip"]), n_values)


def python_mask(f):
    partners = []
    for item in filter(None, f["partners"].split(",")):
        index, pk = item.split(":")
        partners.append((int(index), HEX(pk)))
    x = np.frombuffer(HEX(f["x"]), dtype="<f4")
    return secagg.mask_input(mask_params(f), int(f["self"]), x, HEX(f["b"]), HEX(f["s_sk"]),
                             partners)


def check_line(kind, f):
    """Python's recomputation of one C++ vector: a list of problems."""
    if kind == "x25519":
        _, a_pub = sc.x25519_from_private(HEX(f["a"]))
        _, b_pub = sc.x25519_from_private(HEX(f["b"]))
        assert (a_pub.hex(), b_pub.hex()) == (f["a_pub"], f["b_pub"])
        assert sc.x25519_shared_secret(HEX(f["b"]), a_pub).hex() == f["shared"]
    elif kind == "hkdf":
        assert sc.hkdf_sha256(HEX(f["ikm"]), HEX(f["salt"]), HEX(f["info"]),
                              int(f["length"])).hex() == f["okm"]
    elif kind == "aead":
        assert sc.seal_with_nonce(HEX(f["key"]), HEX(f["nonce"]), HEX(f["plain"]),
                                  HEX(f["aad"])).hex() == f["sealed"]
    elif kind == "aead_open":
        assert sc.open_sealed(HEX(f["key"]), HEX(f["sealed"]), HEX(f["aad"])).hex() == f["plain"]
        with pytest.raises(sc.SecAggError) as e:
            sc.open_sealed(HEX(f["key"]), HEX(f["sealed"]), HEX(f["aad"]) + b"x")
        assert e.value.kind == "unauthenticated"
    elif kind == "prg":
        assert sc.prg_bytes(HEX(f["seed"]), int(f["offset"]), int(f["count"])).hex() == f["bytes"]
    elif kind == "words":
        bits = int(f["bits"])
        values = np.zeros(int(f["count"]), dtype="<u4" if bits == 32 else "<u8")
        sc.add_prg_words(values, HEX(f["seed"]), +1, int(f["offset"]))
        assert values.tobytes().hex() == f["words"]
    elif kind == "perm":
        assert sc.seeded_permutation(HEX(f["seed"]), int(f["n"])) == \
            [int(v) for v in f["p"].split(",")]
    elif kind == "shamir":
        xs = [int(v) for v in f["xs"].split(",")]
        raw, t = HEX(f["shares"]), int(f["t"])
        shares = [(x, sc.parse_share_values(raw[64 * i:64 * i + 64])) for i, x in enumerate(xs)]
        assert sc.shamir_reconstruct(shares, t).hex() == f["secret"]
        assert sc.shamir_reconstruct(shares[-t:], t).hex() == f["secret"]
        with pytest.raises(sc.SecAggError) as e:
            sc.shamir_reconstruct(shares[:t - 1], t)
        assert e.value.kind == "failed_precondition"
    elif kind == "derive":
        own, peer, inst = HEX(f["own"]), HEX(f["peer"]), int(f["instance"])
        assert secagg.channel_key(own, peer, inst).hex() == f["channel"]
        assert secagg.pairwise_seed(own, peer, inst).hex() == f["mask"]
    elif kind == "mask":
        assert python_mask(f).hex() == f["y"]
    else:
        raise AssertionError(f"unknown vector kind {kind}")


def test_cpp_vectors_hold_in_python(tmp_path):
    path = tmp_path / "cpp.txt"
    subprocess.run([build_binary("tally-secagg-vectors"), "write", str(path)], check=True)
    vectors = parse(path)
    kinds = {k for k, _ in vectors}
    assert kinds == {"x25519", "hkdf", "aead", "aead_open", "prg", "words", "perm", "shamir",
                     "derive", "mask"}
    for kind, fields in vectors:
        check_line(kind, fields)


def python_vectors():
    """Vectors from Python, on inputs different from the C++ writer's."""
    lines = []
    a, b = counting(31), counting(32)
    _, a_pub = sc.x25519_from_private(a)
    _, b_pub = sc.x25519_from_private(b)
    lines.append(f"x25519 a={a.hex()} b={b.hex()} a_pub={a_pub.hex()} b_pub={b_pub.hex()} "
                 f"shared={sc.x25519_shared_secret(a, b_pub).hex()}")
    ikm, info = os.urandom(40), b"python info"
    lines.append(f"hkdf ikm={ikm.hex()} salt= info={info.hex()} length=33 "
                 f"okm={sc.hkdf_sha256(ikm, b'', info, 33).hex()}")
    key, nonce, plain = sc.random_key(), os.urandom(12), os.urandom(136)
    aad = secagg.associated_data(5, secagg.SHARE_KEYS, 9, 4)
    lines.append(f"aead key={key.hex()} nonce={nonce.hex()} plain={plain.hex()} aad={aad.hex()} "
                 f"sealed={sc.seal_with_nonce(key, nonce, plain, aad).hex()}")
    lines.append(f"aead_open key={key.hex()} plain={plain.hex()} aad={aad.hex()} "
                 f"sealed={sc.seal(key, plain, aad).hex()}")
    seed = sc.random_key()
    for offset, count in ((0, 64), (7, 1000), (65536 * 3 + 9, 70000)):
        lines.append(f"prg seed={seed.hex()} offset={offset} count={count} "
                     f"bytes={sc.prg_bytes(seed, offset, count).hex()}")
    for bits in (32, 64):
        v = np.zeros(50001, dtype="<u4" if bits == 32 else "<u8")
        sc.add_prg_words(v, seed, +1, 3)
        lines.append(f"words seed={seed.hex()} bits={bits} offset=3 count=50001 "
                     f"words={v.tobytes().hex()}")
    lines.append(f"perm seed={seed.hex()} n=300 p={','.join(map(str, sc.seeded_permutation(seed, 300)))}")
    secret, xs = sc.random_key(), [1, 4, 6, 7, 9, 10]
    shares = sc.shamir_split(secret, 4, xs)
    lines.append(f"shamir secret={secret.hex()} t=4 xs={','.join(map(str, xs))} "
                 f"shares={''.join(sc.serialize_share_values(ys).hex() for _, ys in shares)}")
    lines.append(f"derive own={a.hex()} peer={b_pub.hex()} instance=123456789 "
                 f"channel={secagg.channel_key(a, b_pub, 123456789).hex()} "
                 f"mask={secagg.pairwise_seed(a, b_pub, 123456789).hex()}")
    rng = np.random.default_rng(5)
    for bits in (32, 64):
        x = np.concatenate([[0.5, -7.0, 1e30, -1e30, 2.0 ** -31, 3 * 2.0 ** -31],
                            rng.normal(0, 2, 300)]).astype("<f4")
        partners = ",".join(f"{v}:{sc.x25519_from_private(counting(40 + v))[1].hex()}"
                            for v in (2, 3, 7, 8))
        f = {"instance": "77", "n": "8", "k": "4", "t": "3", "bits": str(bits), "clip": "5",
             "self": "5", "b": sc.random_key().hex(), "s_sk": sc.random_key().hex(),
             "x": x.tobytes().hex(), "partners": partners}
        f["y"] = python_mask(f).hex()
        lines.append("mask " + " ".join(f"{k}={v}" for k, v in f.items()))
    return lines


def test_python_vectors_hold_in_cpp(tmp_path):
    path = tmp_path / "py.txt"
    path.write_text("\n".join(python_vectors()) + "\n")
    r = subprocess.run([build_binary("tally-secagg-vectors"), "check", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "14 vectors checked, 0 mismatches" in r.stdout


class CppClient:
    """A C++ SecAggClient in a tally-secagg-vectors subprocess, with the
    Python client's interface."""

    def __init__(self, params, index, neighbours):
        self.index = index
        self.proc = subprocess.Popen([build_binary("tally-secagg-vectors"), "client"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._send(f"init {params.instance_id} {params.num_clients} {params.degree} "
                   f"{params.threshold} {params.bits} {params.clip!r} {params.vector_length} "
                   f"{index} {','.join(map(str, neighbours))}")
        tokens = self._line()
        self.c_pk, self.s_pk = HEX(tokens[1]), HEX(tokens[2])

    def _send(self, *lines):
        self.proc.stdin.write("\n".join(lines) + "\n")
        self.proc.stdin.flush()

    def _line(self):
        tokens = self.proc.stdout.readline().split()
        if tokens[0] == "error":
            raise sc.SecAggError(tokens[1].lower(), " ".join(tokens[2:]))
        return tokens

    def _until_end(self):
        out = []
        while (tokens := self._line())[0] != "end":
            out.append(tokens)
        return out

    def advertise_keys(self):
        return secagg.KeyAdvertisement(self.index, self.c_pk, self.s_pk)

    def share_keys(self, keys):
        self._send(f"share_keys {len(keys)}",
                   *(f"adv {k.sender} {k.c_pk.hex()} {k.s_pk.hex()}" for k in keys))
        commitment = HEX(self._line()[1])
        shares = [secagg.EncryptedShare(self.index, int(t[1]), HEX(t[2]))
                  for t in self._until_end()]
        return secagg.ShareKeysMessage(self.index, commitment, shares)

    def masked_input(self, inbox, x):
        self._send(f"masked_input {len(inbox)} {np.asarray(x, '<f4').tobytes().hex()}",
                   *(f"share {e.sender} {e.receiver} {e.ciphertext.hex()}" for e in inbox))
        return HEX(self._line()[1])

    def unmask(self, survivors):
        self._send(f"unmask {','.join(map(str, survivors))}")
        return secagg.UnmaskResponse(self.index, [
            secagg.RevealedShare(int(t[1]), int(t[2]), HEX(t[3])) for t in self._until_end()])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_round(params, make_client, inputs, drop_at, graph_seed=b"\x07" * 32, chunk=1000):
    """Drives one round through tally.secagg.SecAggServer; drop_at[i] is the
    first stage client i + 1 stays silent in (secagg.DONE: never)."""
    server = secagg.SecAggServer(params, graph_seed)
    n = params.num_clients
    clients = [make_client(params, i, server.graph[i]) for i in range(1, n + 1)]
    sends = lambda i, s: s < drop_at[i - 1]  # noqa: E731
    try:
        for i in range(1, n + 1):
            if sends(i, secagg.ADVERTISE_KEYS):
                server.receive_keys(clients[i - 1].advertise_keys())
        server.close_advertise_keys()
        for i in range(1, n + 1):
            if sends(i, secagg.SHARE_KEYS):
                server.receive_shares(clients[i - 1].share_keys(server.keys_for(i)))
        server.close_share_keys()
        masked = {}
        for i in range(1, n + 1):
            if sends(i, secagg.MASKED_INPUT):
                y = clients[i - 1].masked_input(server.inbox_for(i), inputs[i - 1])
                masked[i] = y
                size = params.bits // 8
                for off in range(0, params.vector_length, chunk):
                    server.receive_masked_chunk(i, off, y[off * size:(off + chunk) * size])
        server.close_masked_input()
        for i in server.survivors:
            if sends(i, secagg.UNMASK):
                server.receive_unmask(clients[i - 1].unmask(server.survivors))
        return server, masked, server.finish()
    finally:
        for c in clients:
            if isinstance(c, CppClient):
                c.close()


def mixed(params, i, neighbours):
    cls = CppClient if i % 2 else secagg.SecAggClient
    return cls(params, i, neighbours)


def grid_inputs(n, length, seed):
    rng = np.random.default_rng(seed)
    m = rng.integers(-8192, 8193, size=(n, length))
    return m, (m / 1024.0).astype(np.float32)


@pytest.mark.parametrize("n,k,t,bits,drops", [
    (3, 2, 2, 32, {}),
    (6, 4, 3, 64, {}),
    (10, 4, 3, 32, {}),
    # C++ client 3 after its shares, Python client 6 after its masked input,
    # C++ client 9 before its keys.
    (10, 9, 5, 32, {3: secagg.MASKED_INPUT, 6: secagg.UNMASK, 9: secagg.ADVERTISE_KEYS}),
])
def test_mixed_cpp_and_python_clients_sum_exactly(n, k, t, bits, drops):
    length = 2500
    params = secagg.SecAggParams(1000 + n, n, k, t, bits, 8.0, length)
    m, x = grid_inputs(n, length, n + bits)
    drop_at = [drops.get(i, secagg.DONE) for i in range(1, n + 1)]
    server, masked, total = run_round(params, mixed, x, drop_at)
    f = server.f
    expected = sum(m[i - 1].astype(np.int64) << (f - 10) for i in masked)
    assert np.array_equal(secagg.signed_sums(bits, total), expected)
    # What the server received from each client is not its encoding.
    for i, y in masked.items():
        plain = secagg.quantize(params, f, x[i - 1]).tobytes()
        assert np.count_nonzero(np.frombuffer(y, "u1") != np.frombuffer(plain, "u1")) > \
            0.9 * len(y)
