"""Secure aggregation's primitives, twin of secagg/crypto.h and secagg/shamir.h.

Built on Debian's python3-cryptography (OpenSSL underneath); for the same
inputs every function returns the same bytes as the C++ code (the
cross-language vectors of client/python/tests/test_secagg_vectors.py check it):

- X25519 key pairs and shared secrets (RFC 7748); a low-order peer key is
  refused;
- HKDF-SHA256 (RFC 5869);
- AES-256-GCM sealing: nonce (12) || ciphertext || tag (16);
- the PRG: AES-256-CTR keyed by a 32-byte seed, counter block = the 128-bit
  big-endian block index from 0; mask words are the key stream read as
  little-endian uint32 or uint64, expandable from any word offset;
- a seeded permutation (Fisher-Yates over the PRG's uint64 words, rejection
  sampling so it is unbiased);
- Shamir sharing of 32-byte secrets over GF(2^61 - 1): 8 little-endian
  32-bit limbs, one polynomial each; a share is 64 bytes (8 little-endian
  uint64 values < p). See docs/secure-aggregation.md#shamir-sharing.
"""
import hashlib
import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES
PRG_BLOCK_BYTES = 64 * 1024
SHAMIR_PRIME = (1 << 61) - 1
SHAMIR_LIMBS = 8
SHARE_BYTES = 8 * SHAMIR_LIMBS


class SecAggError(Exception):
    """A secure-aggregation failure. `kind` names it like the C++ status code
    (invalid_argument, unauthenticated, failed_precondition, data_loss,
    already_exists, ...)."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def _raw(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def random_key():
    return os.urandom(KEY_BYTES)


def x25519_from_private(private_key):
    """(private, public) bytes of a 32-byte private key."""
    sk = X25519PrivateKey.from_private_bytes(bytes(private_key))
    return bytes(private_key), _raw(sk.public_key())


def generate_x25519():
    return x25519_from_private(random_key())


def x25519_shared_secret(private_key, peer_public):
    try:
        secret = X25519PrivateKey.from_private_bytes(bytes(private_key)).exchange(
            X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError as e:  # cryptography refuses an all-zero result.
        raise SecAggError("invalid_argument", f"X25519: no shared secret ({e})") from None
    if secret == bytes(KEY_BYTES):
        raise SecAggError("invalid_argument", "X25519: low-order peer key")
    return secret


def hkdf_sha256(ikm, salt, info, length):
    if not 1 <= length <= 255 * 32:
        raise SecAggError("invalid_argument", f"HKDF-SHA256 output length {length}")
    return HKDF(hashes.SHA256(), length, bytes(salt) if salt else None, bytes(info)).derive(
        bytes(ikm))


def hkdf_key(ikm, info):
    return hkdf_sha256(ikm, b"", info, KEY_BYTES)


def seal_with_nonce(key, nonce, plaintext, associated_data):
    if len(nonce) != NONCE_BYTES:
        raise SecAggError("invalid_argument", "AES-GCM nonce must be 12 bytes")
    return bytes(nonce) + AESGCM(bytes(key)).encrypt(bytes(nonce), bytes(plaintext),
                                                     bytes(associated_data) or None)


def seal(key, plaintext, associated_data):
    return seal_with_nonce(key, os.urandom(NONCE_BYTES), plaintext, associated_data)


def open_sealed(key, sealed, associated_data):
    if len(sealed) < SEAL_OVERHEAD:
        raise SecAggError("invalid_argument",
                          f"sealed message of {len(sealed)} bytes is shorter than 28")
    try:
        return AESGCM(bytes(key)).decrypt(bytes(sealed[:NONCE_BYTES]), bytes(sealed[NONCE_BYTES:]),
                                          bytes(associated_data) or None)
    except InvalidTag:
        raise SecAggError("unauthenticated", "AES-256-GCM: the tag does not verify") from None


def sha256(data):
    return hashlib.sha256(bytes(data)).digest()


def prg_bytes(seed, byte_offset, count):
    """Key-stream bytes [byte_offset, byte_offset + count) of the PRG of `seed`."""
    block, skip = divmod(byte_offset, 16)
    enc = Cipher(algorithms.AES(bytes(seed)), modes.CTR(block.to_bytes(16, "big"))).encryptor()
    return enc.update(bytes(skip + count))[skip:]


def prg_words(seed, word_offset, count, bits):
    """`count` mask words (uint32 or uint64 array) from word index `word_offset`."""
    dtype = _word_dtype(bits)
    size = dtype.itemsize
    return np.frombuffer(prg_bytes(seed, word_offset * size, count * size), dtype=dtype).astype(
        dtype.newbyteorder("="))


def add_prg_words(values, seed, sign, word_offset=0):
    """values += sign * PRG words of `seed` from `word_offset`, modulo 2^bits
    (values: a uint32 or uint64 array, changed in place), in 64 KiB blocks."""
    bits = values.dtype.itemsize * 8
    step = PRG_BLOCK_BYTES // values.dtype.itemsize
    for start in range(0, len(values), step):
        n = min(step, len(values) - start)
        mask = prg_words(seed, word_offset + start, n, bits)
        if sign > 0:
            np.add(values[start:start + n], mask, out=values[start:start + n])
        else:
            np.subtract(values[start:start + n], mask, out=values[start:start + n])
    return values


def _word_dtype(bits):
    if bits == 32:
        return np.dtype("<u4")
    if bits == 64:
        return np.dtype("<u8")
    raise SecAggError("invalid_argument", f"bits must be 32 or 64, got {bits}")


def seeded_permutation(seed, n):
    """The permutation of range(n) secagg/crypto.h's SeededPermutation draws."""
    p = list(range(n))
    words, consumed = [], 0
    for i in range(n - 1, 0, -1):
        m = i + 1
        limit = (1 << 64) - 1 - ((1 << 64) % m)
        while True:
            if not words:
                raw = prg_bytes(seed, consumed * 8, 512 * 8)
                words = list(np.frombuffer(raw, dtype="<u8")[::-1])
            w = int(words.pop())
            consumed += 1
            if w <= limit:
                break
        j = w % m
        p[i], p[j] = p[j], p[i]
    return p


