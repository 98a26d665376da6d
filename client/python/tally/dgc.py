"""Deep Gradient Compression on the client (compress/dgc.h, whose file
comment has the arithmetic and what each option means for a federated
delta; "Deep Gradient Compression: Reducing the Communication Bandwidth for
Distributed Training", Lin et al., ICLR 2018): clipping of the update's L2
norm, momentum correction (plain or Nesterov), top-k of the accumulated
velocity of every tensor with ndim > 1 (ties to the lowest index), momentum
factor masking and a warm-up schedule of sparsity; 1-D tensors and scalars
are sent exactly unless compress_1d. One topk payload over the whole
vector.

Every float operation is the C++ one (float32 without FMA; the ratio and k
in double, pow from libm), so payloads, momentum and velocity equal
compress::DgcCompressor's bit for bit (tests/test_dgc.py runs both).
Vectorised numpy: one pass per tensor, no per-entry Python loop.

    dgc = DgcCompressor.from_layout(layout, DgcSettings(compress_ratio=0.01))
    payload, spec = dgc.compress(delta)   # spec: the update header's topk spec

Not thread-safe (one client's state); tally.Client copies it per update and
keeps the copy when the server acknowledges the push.
"""
import dataclasses
import math

import numpy as np

from tally import codecs
from tally._dense_codecs import half_bits, half_to_float
from tally._sparse_codecs import topk_indices
from tally.errors import CodecError


@dataclasses.dataclass(frozen=True)
class DgcSettings:
    """DGC's options (compress::DgcOptions; the defaults are the reference
    code's except momentum, 0 for federated deltas: compress/dgc.h)."""

    momentum: float = 0.0  # m in [0, 1] across updates, as float32; 0: top-k with EF.
    nesterov: bool = False  # Nesterov momentum correction.
    momentum_masking: bool = True  # u_j <- 0 where v_j was sent.
    clip_norm: float = 0.0  # Each update scaled to L2 norm <= clip_norm first; 0: off.
    compress_1d: bool = False  # Sparsify 1-D tensors and scalars too.
    compress_ratio: float = 0.001  # Fraction of each compressed tensor sent, (0, 1].
    warmup_steps: int = 0  # E: updates with a denser ratio first.
    warmup_ratios: tuple = ()  # One ratio per warm-up step; empty = geometric schedule.
    half_values: bool = False  # Values as float16 on the wire.
    zstd: bool = False  # Wrap the payload in a zstd frame at zstd_level.
    zstd_level: int = 3


def _is_ratio(r):
    return 0.0 < r <= 1.0  # False for NaN.


def validate_settings(s):
    """Raises CodecError naming the first invalid option (DgcCompressor::Create)."""
    if not 0.0 <= np.float32(s.momentum) <= 1.0:
        raise CodecError(f"DGC: momentum = {s.momentum} must be in [0, 1]")
    if not (math.isfinite(float(s.clip_norm)) and float(s.clip_norm) >= 0.0):
        raise CodecError(f"DGC: clip_norm = {s.clip_norm} must be finite and >= 0 "
                         "(0: no clipping)")
    if not _is_ratio(float(s.compress_ratio)):
        raise CodecError(f"DGC: compress_ratio = {s.compress_ratio} must be in (0, 1]")
    if not 0 <= int(s.warmup_steps) < 1 << 32:
        raise CodecError(f"DGC: warmup_steps = {s.warmup_steps} must be in 0..2^32-1")
    if s.warmup_ratios and len(s.warmup_ratios) != s.warmup_steps:
        raise CodecError(f"DGC: {len(s.warmup_ratios)} warmup_ratios for warmup_steps = "
                         f"{s.warmup_steps} (give one per warm-up step, or none)")
    for e, r in enumerate(s.warmup_ratios):
        if not _is_ratio(float(r)):
            raise CodecError(f"DGC: warmup_ratios[{e}] = {r} must be in (0, 1]")


def compress_ratio(settings, step):
    """ratio_e of compress/dgc.h for step e (DgcCompressRatio)."""
    base, warmup = float(settings.compress_ratio), int(settings.warmup_steps)
    if step >= warmup:
        return base
    if settings.warmup_ratios:
        return float(settings.warmup_ratios[step])
    # synxlin/deep-gradient-compression dgc/compression.py (c = base^(1/(E+1))).
    c = math.pow(base, 1.0 / (float(warmup) + 1.0))
    return max(math.pow(c, float(step) + 1.0), base)


def clip_scale(g, clip_norm):
    """s of compress/dgc.h (DgcClipScale): the float32 factor g is scaled
    by, 1 if clip_norm <= 0 or ||g|| <= clip_norm. g finite float32."""
    if not clip_norm > 0.0:
        return np.float32(1.0)
    # Exact squares, summed in index order (cumsum is sequential; sum() is
    # pairwise and would round differently from C++).
    g64 = g.astype(np.float64)
    total = float(np.cumsum(g64 * g64)[-1]) if g.size else 0.0
    norm = math.sqrt(total)
    if not norm > clip_norm:
        return np.float32(1.0)
    return np.float32(float(clip_norm) / norm)


def _wire_spec(settings, k):
    return codecs.CodecSpec.default("topk").replace(
        k=k, half_values=bool(settings.half_values), zstd=bool(settings.zstd),
        zstd_level=int(settings.zstd_level))


