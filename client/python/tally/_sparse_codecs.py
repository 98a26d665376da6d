"""topk, randk and spsa (compress/topk_codec.cc, randk_codec.cc,
spsa_codec.cc), and the canonical LEB128 varints they use. Internal to
tally.codecs, which validates the spec, the input's finiteness and removes
any zstd frame first."""
import numpy as np

from tally import rng
from tally._dense_codecs import F32, U16, first_true, half_bits, half_bits_finite, \
    half_to_float, payload_error
from tally.errors import CodecError

_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)


def varint_length(v):
    return max(1, -(-int(v).bit_length() // 7))


def encode_varints(values):
    """Canonical unsigned LEB128 of every value, concatenated."""
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    if v.size == 0:
        return b""
    groups = ((v[:, None] >> _SHIFTS) & np.uint64(0x7F)).astype(np.uint8)
    nonzero = groups != 0
    length = np.where(nonzero.any(axis=1), 10 - np.argmax(nonzero[:, ::-1], axis=1), 1)
    position = np.arange(10)
    more = position[None, :] < (length[:, None] - 1)
    groups |= more.astype(np.uint8) << 7
    return groups[position[None, :] < length[:, None]].tobytes()


def read_varints(data, pos, count, codec, what):
    """`count` canonical varints from data[pos:] (a uint8 array): (uint64
    values, position after them). Refuses truncated, overlong (a final 0x00
    after the first byte) and overflowing (> 10 bytes, or above 2^64) ones."""
    if count == 0:
        return np.zeros(0, dtype=np.uint64), pos
    rest = data[pos:]
    ends = np.flatnonzero(rest < 0x80)[:count]
    if ends.size < count:
        raise payload_error(codec, f"{what} {ends.size}: truncated varint")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    last = rest[ends]
    bad = (lengths > 10) | ((lengths == 10) & (last > 1))
    if bad.any():
        raise payload_error(codec, f"{what} {first_true(bad)}: varint overflows 64 bits")
    overlong = (lengths > 1) & (last == 0)
    if overlong.any():
        raise payload_error(codec, f"{what} {first_true(overlong)}: overlong varint "
                                   "(non-canonical trailing zero byte)")
    used = rest[:ends[-1] + 1].astype(np.uint64) & np.uint64(0x7F)
    offset = np.arange(used.size) - np.repeat(starts, lengths)
    contributions = used << (offset.astype(np.uint64) * np.uint64(7))
    return np.bitwise_or.reduceat(contributions, starts), pos + int(ends[-1]) + 1


def read_varint(data, pos, codec, what):
    values, pos = read_varints(data, pos, 1, codec, what)
    return int(values[0]), pos


def _value_bytes(spec):
    return 2 if spec.half_values else 4


def _load_values(data, count, half):
    if half:
        return half_to_float(np.frombuffer(data, dtype=U16, count=count))
    return np.frombuffer(data, dtype=F32, count=count).astype(np.float32)


def _sparse_values(spec, values, codec, names):
    """The value bytes (float32, or float16 with half_values)."""
    if not spec.half_values:
        return values.astype(F32).tobytes()
    h = half_bits(values)
    finite = half_bits_finite(h)
    if not finite.all():
        i = first_true(~finite)
        raise CodecError(f"{codec} cannot send {names(i)} = {values[i]} as float16: rounds to "
                         "infinity")
    return h.astype(U16).tobytes()


# --- topk --------------------------------------------------------------------

def topk_bytes(spec, d, k):
    return varint_length(k) + k * (varint_length(d - 1) + _value_bytes(spec))


def _indices_payload(indices):
    gaps = np.diff(indices.astype(np.int64), prepend=-1) - 1
    return encode_varints(indices.size) + encode_varints(gaps.astype(np.uint64))


def topk_indices(x, k):
    """The indices of the k entries of largest |x| (a finite float32 array;
    ties: lowest index), ascending, 1 <= k <= x.size."""
    if k >= x.size:
        return np.arange(x.size)
    keys = x.view(np.uint32) & np.uint32(0x7FFFFFFF)  # Orders like |x|.
    threshold = np.partition(keys, keys.size - k)[keys.size - k]
    above = np.flatnonzero(keys > threshold)
    equal = np.flatnonzero(keys == threshold)[:k - above.size]
    return np.sort(np.concatenate((above, equal)))


def encode_topk(spec, x, k):
    """The k entries of largest |x| (ties: lowest index), ascending."""
    indices = topk_indices(x, k)
    values = _sparse_values(spec, x[indices], "topk", lambda i: f"value {i}")
    return _indices_payload(indices) + values


def encode_sparse(spec, indices, values, d, k):
    indices = np.asarray(indices, dtype=np.uint64).reshape(-1)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if indices.size != values.size:
        raise CodecError(f"encode_sparse: {indices.size} indices but {values.size} values")
    if indices.size > k:
        raise CodecError(f"encode_sparse: {indices.size} entries exceed k = {k}")
    if indices.size and ((indices >= d).any() or (np.diff(indices.astype(np.int64)) <= 0).any()):
        raise CodecError(f"encode_sparse: indices must be strictly increasing and below d = {d}")
    if not np.isfinite(values).all():
        raise CodecError(f"encode_sparse: value {first_true(~np.isfinite(values))} is not finite")
    return _indices_payload(indices) + _sparse_values(spec, values, "topk", lambda i: f"value {i}")


def decode_topk(spec, payload, d, k):
    data = np.frombuffer(payload, dtype=np.uint8)
    count, pos = read_varint(data, 0, "topk", "count")
    if count > k:
        raise payload_error("topk", f"count {count} exceeds k = {k}")
    if data.size - pos < count:
        raise payload_error("topk", f"{data.size} bytes cannot hold {count} indices (truncated)")
    gaps, pos = read_varints(data, pos, count, "topk", "index")
    if (gaps >= np.uint64(d)).any():
        raise payload_error("topk", f"index {first_true(gaps >= np.uint64(d))} is out of range "
                                    f"(>= d = {d})")
    with np.errstate(over="ignore"):
        indices = np.cumsum(gaps + np.uint64(1)) - np.uint64(1)
    # Each step adds less than 2^41, so a wrap-around shows as a decrease.
    wrapped = indices.size > 1 and (np.diff(indices.astype(np.int64)) <= 0).any()
    if indices.size and (wrapped or indices[-1] >= np.uint64(d)):
        out_of_range = indices >= np.uint64(d)
        i = first_true(out_of_range) if out_of_range.any() else indices.size - 1
        raise payload_error("topk", f"index {i} is out of range (>= d = {d})")
    value_bytes = _value_bytes(spec)
    if data.size - pos != count * value_bytes:
        what = "truncated" if data.size - pos < count * value_bytes else "trailing bytes"
        raise payload_error("topk", f"{data.size - pos} value bytes after the indices, expected "
                                    f"{count * value_bytes} for {count} values ({what})")
    values = _load_values(payload[pos:], count, spec.half_values)
    if not np.isfinite(values).all():
        i = first_true(~np.isfinite(values))
        raise payload_error("topk", f"value {i} = {values[i]} is not finite")
    out = np.zeros(d, dtype=np.float32)
    out[indices.astype(np.int64)] = values
    return out


# --- randk -------------------------------------------------------------------

_MASK_BLOCK = 1 << 20


def randk_selected(seed, k, d):
    """Indices j < d that randk with `seed` selects for k entries:
    RngBits(seed, j) < floor(k * 2^64 / d), every j when k >= d."""
    if k >= d:
        return np.arange(d, dtype=np.int64)
    threshold = np.uint64((k << 64) // d)
    chunks = [np.flatnonzero(rng.rng_bits(seed, begin, min(_MASK_BLOCK, d - begin)) < threshold)
              + begin for begin in range(0, d, _MASK_BLOCK)]
    return np.concatenate(chunks).astype(np.int64)


def randk_bytes(spec, d):
    return varint_length(d) + d * _value_bytes(spec)


def _randk_scale(spec, d, k):
    return np.float32(float(d) / float(k)) if spec.rescale else np.float32(1.0)


def encode_randk(spec, x, k):
    d = x.size
    indices = randk_selected(spec.seed, k, d)
    values = x[indices]
    payload_values = _sparse_values(spec, values, "randk", lambda i: f"x[{indices[i]}]")
    sent = half_to_float(half_bits(values)) if spec.half_values else values
    scale = _randk_scale(spec, d, k)
    with np.errstate(over="ignore"):
        overflow = ~np.isfinite(sent * scale)
    if overflow.any():
        i = first_true(overflow)
        raise CodecError(f"randk cannot send x[{indices[i]}] = {values[i]}: rescaled by d/k = "
                         f"{scale} it overflows float32")
    return encode_varints(indices.size) + payload_values


def decode_randk(spec, payload, d, k):
    data = np.frombuffer(payload, dtype=np.uint8)
    count, pos = read_varint(data, 0, "randk", "count")
    if count > d:
        raise payload_error("randk", f"count {count} exceeds d = {d}")
    value_bytes = _value_bytes(spec)
    if data.size - pos != count * value_bytes:
        raise payload_error("randk", f"{data.size - pos} value bytes, expected "
                                     f"{count * value_bytes} for {count} values")
    scale = _randk_scale(spec, d, k)
    with np.errstate(over="ignore", invalid="ignore"):
        values = _load_values(payload[pos:], count, spec.half_values) * scale
    if not np.isfinite(values).all():
        i = first_true(~np.isfinite(values))
        raise payload_error("randk", f"value {i} (times {scale}) is not finite")
    indices = randk_selected(spec.seed, k, d)
    if indices.size != count:
        raise payload_error("randk", f"count {count}, but seed {spec.seed} selects "
                                     f"{indices.size} of the d = {d} entries")
    out = np.zeros(d, dtype=np.float32)
    out[indices] = values
    return out


# --- spsa --------------------------------------------------------------------

_PAIR = np.dtype([("seed", "<u8"), ("scalar", "<f4")])
_MAX_SCALAR_SUM = 2.0**127


def _pairs_payload(seeds, scalars):
    pairs = np.zeros(len(seeds), dtype=_PAIR)
    pairs["seed"] = seeds
    pairs["scalar"] = scalars
    return pairs.tobytes()


def _scalar_sum(scalars):
    return float(np.cumsum(np.abs(scalars.astype(np.float64)))[-1]) if scalars.size else 0.0


def encode_spsa(spec, x):
    """k pairs: seed_i = RngBits(seed, i), scalar_i = float32(z_i . x / k)."""
    d = x.size
    seeds = rng.rng_bits(spec.seed, 0, spec.k)
    x64 = x.astype(np.float64)
    scalars = np.empty(spec.k, dtype=np.float32)
    for i, seed in enumerate(seeds):  # One vectorised pass per pair.
        signed = np.where(rng.rademacher_negative(int(seed), d), -x64, x64)
        scalars[i] = np.float32(np.cumsum(signed)[-1] / float(spec.k))
    if not _scalar_sum(scalars) <= _MAX_SCALAR_SUM:
        raise CodecError("spsa cannot encode x: the projections exceed 2^127")
    return _pairs_payload(seeds, scalars)


def encode_spsa_pairs(spec, seeds, scalars):
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    scalars = np.asarray(scalars, dtype=np.float32).reshape(-1)
    if seeds.size != scalars.size:
        raise CodecError(f"spsa: {seeds.size} seeds but {scalars.size} scalars")
    if seeds.size > spec.k:
        raise CodecError(f"{seeds.size} spsa pairs exceed k = {spec.k}")
    if not np.isfinite(scalars).all():
        raise CodecError(f"spsa scalar {first_true(~np.isfinite(scalars))} is not finite")
    if _scalar_sum(scalars) > _MAX_SCALAR_SUM:
        raise CodecError("spsa scalars: their absolute sum exceeds 2^127")
    return _pairs_payload(seeds, scalars)


def decode_spsa(spec, payload, d):
    if len(payload) % _PAIR.itemsize != 0:
        raise payload_error("spsa", f"{len(payload)} bytes is not a whole number of 12-byte pairs")
    pairs = np.frombuffer(payload, dtype=_PAIR)
    if pairs.size > spec.k:
        raise payload_error("spsa", f"{pairs.size} pairs exceed k = {spec.k}")
    scalars = pairs["scalar"].astype(np.float32)
    if not np.isfinite(scalars).all():
        i = first_true(~np.isfinite(scalars))
        raise payload_error("spsa", f"scalar {i} = {scalars[i]} is not finite")
    total = _scalar_sum(scalars)
    if total > _MAX_SCALAR_SUM:
        raise payload_error("spsa", f"the scalars' absolute sum {total} exceeds 2^127")
    out = np.zeros(d, dtype=np.float32)
    for seed, s in zip(pairs["seed"], scalars):  # Summed in payload order, in float32.
        out += np.where(rng.rademacher_negative(int(seed), d), -s, s)
    return out


SPSA = (lambda spec, d: 12 * spec.k, encode_spsa, decode_spsa)
