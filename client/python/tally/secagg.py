"""SecAgg+ protocol core, twin of secagg/protocol.h, secagg/client.h and
secagg/server.h (docs/secure-aggregation.md#protocol).

Pure state machines, no gRPC: `SecAggClient` is one client's side of one
instance, `SecAggServer` the server's (used by tests and simulations; the
production server is the C++ one). The bytes they exchange are the C++ ones:
a C++ client and a Python client mask for the same server and their masks
cancel (client/python/tests/test_secagg_vectors.py runs mixed rounds).
Failures raise tally.secagg_crypto.SecAggError whose `kind` is the C++
status code's name (invalid_argument, failed_precondition, already_exists,
unauthenticated, data_loss).
"""
import dataclasses
import hashlib
import math
import struct

import numpy as np

from tally.secagg_crypto import (SEAL_OVERHEAD, SHARE_BYTES, SecAggError, add_prg_words,
                                 hkdf_key, open_sealed, parse_share_values, random_key, seal,
                                 seeded_permutation, serialize_share_values, sha256,
                                 shamir_reconstruct, shamir_split, x25519_from_private,
                                 x25519_shared_secret)

EXACT_FRACTION_BITS = 40  # core/exact_sum.h's grid.
ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, UNMASK, DONE, FAILED = range(6)
STAGE_NAMES = ("advertise_keys", "share_keys", "masked_input", "unmask", "done", "failed")
SELF_MASK, MASK_KEY = 0, 1
SHARE_PLAINTEXT_BYTES = 8 + 2 * SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + SEAL_OVERHEAD


@dataclasses.dataclass
class SecAggParams:
    instance_id: int
    num_clients: int
    degree: int
    threshold: int
    bits: int = 32
    clip: float = 1.0
    vector_length: int = 0

    def effective_degree(self):
        return min(self.degree, self.num_clients - 1)


@dataclasses.dataclass
class KeyAdvertisement:
    sender: int
    c_pk: bytes
    s_pk: bytes


@dataclasses.dataclass
class EncryptedShare:
    sender: int
    receiver: int
    ciphertext: bytes


@dataclasses.dataclass
class ShareKeysMessage:
    sender: int
    self_mask_commitment: bytes
    shares: list


@dataclasses.dataclass
class RevealedShare:
    owner: int
    kind: int
    values: bytes


@dataclasses.dataclass
class UnmaskResponse:
    sender: int
    shares: list


def _invalid(msg):
    return SecAggError("invalid_argument", msg)


def _max_quantized(params, f):
    return math.floor(math.ldexp(params.clip, f))


def fraction_bits(params):
    """The largest f <= 40 with n * floor(clip * 2^f) <= 2^(b-1) - 1."""
    for f in range(EXACT_FRACTION_BITS, -1, -1):
        if math.ldexp(params.clip, f) >= 9.2e18:
            continue
        if params.num_clients * _max_quantized(params, f) <= (1 << (params.bits - 1)) - 1:
            return f
    raise _invalid(f"secure_aggregation.clip: n = {params.num_clients} inputs clipped to "
                   f"{params.clip} can wrap modulo 2^{params.bits}")


def validate_params(p):
    if p.num_clients < 2:
        raise _invalid("secure_aggregation.num_clients: at least 2")
    if p.bits not in (32, 64):
        raise _invalid(f"secure_aggregation.bits: must be 32 or 64, got {p.bits}")
    if not (0 < p.clip < 2.0 ** 32) or not math.isfinite(p.clip):
        raise _invalid(f"secure_aggregation.clip: must be finite in (0, 2^32), got {p.clip}")
    if p.vector_length < 1:
        raise _invalid("secure_aggregation.vector_length: must be at least 1")
    k = p.effective_degree()
    if p.degree < 2 or (k < p.num_clients - 1 and k % 2):
        raise _invalid(f"secure_aggregation.degree: {p.degree}")
    if not k // 2 < p.threshold <= k:
        raise _invalid(f"secure_aggregation.threshold: must be in (k/2, k], got {p.threshold}")
    fraction_bits(p)


def _dtype(bits):
    return np.dtype("<u4") if bits == 32 else np.dtype("<u8")


