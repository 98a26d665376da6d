"""Update codecs, byte for byte those of the C++ library (compress/codec.h).

A codec turns a flat float32 vector of d entries (an update, or the model)
into bytes and back; the wire formats are in compress/README.md. Everything is
vectorised numpy, and every float operation is the C++ one (float32 where the
C++ code uses float, float64 where it uses double, sums in the same order),
so encode() gives the same bytes as compress::Encode and decode() the same
floats, bit for bit, as compress::Decode; the tests check both against the
C++ code (client/python/tests/test_codec_parity.py).

decode() validates every byte like the C++ decoders and raises CodecError for
any payload an encoder cannot produce (wrong length, index out of range,
counts that disagree, non-finite values, non-canonical varints, non-zero
padding bits, trailing bytes). encode() raises CodecError for non-finite
input or a value the format cannot hold.
"""
import dataclasses
import math

import numpy as np

from tally import _dense_codecs, _sparse_codecs
from tally.errors import CodecError

MAX_DIM = 1 << 40

# name -> (wire id, lossless, seeded); ids are tally.v1.Codec's.
CODECS = {
    "float32": (1, True, False),
    "float16": (2, False, False),
    "bfloat16": (3, False, False),
    "int8": (4, False, False),
    "qsgd": (5, False, True),
    "sign": (6, False, False),
    "topk": (7, False, False),
    "randk": (8, False, True),
    "spsa": (9, False, True),
}
NAMES_BY_ID = {codec_id: name for name, (codec_id, _, _) in CODECS.items()}

# ZSTD_minCLevel() / ZSTD_maxCLevel() of libzstd 1.5.
ZSTD_MIN_LEVEL = -(1 << 17)
ZSTD_MAX_LEVEL = 22
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclasses.dataclass
class CodecSpec:
    """A codec and its parameters (compress::CodecSpec). Fields a codec does
    not use are ignored; CodecSpec.default(name) has the codec's defaults."""

    codec: str = "float32"
    block_size: int = 0  # int8 (256), qsgd (512), sign (0 = one block).
    levels: int = 0  # qsgd s (7).
    k: int = 0  # topk / randk entries (0: from ratio); spsa pairs (1).
    ratio: float = 0.0  # topk / randk when k == 0 (0.01).
    half_values: bool = False  # topk / randk values as float16.
    rescale: bool = False  # randk: values times d / k (default True).
    seed: int = 0  # qsgd rounding, randk selection, spsa seeds.
    zstd: bool = False
    zstd_level: int = 3

    @classmethod
    def default(cls, codec):
        if codec not in CODECS:
            raise CodecError(f"unknown codec '{codec}' (one of {', '.join(CODECS)})")
        spec = cls(codec=codec)
        if codec == "int8":
            spec.block_size = 256
        elif codec == "qsgd":
            spec.levels, spec.block_size = 7, 512
        elif codec == "topk":
            spec.ratio = 0.01
        elif codec == "randk":
            spec.ratio, spec.rescale = 0.01, True
        elif codec == "spsa":
            spec.k = 1
        return spec

    @property
    def id(self):
        return CODECS[self.codec][0]

    @property
    def lossless(self):
        return CODECS[self.codec][1]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def validate_spec(spec, d):
    """Raises CodecError unless `spec` is usable for vectors of d entries."""
    if spec.codec not in CODECS:
        raise CodecError(f"codec '{spec.codec}' is unknown")
    if not 1 <= d <= MAX_DIM:
        raise CodecError(f"d = {d} is outside the codecs' range 1..{MAX_DIM}")
    if spec.zstd and not ZSTD_MIN_LEVEL <= spec.zstd_level <= ZSTD_MAX_LEVEL:
        raise CodecError(f"zstd_level = {spec.zstd_level} is outside zstd's range "
                         f"{ZSTD_MIN_LEVEL}..{ZSTD_MAX_LEVEL}")
    if spec.codec == "qsgd" and not 1 <= spec.levels <= 32767:
        raise CodecError(f"qsgd levels = {spec.levels} is outside 1..32767")
    if spec.codec in ("topk", "randk"):
        if spec.k > d:
            raise CodecError(f"k = {spec.k} exceeds d = {d}")
        ratio = float(np.float32(spec.ratio))
        if spec.k == 0 and not 0.0 < ratio <= 1.0:
            raise CodecError(f"ratio = {ratio} must be in (0, 1] when k = 0")
    if spec.codec == "spsa" and not 1 <= spec.k <= (1 << 20):
        raise CodecError(f"spsa k (pairs) = {spec.k} is outside 1..{1 << 20}")


def effective_k(spec, d):
    """topk / randk: k, or ceil(ratio * d) clamped to 1..d; spsa: k."""
    if spec.codec in ("topk", "randk"):
        if spec.k > 0:
            return spec.k
        k = math.ceil(float(np.float32(spec.ratio)) * float(d))
        return 1 if k < 1 else min(k, d)
    return spec.k if spec.codec == "spsa" else 0