# --- Shamir sharing over GF(2^61 - 1) ---------------------------------------

def _random_field_element():
    while True:
        c = int.from_bytes(os.urandom(8), "little") & SHAMIR_PRIME
        if c != SHAMIR_PRIME:
            return c


def _check_points(xs):
    if any(x == 0 for x in xs):
        raise SecAggError("invalid_argument", "Shamir: share point x = 0")
    if len(set(xs)) != len(xs):
        raise SecAggError("invalid_argument", "Shamir: duplicate share point")


def shamir_split(secret, threshold, xs):
    """[(x, [8 ints])] shares of a 32-byte secret at the points xs."""
    if not 1 <= threshold <= len(xs):
        raise SecAggError("invalid_argument", f"Shamir: threshold {threshold} outside [1, {len(xs)}]")
    _check_points(xs)
    secret = bytes(secret)
    if len(secret) != KEY_BYTES:
        raise SecAggError("invalid_argument", "Shamir: the secret must be 32 bytes")
    coefficients = [[int.from_bytes(secret[4 * limb:4 * limb + 4], "little")] +
                    [_random_field_element() for _ in range(threshold - 1)]
                    for limb in range(SHAMIR_LIMBS)]
    shares = []
    for x in xs:
        ys = []
        for coef in coefficients:
            acc = 0
            for c in reversed(coef):
                acc = (acc * x + c) % SHAMIR_PRIME
            ys.append(acc)
        shares.append((x, ys))
    return shares


def _lagrange_at(xs, at):
    out = []
    for j, xj in enumerate(xs):
        num = den = 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * (at - xm) % SHAMIR_PRIME
                den = den * (xj - xm) % SHAMIR_PRIME
        out.append(num * pow(den, SHAMIR_PRIME - 2, SHAMIR_PRIME) % SHAMIR_PRIME)
    return out


def shamir_reconstruct(shares, threshold):
    """The 32-byte secret from [(x, [8 ints])]; same refusals as the C++ code."""
    if threshold < 1:
        raise SecAggError("invalid_argument", "Shamir: threshold 0")
    if len(shares) < threshold:
        raise SecAggError("failed_precondition",
                          f"Shamir: {len(shares)} shares, fewer than the threshold {threshold}")
    xs = [x for x, _ in shares]
    _check_points(xs)
    if any(y >= SHAMIR_PRIME or y < 0 for _, ys in shares for y in ys):
        raise SecAggError("invalid_argument", "Shamir: share value not below p")
    base = xs[:threshold]
    at_zero = _lagrange_at(base, 0)
    limbs = []
    for limb in range(SHAMIR_LIMBS):
        v = sum(l * shares[j][1][limb] for j, l in enumerate(at_zero)) % SHAMIR_PRIME
        if v >= 1 << 32:
            raise SecAggError("data_loss", "Shamir: the shares interpolate to no valid secret")
        limbs.append(v)
    for x, ys in shares[threshold:]:
        weights = _lagrange_at(base, x)
        for limb in range(SHAMIR_LIMBS):
            v = sum(l * shares[j][1][limb] for j, l in enumerate(weights)) % SHAMIR_PRIME
            if v != ys[limb]:
                raise SecAggError("data_loss", f"Shamir: the share at x = {x} disagrees with the others")
    return b"".join(v.to_bytes(4, "little") for v in limbs)


def serialize_share_values(ys):
    return b"".join(int(y).to_bytes(8, "little") for y in ys)


def parse_share_values(data):
    if len(data) != SHARE_BYTES:
        raise SecAggError("invalid_argument", f"Shamir share of {len(data)} bytes, expected 64")
    ys = [int.from_bytes(data[8 * i:8 * i + 8], "little") for i in range(SHAMIR_LIMBS)]
    if any(y >= SHAMIR_PRIME for y in ys):
        raise SecAggError("invalid_argument", "Shamir share value not below p = 2^61 - 1")
    return ys
