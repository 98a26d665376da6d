"""Conversions between tally.v1 messages and the SDK's types, and the
assembly of a PullModel stream (client/model_stream.cc, proto/codec_params.cc).
"""
import numpy as np

from tally import codecs
from tally._dense_codecs import bfloat16_bits, half_bits
from tally.errors import LayoutMismatchError, LengthMismatchError, ProtocolError, \
    UnsupportedError

CODEC_DENSE_F32 = 1


def spec_from_proto(codec_id, params):
    """The codec's defaults overridden by every non-zero field of `params`
    (a tally.v1.CodecParams), as proto/codec_params.cc reads a header."""
    codec_id = codec_id or CODEC_DENSE_F32
    name = codecs.NAMES_BY_ID.get(codec_id)
    if name is None:
        raise UnsupportedError(f"codec {codec_id} is not one this SDK knows")
    spec = codecs.CodecSpec.default(name)
    if params is None:
        return spec
    if params.block_size:
        spec.block_size = params.block_size
    if params.levels:
        spec.levels = params.levels
    if params.k:
        spec.k = params.k
    if params.ratio:
        spec.ratio = params.ratio
    if params.half_values:
        spec.half_values = True
    if params.biased:
        spec.rescale = False
    spec.seed = params.seed
    if params.zstd:
        spec.zstd = True
    if params.zstd_level:
        spec.zstd_level = params.zstd_level
    return spec


def spec_to_proto(spec, params):
    """Fills a tally.v1.CodecParams with every field of `spec`."""
    params.block_size = spec.block_size
    params.levels = spec.levels
    params.k = spec.k
    params.ratio = spec.ratio
    params.half_values = spec.half_values
    params.biased = spec.codec == "randk" and not spec.rescale
    params.seed = spec.seed
    params.zstd = spec.zstd
    params.zstd_level = spec.zstd_level


def round_to_precision(values, codec):
    """P of the PullModel delta rule: float32 values rounded to the download
    codec's precision (float16 / bfloat16: nearest even, back to float32)."""
    if codec == "float16":
        h = half_bits(values)
        return h.view(np.float16).astype(np.float32)
    if codec == "bfloat16":
        return (bfloat16_bits(values).astype(np.uint32) << np.uint32(16)).view(np.float32)
    return values


class HeldModel:
    """A model reconstructed on the server's delta chain (PullModel's
    have_version): private to the client, never handed out."""

    def __init__(self, version, params, layout=None, chain_id=0):
        self.version = version
        self.params = params
        self.layout = layout
        self.chain_id = chain_id  # The server's delta chain it is on.


class ModelAssembler:
    """Checks and applies the segments of one PullModel stream.

    layout: the ModelLayout Join returned; precision: the download codec's
    name (the P of delta segments); held: the HeldModel named as
    have_version, or None. Raises LayoutMismatchError / LengthMismatchError /
    ProtocolError / CodecError for what the server sent wrong."""

    def __init__(self, layout, precision="float32", held=None):
        self.layout = layout
        self.precision = precision
        self.held = held
        self.params = None  # The current segment chain's result.
        self.version = None
        self.round = 0
        self.delta_base = False
        self.chain_id = 0
        self.segments = 0
        self.delta_segments = 0  # Segments applied as deltas to a held model.
        self.payload_bytes = 0  # Over all segments.
        self._header = None
        self._spec = None
        self._buffer = None
        self._received = 0

    def add(self, chunk):
        kind = chunk.WhichOneof("kind")
        if kind == "header":
            self._finish_segment()
            self._start_segment(chunk.header)
        elif kind == "data":
            self._add_data(chunk.offset, chunk.data)
        else:
            raise ProtocolError("a PullModel message with neither header nor data")

    def _start_segment(self, header):
        if not header.HasField("model_spec"):
            raise ProtocolError("the model header has no model_spec")
        spec = header.model_spec
        if spec.layout_hash != self.layout.layout_hash:
            raise LayoutMismatchError(
                f"layout hash mismatch: the server's model has {spec.layout_hash:#018x}, Join "
                f"returned {self.layout.layout_hash:#018x}; the model changed, call join() again")
        if spec.num_params != self.layout.num_params:
            raise LengthMismatchError(f"num_params mismatch: the server's model has "
                                      f"{spec.num_params}, Join returned {self.layout.num_params}")
        codec = spec_from_proto(header.codec, header.codec_params if header.HasField(
            "codec_params") else None)
        d = self.layout.num_params
        codecs.validate_spec(codec, d)
        if codec.codec == "float32" and not codec.zstd and header.payload_bytes != 4 * d:
            raise LengthMismatchError(f"payload_bytes mismatch: header says "
                                      f"{header.payload_bytes}, 4 * num_params = {4 * d}")
        limit = codecs.max_encoded_bytes(codec, d)
        if header.payload_bytes > limit:
            raise LengthMismatchError(f"payload_bytes {header.payload_bytes} exceeds the largest "
                                      f"{codec.codec} payload for {d} parameters ({limit})")
        if header.base_version != 0:
            base = self._current_base()
            if base is None or base.version != header.base_version or \
                    base.chain_id != header.chain_id:
                have = "nothing" if base is None else \
                    f"version {base.version} of chain {base.chain_id:#x}"
                raise ProtocolError(f"a delta from version {header.base_version} of chain "
                                    f"{header.chain_id:#x}, but the client holds {have}")
        self._header, self._spec = header, codec
        self._buffer = bytearray(header.payload_bytes)
        self._received = 0

    def _current_base(self):
        if self.params is not None:
            return HeldModel(self.version, self.params, chain_id=self.chain_id)
        return self.held

    def _add_data(self, offset, data):
        if self._header is None:
            raise ProtocolError("the first message of the stream is not a header")
        if offset != self._received:
            raise ProtocolError(f"chunk at offset {offset}, expected offset {self._received} "
                                "(chunks must be contiguous)")
        if len(data) > len(self._buffer) - self._received:
            raise LengthMismatchError(f"chunk of {len(data)} bytes at offset {offset} overruns "
                                      f"payload_bytes={len(self._buffer)}")
        self._buffer[offset:offset + len(data)] = data
        self._received += len(data)

    def _finish_segment(self):
        header = self._header
        if header is None:
            return
        if self._received != len(self._buffer):
            raise LengthMismatchError(f"the stream ended after {self._received} of "
                                      f"{len(self._buffer)} payload bytes")
        decoded = codecs.decode(self._spec, self._buffer, self.layout.num_params)
        if header.base_version == 0:
            params = decoded
        else:
            params = round_to_precision(self._current_base().params + decoded, self.precision)
            self.delta_segments += 1
            if not np.isfinite(params).all():
                raise codecs.CodecError("a delta segment made the model non-finite")
        self.params, self.version, self.round = params, header.version, header.round
        self.delta_base = header.delta_base
        self.chain_id = header.chain_id
        self.segments += 1
        self.payload_bytes += len(self._buffer)
        self._header = self._buffer = None

    def complete(self):
        """Finishes the last segment; the model's params (float32)."""
        self._finish_segment()
        if self.params is None:
            raise ProtocolError("the stream ended before the header")
        return self.params