class DgcCompressor:
    """u (momentum) and v (velocity) of one client over a flat model vector.

    tensors: (offset, size, ndim) triples tiling [0, d) in order; ndim > 1
    is compressed. Raises CodecError for bad tensors or settings."""

    def __init__(self, tensors, settings=DgcSettings()):
        tensors = [(int(o), int(n), int(r)) for o, n, r in tensors]
        if not tensors:
            raise CodecError("DGC: no tensors")
        end = 0
        for i, (offset, size, _) in enumerate(tensors):
            if offset != end:
                raise CodecError(f"DGC: tensor {i} starts at {offset}, the previous one ends "
                                 f"at {end}")
            if size < 1 or size > codecs.MAX_DIM - end:
                raise CodecError(f"DGC: tensor {i} has size {size} (must be >= 1, total <= "
                                 f"{codecs.MAX_DIM})")
            end += size
        validate_settings(settings)
        codecs.validate_spec(_wire_spec(settings, 1), end)
        self.tensors, self.settings = tuple(tensors), settings
        self.step = 0
        self.momentum = np.zeros(end, dtype=np.float32)  # u
        self.velocity = np.zeros(end, dtype=np.float32)  # v
        self._m = np.float32(settings.momentum)
        self._compressed = np.zeros(end, dtype=bool)
        for offset, size, ndim in self.tensors:
            self._compressed[offset:offset + size] = self._is_compressed(ndim)

    def _is_compressed(self, ndim):
        return ndim > 1 or bool(self.settings.compress_1d)

    @classmethod
    def from_layout(cls, layout, settings=DgcSettings()):
        """For a tally.ModelLayout (ndim = the length of each shape)."""
        return cls([(t.offset, t.size, len(t.shape)) for t in layout.tensors], settings)

    @property
    def dim(self):
        return self.momentum.size

    def ratio(self):
        """The ratio the next compress() uses."""
        return compress_ratio(self.settings, self.step)

    def copy(self):
        other = DgcCompressor.__new__(DgcCompressor)
        other.__dict__.update(self.__dict__)
        other.momentum, other.velocity = self.momentum.copy(), self.velocity.copy()
        return other

    def reset(self):
        """u = v = 0 and step = 0 (a client starting over from a new model)."""
        self.momentum = np.zeros_like(self.momentum)
        self.velocity = np.zeros_like(self.velocity)
        self.step = 0

    def compress(self, g):
        """(payload, spec) of update g (dim floats): the topk payload and the
        codec spec of the update header; then advances u, v and the step.
        CodecError (nothing changed) for a wrong size, a non-finite g, u or v
        overflowing float32, or (half_values) a value beyond float16."""
        g = np.ascontiguousarray(np.asarray(g, dtype=np.float32).reshape(-1))
        if g.size != self.dim:
            raise CodecError(f"DGC: the update has {g.size} entries, the model {self.dim}")
        finite = np.isfinite(g)
        if not finite.all():
            j = int(np.argmin(finite))
            raise CodecError(f"DGC: g[{j}] = {g[j]}: the update must be finite")
        scale = clip_scale(g, float(self.settings.clip_norm))
        if scale != np.float32(1.0):
            g = g * scale
        u, v = self._next_state(g)
        indices, values, selected = self._select(g, v, self.ratio())
        spec = _wire_spec(self.settings, indices.size)
        payload = codecs.encode_sparse(spec, indices, values, self.dim)
        self._commit(u, v, selected)
        self.step += 1
        return payload, spec

    def _next_state(self, g):
        """u and v after g (the momentum correction), checked finite."""
        m, u, v = self._m, self.momentum, self.velocity
        with np.errstate(over="ignore", invalid="ignore"):
            if self.settings.nesterov:
                u = m * (u + g)
                v = (v + u) + g
            else:
                u = m * u + g
                v = v + u
        finite_g = np.isfinite(g)
        bad = ~finite_g | (self._compressed & ~(np.isfinite(u) & np.isfinite(v)))
        if bad.any():
            j = int(np.argmax(bad))
            if not finite_g[j]:
                raise CodecError(f"DGC: g[{j}] = {g[j]}: the update must be finite")
            raise CodecError(f"DGC: the momentum or velocity of entry {j} overflows float32 "
                             f"(g[j] = {g[j]}); reset() to start over")
        return u, v

    def _select(self, g, v, ratio):
        """Indices and values sent (every entry of the uncompressed tensors,
        the top-k of v in the others) and the selected compressed indices."""
        indices, values, selected = [], [], []
        for offset, size, ndim in self.tensors:
            if not self._is_compressed(ndim):
                indices.append(np.arange(offset, offset + size))
                values.append(g[offset:offset + size])
                continue
            want = math.ceil(float(size) * ratio)  # >= 1: ratio > 0.
            chosen = topk_indices(v[offset:offset + size], size if want >= size else want)
            chosen += offset
            indices.append(chosen)
            values.append(v[chosen])
            selected.append(chosen)
        joined = np.concatenate(indices)
        return joined, np.concatenate(values), np.concatenate(selected or [joined[:0]])

    def _commit(self, u, v, selected):
        """u, v <- their next values, 0 on the uncompressed tensors; at the
        sent entries masking and v_j <- v_j - (what the server decodes)."""
        u[~self._compressed] = 0.0
        v[~self._compressed] = 0.0
        sent = v[selected]
        if self.settings.half_values:
            sent = half_to_float(half_bits(sent))
        v[selected] -= sent
        if self.settings.momentum_masking:
            u[selected] = 0.0
        self.momentum, self.velocity = u, v
