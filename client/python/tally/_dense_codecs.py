"""float32, float16, bfloat16, int8, qsgd and sign (compress/dense_codecs.cc,
int8_codec.cc, qsgd_codec.cc, sign_codec.cc): every entry is on the wire.
Internal to tally.codecs, which validates the spec, the input's finiteness
and removes any zstd frame first."""
import numpy as np

from tally import rng
from tally.errors import CodecError

F32 = np.dtype("<f4")
U16 = np.dtype("<u2")


def payload_error(codec, message):
    return CodecError(f"{codec} payload: {message}")


def check_length(codec, payload, expected, d):
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "trailing bytes"
        raise payload_error(codec, f"{len(payload)} bytes, expected {expected} for d = {d} "
                                   f"({what})")


def num_blocks(block_size, d):
    return 1 if block_size == 0 else -(-d // block_size)


def blocks(x, block_size):
    """x as a (blocks, block length) matrix, the last block zero-padded."""
    d = x.size
    length = d if block_size == 0 else block_size
    nb = num_blocks(block_size, d)
    padded = np.zeros(nb * length, dtype=x.dtype)
    padded[:d] = x
    return padded.reshape(nb, length)


def block_lengths(block_size, d):
    nb = num_blocks(block_size, d)
    length = d if block_size == 0 else block_size
    lengths = np.full(nb, length, dtype=np.int64)
    lengths[-1] = d - (nb - 1) * length
    return lengths


def sequential_row_sums(values):
    """Row sums of a float64 matrix added left to right, as a C++ loop
    `sum += v` does (numpy's sum is pairwise and rounds differently)."""
    return np.cumsum(values, axis=1)[:, -1]


def first_true(mask):
    return int(np.argmax(mask))


def _floats(payload, d):
    return np.frombuffer(payload, dtype=F32, count=d)


# --- float32 -----------------------------------------------------------------

def _encode_float32(spec, x):
    return x.astype(F32).tobytes()


def _decode_float32(spec, payload, d):
    check_length("float32", payload, 4 * d, d)
    v = _floats(payload, d)
    finite = np.isfinite(v)
    if not finite.all():
        j = first_true(~finite)
        raise payload_error("float32", f"value {j} = {v[j]} is not finite")
    return v.astype(np.float32)


# --- float16 / bfloat16 ------------------------------------------------------

def half_bits(x):
    """IEEE binary16 bits of float32 x, round to nearest even (numpy's
    astype(float16), which compress/half.h reproduces)."""
    with np.errstate(over="ignore"):
        return x.astype(np.float16).view(np.uint16)


def half_bits_finite(h):
    return (h & 0x7C00) != 0x7C00


def bfloat16_bits(x):
    u = x.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)) \
        .astype(np.uint16)


def _encode_half_format(name, bits_of, finite_of, hint):
    def encode(spec, x):
        h = bits_of(x)
        finite = finite_of(h)
        if not finite.all():
            j = first_true(~finite)
            raise CodecError(f"cannot encode x[{j}] = {x[j]} as {name}: {hint} rounds to infinity")
        return h.astype(U16).tobytes()
    return encode


def _decode_half_format(name, finite_of, to_float):
    def decode(spec, payload, d):
        check_length(name, payload, 2 * d, d)
        h = np.frombuffer(payload, dtype=U16, count=d)
        finite = finite_of(h)
        if not finite.all():
            j = first_true(~finite)
            raise payload_error(name, f"value {j} (bits {int(h[j]):#x}) is inf or NaN")
        return to_float(h)
    return decode


def half_to_float(h):
    return h.view(np.float16).astype(np.float32)