def quantize(params, f, x):
    """b-bit two's complement words (uint32/uint64 array) of the clipped x."""
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise _invalid("value is not finite")
    max_q = _max_quantized(params, f)
    q = np.rint(np.clip(np.ldexp(x.astype(np.float64), f), -float(max_q), float(max_q)))
    q = np.clip(q.astype(np.int64), -max_q, max_q)  # float(M) may round up past 2^53.
    return q.view(np.uint64).astype(_dtype(params.bits))


def signed_sums(bits, words):
    """Signed integers of little-endian b-bit words (bytes or uint array)."""
    if isinstance(words, (bytes, bytearray)):
        words = np.frombuffer(words, dtype=_dtype(bits))
    return words.view(np.int32 if bits == 32 else np.int64).astype(np.int64)


def dequantize(bits, f, words):
    return np.ldexp(signed_sums(bits, words).astype(np.float64), -f)


def associated_data(instance_id, stage, sender, receiver):
    return b"tally-secagg/1" + struct.pack("<QBII", instance_id, stage, sender, receiver)


def _derive(own_private, peer_public, instance_id, label):
    return hkdf_key(x25519_shared_secret(own_private, peer_public),
                    label + struct.pack("<Q", instance_id))


def channel_key(own_private, peer_public, instance_id):
    return _derive(own_private, peer_public, instance_id, b"tally-secagg/1 channel")


def pairwise_seed(own_private, peer_public, instance_id):
    return _derive(own_private, peer_public, instance_id, b"tally-secagg/1 mask")


def pair_sign(u, v):
    return 1 if u < v else -1


def mask_input(params, self_index, x, self_mask_seed, mask_private_key, partners):
    """y_u as bytes; partners: [(index, s_pk)]."""
    if len(x) != params.vector_length:
        raise _invalid(f"input of {len(x)} values, the instance expects {params.vector_length}")
    y = quantize(params, fraction_bits(params), x)
    add_prg_words(y, self_mask_seed, +1)
    for index, s_pk in partners:
        if index == self_index:
            raise _invalid("a client is not its own partner")
        seed = pairwise_seed(mask_private_key, s_pk, params.instance_id)
        add_prg_words(y, seed, pair_sign(self_index, index))
    return y.astype(_dtype(params.bits)).tobytes()


def share_plaintext(sender, receiver, b_share, s_share):
    return (struct.pack("<II", sender, receiver) + serialize_share_values(b_share) +
            serialize_share_values(s_share))


def parse_share_plaintext(plain, sender, receiver):
    if len(plain) != SHARE_PLAINTEXT_BYTES:
        raise _invalid(f"share plaintext of {len(plain)} bytes")
    if struct.unpack("<II", plain[:8]) != (sender, receiver):
        raise _invalid("share plaintext names the wrong sender or receiver")
    return (parse_share_values(plain[8:8 + SHARE_BYTES]),
            parse_share_values(plain[8 + SHARE_BYTES:]))


