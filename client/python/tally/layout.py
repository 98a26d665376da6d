"""Model layouts (core/model_layout.h): an ordered list of named float32
tensors flattened row-major, tensor after tensor, into one vector; its hash
is FNV-1a 64 over "<name>:f32:<d0>,<d1>,...;" per tensor. Helpers to flatten
a PyTorch state_dict (or a dict of numpy arrays) into that vector and back.
"""
import dataclasses

import numpy as np

from tally.errors import LayoutMismatchError, LengthMismatchError, ProtocolError

_MAX_PARAMS = 1 << 34


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:  # Layout strings are short (one line per tensor).
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple
    offset: int  # First entry within the flat vector.
    size: int


class ModelLayout:
    """The tensors of a model, with offsets, num_params and the layout hash."""

    def __init__(self, tensors):
        """tensors: (name, shape) pairs in order. Raises ProtocolError for an
        invalid layout (the server's rules: names 1..256 chars without ';',
        ':' or ',', unique; every dimension >= 1; < 2^34 entries)."""
        infos, names, offset = [], set(), 0
        for name, shape in tensors:
            shape = tuple(int(s) for s in shape)
            if not name or len(name) > 256 or any(c in name for c in ";:,") or name in names:
                raise ProtocolError(f"invalid or duplicate tensor name '{name}'")
            if any(s < 1 for s in shape):
                raise ProtocolError(f"tensor '{name}' has a dimension < 1: {shape}")
            size = int(np.prod(shape, dtype=np.int64)) if shape else 1
            names.add(name)
            infos.append(TensorInfo(name, shape, offset, size))
            offset += size
            if offset > _MAX_PARAMS:
                raise ProtocolError("model: more than 2^34 parameters")
        if not infos:
            raise ProtocolError("model: at least one tensor is required")
        self.tensors = tuple(infos)
        self.num_params = offset
        self.layout_hash = fnv1a64(self.canonical_string().encode())

    @classmethod
    def from_proto(cls, spec):
        """From a tally.v1.ModelSpec, checking its num_params and hash."""
        for t in spec.tensors:
            if t.dtype not in (0, 1):  # DTYPE_UNSPECIFIED, DTYPE_FLOAT32.
                from tally.errors import UnsupportedError
                raise UnsupportedError(f"model_spec: tensor '{t.name}' has dtype {t.dtype}; "
                                       "this SDK supports float32 only")
        layout = cls([(t.name, tuple(t.shape)) for t in spec.tensors])
        if layout.num_params != spec.num_params:
            raise LengthMismatchError(f"model_spec.num_params mismatch: server says "
                                      f"{spec.num_params}, tensor shapes give {layout.num_params}")
        if layout.layout_hash != spec.layout_hash:
            raise LayoutMismatchError(f"model_spec.layout_hash mismatch: server says "
                                      f"{spec.layout_hash:#018x}, layout gives "
                                      f"{layout.layout_hash:#018x}")
        return layout

    @classmethod
    def from_state_dict(cls, state_dict):
        """The layout of a state_dict (or dict of arrays), in its order."""
        return cls([(name, tuple(value.shape)) for name, value in state_dict.items()])

    def canonical_string(self):
        return "".join(f"{t.name}:f32:{','.join(str(s) for s in t.shape)};"
                       for t in self.tensors)

    def tensor_config(self):
        """The text-proto `model { tensors {...} }` entries of a ServerConfig."""
        return " ".join(f'tensors {{ name: "{t.name}" '
                        + " ".join(f"shape: {s}" for s in t.shape) + " }" for t in self.tensors)

    def __eq__(self, other):
        return isinstance(other, ModelLayout) and self.tensors == other.tensors

    def __repr__(self):
        return f"ModelLayout({[(t.name, t.shape) for t in self.tensors]})"

    # --- flatten / unflatten ------------------------------------------------

    def _check_names(self, state_dict):
        names = [t.name for t in self.tensors]
        missing = [n for n in names if n not in state_dict]
        extra = [n for n in state_dict if n not in set(names)]
        if missing or extra:
            raise LayoutMismatchError(f"state_dict does not match the model spec: missing "
                                      f"{missing}, unexpected {extra}")

    def flatten(self, state_dict):
        """One float32 vector of num_params from a dict name -> tensor / array
        (PyTorch tensors are detached and moved to the CPU). Names must be
        exactly the layout's and shapes equal (LayoutMismatchError)."""
        self._check_names(state_dict)
        flat = np.empty(self.num_params, dtype=np.float32)
        for t in self.tensors:
            value = _to_numpy(state_dict[t.name])
            if tuple(value.shape) != t.shape:
                raise LayoutMismatchError(f"tensor '{t.name}' has shape {tuple(value.shape)}, "
                                          f"the model spec says {t.shape}")
            flat[t.offset:t.offset + t.size] = value.reshape(-1)
        return flat

    def unflatten(self, flat, like=None):
        """A dict name -> array (views of `flat`, shaped by the spec). With
        `like` (a PyTorch state_dict), torch tensors of its dtypes / devices."""
        flat = np.asarray(flat, dtype=np.float32).reshape(-1)
        if flat.size != self.num_params:
            raise LengthMismatchError(f"{flat.size} values, the model has {self.num_params}")
        out = {t.name: flat[t.offset:t.offset + t.size].reshape(t.shape) for t in self.tensors}
        if like is None:
            return out
        self._check_names(like)
        import torch

        return {name: torch.from_numpy(np.array(out[name])).to(dtype=like[name].dtype,
                                                                 device=like[name].device)
                for name in out}


def _to_numpy(value):
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().to("cpu").float().numpy()
    return np.asarray(value, dtype=np.float32)