def _bfloat16_to_float(h):
    return (h.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _bfloat16_finite(h):
    return (h & 0x7F80) != 0x7F80


# --- int8 --------------------------------------------------------------------

def _int8_bytes(spec, d):
    return 4 * num_blocks(spec.block_size, d) + d


def _encode_int8(spec, x):
    d = x.size
    xb = blocks(x, spec.block_size)
    scale = np.abs(xb).max(axis=1) / np.float32(127.0)
    with np.errstate(over="ignore"):
        overflow = ~np.isfinite(scale * np.float32(127.0))
    # Near FLT_MAX, s * 127 may round up to inf; the decoder refuses that.
    scale = np.where(overflow, np.nextafter(scale, np.float32(0.0)), scale).astype(np.float32)
    rounding = np.float32(1.5 * 2.0**23)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (xb / scale[:, None] + rounding) - rounding
    r = np.clip(np.nan_to_num(r, nan=0.0), -127.0, 127.0)
    r[scale == 0] = 0
    q = r.astype(np.int8).reshape(-1)[:d]
    return scale.astype(F32).tobytes() + q.tobytes()


def _decode_int8(spec, payload, d):
    nb = num_blocks(spec.block_size, d)
    check_length("int8", payload, _int8_bytes(spec, d), d)
    scale = _floats(payload, nb)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.signbit(scale) | ~np.isfinite(scale * np.float32(127.0))
    if bad.any():
        b = first_true(bad)
        raise payload_error("int8", f"scale of block {b} = {scale[b]} is negative, NaN or too "
                                    "large (scale * 127 must be finite)")
    q = np.frombuffer(payload, dtype=np.int8, offset=4 * nb, count=d)
    if (q == -128).any():
        raise payload_error("int8", f"value {first_true(q == -128)} is -128 "
                                    "(outside [-127, 127])")
    qb = blocks(q.astype(np.float32), spec.block_size)
    return (scale[:, None] * qb).reshape(-1)[:d]


# --- qsgd --------------------------------------------------------------------

def _qsgd_width(s):
    return 1 + int(s).bit_length()


def _qsgd_bytes(spec, d):
    return 4 * num_blocks(spec.block_size, d) + (d * _qsgd_width(spec.levels) + 7) // 8


def pack_codes(codes, width):
    """Codes of `width` bits, least significant bit first, in one bit stream
    (stream bit p = bit p mod 8 of byte p / 8), zero-padded to a byte."""
    bits = (codes.astype(np.uint32)[:, None] >> np.arange(width, dtype=np.uint32)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_codes(data, n, width):
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    bits = bits[:n * width].reshape(n, width).astype(np.uint32)
    return (bits << np.arange(width, dtype=np.uint32)).sum(axis=1).astype(np.uint32)


def _encode_qsgd(spec, x):
    d, s = x.size, spec.levels
    xb = blocks(x, spec.block_size).astype(np.float64)
    norm = np.sqrt(sequential_row_sums(xb * xb)).astype(np.float32)
    levels = np.float32(s)
    with np.errstate(over="ignore"):
        overflow = ~np.isfinite(norm / levels * levels)
    if overflow.any():
        raise CodecError(f"qsgd cannot encode bucket {first_true(overflow)}: its norm overflows "
                         "float32")
    with np.errstate(divide="ignore"):
        factor = np.where(norm > 0, float(s) / norm.astype(np.float64), 0.0)
    r = np.minimum(np.abs(xb) * factor[:, None], float(s)).reshape(-1)[:d]
    floor = np.floor(r)
    u = rng.rng_uniform(spec.seed, 0, d).astype(np.float64)
    level = floor.astype(np.uint32) + (u < r - floor)
    negative = (x < 0) & (level > 0)
    codes = (level << 1) | negative
    return norm.astype(F32).tobytes() + pack_codes(codes, _qsgd_width(s))


def _decode_qsgd(spec, payload, d):
    s = spec.levels
    width = _qsgd_width(s)
    nb = num_blocks(spec.block_size, d)
    check_length("qsgd", payload, _qsgd_bytes(spec, d), d)
    norm = _floats(payload, nb)
    levels = np.float32(s)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.signbit(norm) | ~np.isfinite(norm / levels * levels)
    if bad.any():
        b = first_true(bad)
        raise payload_error("qsgd", f"norm of bucket {b} = {norm[b]} is negative, NaN or too "
                                    "large")
    codes = unpack_codes(payload[4 * nb:], d, width)
    level = codes >> 1
    if (level > s).any():
        j = first_true(level > s)
        raise payload_error("qsgd", f"level {level[j]} of entry {j} exceeds s = {s}")
    if (codes == 1).any():
        raise payload_error("qsgd", f"entry {first_true(codes == 1)} has level 0 with a sign bit")
    used_bits = d * width % 8
    if used_bits != 0 and (payload[-1] >> used_bits) != 0:
        raise payload_error("qsgd", "non-zero padding bits")
    scale = norm / levels
    magnitude = blocks(level.astype(np.float32), spec.block_size) * scale[:, None]
    magnitude = magnitude.reshape(-1)[:d]
    return (magnitude.view(np.uint32) | ((codes & 1) << np.uint32(31))).view(np.float32)


# --- sign --------------------------------------------------------------------

def _sign_bytes(spec, d):
    return 4 * num_blocks(spec.block_size, d) + (d + 7) // 8


def _encode_sign(spec, x):
    d = x.size
    xb = np.abs(blocks(x, spec.block_size).astype(np.float64))
    lengths = block_lengths(spec.block_size, d).astype(np.float64)
    scale = (sequential_row_sums(xb) / lengths).astype(np.float32)
    bits = np.packbits((x >= 0).astype(np.uint8), bitorder="little")
    return scale.astype(F32).tobytes() + bits.tobytes()


def _decode_sign(spec, payload, d):
    nb = num_blocks(spec.block_size, d)
    check_length("sign", payload, _sign_bytes(spec, d), d)
    scale = _floats(payload, nb)
    bad = np.signbit(scale) | ~np.isfinite(scale)
    if bad.any():
        b = first_true(bad)
        raise payload_error("sign", f"scale of block {b} = {scale[b]} is negative or not finite")
    packed = np.frombuffer(payload, dtype=np.uint8, offset=4 * nb)
    if d % 8 != 0 and (packed[-1] >> (d % 8)) != 0:
        raise payload_error("sign", "non-zero padding bits")
    clear = 1 - np.unpackbits(packed, bitorder="little")[:d].astype(np.uint32)
    per_entry = np.repeat(scale.view(np.uint32), block_lengths(spec.block_size, d))
    return (per_entry | (clear << np.uint32(31))).view(np.float32)


# (max_bytes, encode, decode) per codec, as tally.codecs dispatches them.
FLOAT32 = (lambda spec, d: 4 * d, _encode_float32, _decode_float32)
FLOAT16 = (lambda spec, d: 2 * d,
           _encode_half_format("float16", half_bits, half_bits_finite, "|x| >= 65520"),
           _decode_half_format("float16", half_bits_finite, half_to_float))
BFLOAT16 = (lambda spec, d: 2 * d,
            _encode_half_format("bfloat16", bfloat16_bits, _bfloat16_finite,
                                "|x| >= 0x1.ff8p127"),
            _decode_half_format("bfloat16", _bfloat16_finite, _bfloat16_to_float))
INT8 = (_int8_bytes, _encode_int8, _decode_int8)
QSGD = (_qsgd_bytes, _encode_qsgd, _decode_qsgd)
SIGN = (_sign_bytes, _encode_sign, _decode_sign)