def neighbour_graph(num_clients, degree, seed):
    """{client: sorted neighbours}: secagg/graph.h's Harary ring."""
    k = min(degree, num_clients - 1)
    perm = seeded_permutation(seed, num_clients)
    at = [0] * num_clients
    for i, pos in enumerate(perm):
        at[pos] = i + 1
    out = {}
    for i in range(num_clients):
        if k == num_clients - 1:
            out[i + 1] = [j for j in range(1, num_clients + 1) if j != i + 1]
            continue
        pos = perm[i]
        out[i + 1] = sorted({at[(pos + d) % num_clients] for d in range(1, k // 2 + 1)} |
                            {at[(pos - d) % num_clients] for d in range(1, k // 2 + 1)})
    return out


class SecAggClient:
    """One client's side of one instance; secrets made here unless given."""

    def __init__(self, params, self_index, neighbours, c_sk=None, s_sk=None, self_mask_seed=None):
        validate_params(params)
        neighbours = sorted(neighbours)
        if (len(neighbours) != params.effective_degree() or len(set(neighbours)) != len(neighbours)
                or self_index in neighbours or neighbours[0] < 1
                or neighbours[-1] > params.num_clients):
            raise _invalid(f"neighbour list of client {self_index} is not valid")
        self.params, self.index, self.neighbours = params, self_index, neighbours
        self.c_sk, self.c_pk = x25519_from_private(c_sk or random_key())
        self.s_sk, self.s_pk = x25519_from_private(s_sk or random_key())
        self.b = bytes(self_mask_seed or random_key())
        self.stage = ADVERTISE_KEYS
        self.keys, self.held = {}, {}

    def _expect(self, stage):
        if self.stage != stage:
            raise SecAggError("failed_precondition",
                              f"secagg client {self.index} is at stage {STAGE_NAMES[self.stage]}")

    def _fail(self, error):
        self.stage = FAILED
        return error

    def advertise_keys(self):
        self._expect(ADVERTISE_KEYS)
        self.stage = SHARE_KEYS
        return KeyAdvertisement(self.index, self.c_pk, self.s_pk)

    def share_keys(self, neighbour_keys):
        self._expect(SHARE_KEYS)
        seen = {self.c_pk, self.s_pk}
        for adv in neighbour_keys:
            if adv.sender not in self.neighbours:
                raise self._fail(_invalid(f"keys of client {adv.sender}, not a neighbour"))
            if adv.sender in self.keys:
                raise self._fail(_invalid(f"keys of client {adv.sender} given twice"))
            if adv.c_pk in seen or adv.s_pk in seen:
                raise self._fail(_invalid(f"client {adv.sender} advertises a key already seen"))
            seen |= {adv.c_pk, adv.s_pk}
            self.keys[adv.sender] = adv
        t = self.params.threshold
        if len(self.keys) < t:
            raise self._fail(SecAggError("failed_precondition",
                                         f"only {len(self.keys)} neighbours advertised keys"))
        xs = sorted(self.keys)
        b_shares = shamir_split(self.b, t, xs)
        s_shares = shamir_split(self.s_sk, t, xs)
        shares = []
        for (x, b_ys), (_, s_ys) in zip(b_shares, s_shares):
            key = channel_key(self.c_sk, self.keys[x].c_pk, self.params.instance_id)
            shares.append(EncryptedShare(self.index, x, seal(
                key, share_plaintext(self.index, x, b_ys, s_ys),
                associated_data(self.params.instance_id, SHARE_KEYS, self.index, x))))
        self.stage = MASKED_INPUT
        return ShareKeysMessage(self.index, sha256(self.b), shares)

    def masked_input(self, inbox, x):
        self._expect(MASKED_INPUT)
        for e in inbox:
            if e.receiver != self.index or e.sender not in self.keys or e.sender in self.held:
                raise self._fail(_invalid(f"share from {e.sender} to {e.receiver} is not expected"))
            key = channel_key(self.c_sk, self.keys[e.sender].c_pk, self.params.instance_id)
            try:
                plain = open_sealed(key, e.ciphertext, associated_data(
                    self.params.instance_id, SHARE_KEYS, e.sender, self.index))
                self.held[e.sender] = parse_share_plaintext(plain, e.sender, self.index)
            except SecAggError as error:
                raise self._fail(error) from None
        if len(self.held) < self.params.threshold:
            raise self._fail(SecAggError("failed_precondition",
                                         f"only {len(self.held)} neighbours sent shares"))
        partners = [(v, self.keys[v].s_pk) for v in sorted(self.held)]
        y = mask_input(self.params, self.index, x, self.b, self.s_sk, partners)
        self.stage = UNMASK
        return y

    def unmask(self, survivors):
        self._expect(UNMASK)
        survivors = list(survivors)
        if survivors != sorted(set(survivors)) or self.index not in survivors:
            raise self._fail(_invalid("survivor list is not sorted, has repeats, or omits this client"))
        alive = set(survivors)
        shares = []
        for v in sorted(self.held):
            b_ys, s_ys = self.held[v]
            # Never both shares of one neighbour.
            if v in alive:
                shares.append(RevealedShare(v, SELF_MASK, serialize_share_values(b_ys)))
            else:
                shares.append(RevealedShare(v, MASK_KEY, serialize_share_values(s_ys)))
        if sum(v in alive for v in self.held) < self.params.threshold:
            raise self._fail(SecAggError("failed_precondition",
                                         "too few partners survived: nothing revealed"))
        self.stage = DONE
        return UnmaskResponse(self.index, shares)


class SecAggServer:
    """The server's stage machine (secagg/server.h), same checks and error
    kinds; sums masked inputs modulo 2^b as they arrive."""

    def __init__(self, params, graph_seed):
        validate_params(params)
        self.params, self.f = params, fraction_bits(params)
        self.graph = neighbour_graph(params.num_clients, params.degree, graph_seed)
        self.stage, self.failure = ADVERTISE_KEYS, ""
        self.keys, self.shared, self.commitments, self.inboxes = {}, set(), {}, {}
        self.received, self.masked, self.unmasked = {}, [], set()
        self.b_shares, self.s_shares = {}, {}
        self.sum = np.zeros(params.vector_length, dtype=_dtype(params.bits))

    def _fail_instance(self, error):
        self.stage, self.failure, self.sum = FAILED, str(error), None
        return error

    def _check(self, sender, stage, previous=None):
        if self.stage == FAILED:
            raise SecAggError("failed_precondition", f"instance failed: {self.failure}")
        if not 1 <= sender <= self.params.num_clients:
            raise _invalid(f"client index {sender} outside 1..{self.params.num_clients}")
        if self.stage != stage:
            raise SecAggError("failed_precondition",
                              f"instance is at stage {STAGE_NAMES[self.stage]}")
        if previous is not None and sender not in previous:
            raise SecAggError("failed_precondition", f"client {sender} dropped out before "
                              f"stage {STAGE_NAMES[stage]}")

    def _close(self, members, next_stage, what):
        if len(members) < self.params.threshold:
            raise self._fail_instance(SecAggError(
                "failed_precondition", f"only {len(members)} clients {what}, fewer than the "
                f"threshold t = {self.params.threshold}"))
        self.stage = next_stage

    def receive_keys(self, adv):
        self._check(adv.sender, ADVERTISE_KEYS)
        if adv.sender in self.keys:
            raise SecAggError("already_exists", f"client {adv.sender} already advertised")
        used = {k for a in self.keys.values() for k in (a.c_pk, a.s_pk)}
        if adv.c_pk == adv.s_pk or adv.c_pk in used or adv.s_pk in used:
            raise _invalid(f"client {adv.sender}: keys repeated")
        for key in (adv.c_pk, adv.s_pk):
            x25519_shared_secret(b"\x09" + bytes(31), key)  # Refuses low-order points.
        self.keys[adv.sender] = adv

    def close_advertise_keys(self):
        self._check(1, ADVERTISE_KEYS)
        self._close(self.keys, SHARE_KEYS, "advertised keys")

    def keys_for(self, client):
        if self.stage != SHARE_KEYS or client not in self.keys:
            raise SecAggError("failed_precondition", f"no keys for client {client}")
        return [self.keys[v] for v in self.graph[client] if v in self.keys]

    def receive_shares(self, msg):
        u = msg.sender
        self._check(u, SHARE_KEYS, self.keys)
        if u in self.shared:
            raise SecAggError("already_exists", f"client {u} already sent its shares")
        expected = {v for v in self.graph[u] if v in self.keys}
        receivers = [e.receiver for e in msg.shares]
        if (any(e.sender != u for e in msg.shares) or len(set(receivers)) != len(receivers)
                or set(receivers) != expected):
            raise _invalid(f"client {u}'s shares are not one per neighbour that advertised keys")
        if any(len(e.ciphertext) != SHARE_CIPHERTEXT_BYTES for e in msg.shares):
            raise _invalid(f"client {u}'s share has the wrong number of bytes")
        for e in msg.shares:
            self.inboxes.setdefault(e.receiver, []).append(e)
        self.commitments[u] = bytes(msg.self_mask_commitment)
        self.shared.add(u)

    def close_share_keys(self):
        self._check(1, SHARE_KEYS)
        self._close(self.shared, MASKED_INPUT, "sent their shares")

    def inbox_for(self, client):
        if self.stage != MASKED_INPUT or client not in self.shared:
            raise SecAggError("failed_precondition", f"no shares for client {client}")
        return list(self.inboxes.get(client, []))

    def receive_masked_chunk(self, sender, word_offset, data, sign=+1):
        self._check(sender, MASKED_INPUT, self.shared)
        size = self.params.bits // 8
        if not data or len(data) % size:
            raise _invalid(f"masked chunk of {len(data)} bytes is not a number of words")
        count, received = len(data) // size, self.received.get(sender, 0)
        if sign > 0:
            if word_offset + count <= received:
                raise SecAggError("already_exists", f"client {sender}'s words already received")
            if word_offset != received:
                raise _invalid(f"masked chunk starts at {word_offset}, expected {received}")
            if received + count > self.params.vector_length:
                raise _invalid(f"client {sender}'s masked input is longer than the instance's")
        elif word_offset + count != received:
            raise _invalid("a retraction must end at what was received")
        words = np.frombuffer(bytes(data), dtype=_dtype(self.params.bits))
        view = self.sum[word_offset:word_offset + count]
        (np.add if sign > 0 else np.subtract)(view, words, out=view)
        self.received[sender] = received + count if sign > 0 else word_offset

    def retract_masked_chunk(self, sender, word_offset, data):
        self.receive_masked_chunk(sender, word_offset, data, sign=-1)

    def close_masked_input(self):
        self._check(1, MASKED_INPUT)
        if any(0 < r < self.params.vector_length for r in self.received.values()):
            raise SecAggError("failed_precondition", "a masked input is partial: retract it")
        self.masked = sorted(c for c, r in self.received.items() if r == self.params.vector_length)
        self._close(self.masked, UNMASK, "sent their masked input")

    @property
    def survivors(self):
        return list(self.masked)

    def receive_unmask(self, response):
        u = response.sender
        self._check(u, UNMASK, set(self.masked))
        if u in self.unmasked:
            raise SecAggError("already_exists", f"client {u} already sent its unmasking")
        expected = {v for v in self.graph[u] if v in self.shared}
        owners = [r.owner for r in response.shares]
        if len(set(owners)) != len(owners) or set(owners) != expected:
            raise _invalid(f"client {u} reveals shares of the wrong clients")
        parsed = []
        for r in response.shares:
            if r.kind != (SELF_MASK if r.owner in self.masked else MASK_KEY):
                raise _invalid(f"client {u} reveals the wrong kind of share of client {r.owner}")
            parsed.append((r, parse_share_values(r.values)))
        for r, ys in parsed:
            (self.b_shares if r.kind == SELF_MASK else self.s_shares).setdefault(
                r.owner, []).append((u, ys))
        self.unmasked.add(u)

    def _seeds(self):
        seeds = []
        t, alive = self.params.threshold, set(self.masked)
        for u in self.masked:
            b = shamir_reconstruct(self.b_shares.get(u, []), t)
            if sha256(b) != self.commitments[u]:
                raise SecAggError("data_loss", f"self-mask seed of client {u} contradicts its "
                                  "commitment")
            seeds.append((b, -1))
        for v in sorted(self.shared - alive):
            s_sk = shamir_reconstruct(self.s_shares.get(v, []), t)
            if x25519_from_private(s_sk)[1] != self.keys[v].s_pk:
                raise SecAggError("data_loss", f"mask key of client {v} does not match its key")
            for u in self.graph[v]:
                if u in alive:
                    seeds.append((pairwise_seed(s_sk, self.keys[u].s_pk, self.params.instance_id),
                                  -pair_sign(u, v)))
        return seeds

    def finish(self, chunk_words=1 << 16):
        """The unmasked sum of the survivors' quantized inputs (uint array)."""
        self._check(1, UNMASK)
        if len(self.unmasked) < self.params.threshold:
            raise self._fail_instance(SecAggError(
                "failed_precondition", f"only {len(self.unmasked)} clients sent their unmasking "
                "shares, fewer than the threshold"))
        try:
            seeds = self._seeds()
        except SecAggError as error:
            raise self._fail_instance(error) from None
        for start in range(0, len(self.sum), chunk_words):
            chunk = self.sum[start:start + chunk_words]
            for seed, sign in seeds:
                add_prg_words(chunk, seed, sign, start)
        self.stage = DONE
        return self.sum
