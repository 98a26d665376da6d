"""Model files as tally-server reads and writes them (docs/models.md):
safetensors and NumPy .npz, float32, from a dict of numpy arrays or a
PyTorch state_dict. No safetensors package is needed; torch is optional.

    tally.write_model_file("init.safetensors", model.state_dict())
    # tally-server config: model { init { file: "init.safetensors" } }
    ...
    # after `tally export --checkpoint_dir=ckpt --out=final.safetensors`:
    state = tally.read_model_file("final.safetensors")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
"""
import json
import os
import struct

import numpy as np

from tally.layout import ModelLayout

_MAX_EXACT_INTEGER = 1 << 24
_SAFETENSORS_DTYPES = {
    "F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
    "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?",
}


def _as_float32(name, value):
    """A numpy float32 array of `value` (numpy array, torch tensor, number),
    converted as tally-server converts a file's entries."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().to("cpu")
        value = value.float() if value.is_floating_point() else value
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        if array.size and np.abs(array.astype(np.float64)).max() > _MAX_EXACT_INTEGER:
            raise ValueError(f"tensor '{name}': an integer beyond +-2^24 is not exact as float32 "
                             "(drop the entry or rescale it)")
    elif array.dtype.kind != "f":
        raise ValueError(f"tensor '{name}': unsupported dtype {array.dtype} (float, integer or "
                         "bool)")
    with np.errstate(over="ignore"):  # A copy: writable, C order, 0-D kept.
        out = np.array(array, dtype="<f4", order="C")
    if not np.isfinite(out).all():
        raise ValueError(f"tensor '{name}': NaN, infinity or a value beyond float32's range "
                         "(a model must be finite)")
    return out


def write_model_file(path, tensors, metadata=None):
    """Writes `tensors` (a dict name -> numpy array / torch tensor / number,
    e.g. a state_dict, in its order) to `path` as float32: safetensors if the
    path ends with .safetensors, else an .npz (np.savez, stored) if it ends
    with .npz. Integer and bool entries (num_batches_tracked) become exact
    float32 values, as the server keeps them. `metadata` (str -> str) goes
    into the safetensors header after "format": "pt". The file is written
    under a temporary name and renamed into place. Returns the ModelLayout.
    Raises ValueError for a bad extension, dtype or value, ProtocolError for
    names or shapes tally cannot carry (ModelLayout's rules)."""
    path = os.fspath(path)
    lower = path.lower()
    if not lower.endswith((".safetensors", ".npz")):
        raise ValueError(f"{path}: unknown model file extension (want .safetensors or .npz)")
    arrays = {str(name): _as_float32(name, value) for name, value in tensors.items()}
    layout = ModelLayout([(name, a.shape) for name, a in arrays.items()])
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        if lower.endswith(".npz"):
            np.savez(f, **arrays)
        else:
            _write_safetensors(f, arrays, metadata or {})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return layout


def _write_safetensors(f, arrays, metadata):
    header = {"__metadata__": {"format": "pt", **{str(k): str(v) for k, v in metadata.items()
                                                   if k != "format"}}}
    offset = 0
    for name, a in arrays.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # The data starts 8-aligned.
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for a in arrays.values():
        f.write(a.tobytes())


def read_model_file(path):
    """The tensors of a .safetensors or .npz file as a dict name -> float32
    numpy array, in the file's order (safetensors: the order of the data;
    npz: the members'), converted as tally-server converts them (bfloat16
    included). For files tally wrote (tally export) or trusted ones: unlike
    the server's reader, it does not check every offset."""
    path = os.fspath(path)
    if path.lower().endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            return {name: _as_float32(name, f[name]) for name in f.files}
    if not path.lower().endswith(".safetensors"):
        raise ValueError(f"{path}: unknown model file extension (want .safetensors or .npz)")
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = entry["data_offsets"]
        if entry["dtype"] == "BF16":  # The upper half of a float32.
            bits = np.frombuffer(data[begin:end], "<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif entry["dtype"] in _SAFETENSORS_DTYPES:
            array = np.frombuffer(data[begin:end], _SAFETENSORS_DTYPES[entry["dtype"]])
        else:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype '{entry['dtype']}'")
        out[name] = _as_float32(name, array.reshape(entry["shape"]))
    return out