def _inner_max_bytes(spec, d):
    return _OPS[spec.codec][0](spec, d)


def max_encoded_bytes(spec, d):
    """An upper bound of encode()'s size for d entries (exact for the fixed
    size codecs; with zstd, ZSTD_compressBound of it)."""
    inner = _inner_max_bytes(spec, d)
    if not spec.zstd:
        return inner
    # ZSTD_COMPRESSBOUND of libzstd 1.5.
    margin = ((128 << 10) - inner) >> 11 if inner < (128 << 10) else 0
    return inner + (inner >> 8) + margin


def _as_vector(x):
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
    return x


def _check_finite(x):
    finite = np.isfinite(x)
    if not finite.all():
        j = int(np.argmin(finite))
        raise CodecError(f"cannot encode x[{j}] = {x[j]}: the input must be finite")


def encode(spec, x):
    """The payload of x (any array, flattened to float32) as bytes."""
    x = _as_vector(x)
    validate_spec(spec, x.size)
    _check_finite(x)
    inner = _OPS[spec.codec][1](spec, x)
    return zstd_compress(inner, spec.zstd_level) if spec.zstd else inner


def decode(spec, payload, d):
    """The d floats (float32 array) a payload stands for; CodecError if the
    C++ decoder would refuse it."""
    validate_spec(spec, d)
    payload = bytes(payload)
    if spec.zstd:
        payload = _unframe(spec, d, payload)
    return _OPS[spec.codec][2](spec, payload, d)


def encode_sparse(spec, indices, values, d):
    """The topk payload of a sparse vector given explicitly (EncodeSparse)."""
    if spec.codec != "topk":
        raise CodecError("encode_sparse needs a topk codec spec")
    validate_spec(spec, d)
    inner = _sparse_codecs.encode_sparse(spec, indices, values, d, effective_k(spec, d))
    return zstd_compress(inner, spec.zstd_level) if spec.zstd else inner


def encode_spsa_pairs(spec, seeds, scalars):
    """The spsa payload of (seed, scalar) pairs (EncodeSpsaPairs)."""
    if spec.codec != "spsa":
        raise CodecError("encode_spsa_pairs needs an spsa codec spec")
    validate_spec(spec, 1)
    inner = _sparse_codecs.encode_spsa_pairs(spec, seeds, scalars)
    return zstd_compress(inner, spec.zstd_level) if spec.zstd else inner


def zstd_compress(inner, level):
    """One zstd frame declaring its content size, as ZSTD_compress writes."""
    import zstandard

    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(inner)


def _unframe(spec, d, payload):
    import zstandard

    if len(payload) < 4 or payload[:4] != _ZSTD_MAGIC:
        raise CodecError("zstd payload: not a zstd frame (no magic number 28 b5 2f fd)")
    try:
        declared = zstandard.get_frame_parameters(payload).content_size
    except zstandard.ZstdError as e:
        raise CodecError(f"zstd payload: malformed frame header ({e})") from None
    if declared == zstandard.CONTENTSIZE_UNKNOWN:
        raise CodecError("zstd payload: the frame does not declare its decompressed size")
    limit = _inner_max_bytes(spec, d)
    if declared > limit:
        raise CodecError(f"zstd payload: declared decompressed size {declared} exceeds the "
                         f"inner codec's maximum {limit} for d = {d}")
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        inner = decompressor.decompress(payload)
    except zstandard.ZstdError as e:
        raise CodecError(f"zstd payload: decompression failed: {e}") from None
    if not decompressor.eof:
        raise CodecError("zstd payload: truncated frame")
    if decompressor.unused_data:
        raise CodecError(f"zstd payload: {len(decompressor.unused_data)} trailing bytes after "
                         "the zstd frame")
    if len(inner) != declared:
        raise CodecError(f"zstd payload: decompressed to {len(inner)} bytes, the frame "
                         f"declares {declared}")
    return inner


# name -> (max_bytes(spec, d), encode(spec, x) -> bytes, decode(spec, payload, d)).
_OPS = {
    "float32": _dense_codecs.FLOAT32,
    "float16": _dense_codecs.FLOAT16,
    "bfloat16": _dense_codecs.BFLOAT16,
    "int8": _dense_codecs.INT8,
    "qsgd": _dense_codecs.QSGD,
    "sign": _dense_codecs.SIGN,
    "topk": (lambda spec, d: _sparse_codecs.topk_bytes(spec, d, effective_k(spec, d)),
             lambda spec, x: _sparse_codecs.encode_topk(spec, x, effective_k(spec, x.size)),
             lambda spec, p, d: _sparse_codecs.decode_topk(spec, p, d, effective_k(spec, d))),
    "randk": (_sparse_codecs.randk_bytes,
              lambda spec, x: _sparse_codecs.encode_randk(spec, x, effective_k(spec, x.size)),
              lambda spec, p, d: _sparse_codecs.decode_randk(spec, p, d, effective_k(spec, d))),
    "spsa": _sparse_codecs.SPSA,
}
