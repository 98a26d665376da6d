"""Model files from the Python SDK (tally/model_file.py, docs/models.md):
write_model_file output read by numpy and by a parser written from the
safetensors description, read_model_file on hand-built bytes, refusals,
and real tally-server processes started from a file the SDK wrote."""
import json
import struct

import numpy as np
import pytest

import tally
from conftest import build_binary
from tally.errors import ProtocolError
from tally.testing import ServerProcess


def state_dict():
    """A BatchNorm-style state_dict of numpy arrays, in its order."""
    return {
        "conv.weight": np.array([[1.0, -0.5], [2.0, 0.125]], dtype=np.float16),
        "bn.running_var": np.array([0.5, 4.0], dtype=np.float64),
        "bn.num_batches_tracked": np.array(300, dtype=np.int64),
        "fc.bias": np.array([-1.0, 8.0, 1e-3], dtype=np.float32),
    }


def flat(tensors):
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in tensors.values()])


def spec_read(path):
    """safetensors by its description: u64 length, JSON header, data."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__")
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32"
        out[name] = np.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]],
                                  "<f4").reshape(e["shape"])
    return out, metadata


def test_written_files_read_back_with_numpy_and_the_spec(tmp_path):
    sd = state_dict()
    layout = tally.write_model_file(tmp_path / "m.npz", sd)
    assert [t.name for t in layout.tensors] == list(sd) and layout.num_params == 10
    with np.load(tmp_path / "m.npz") as f:
        assert f.files == list(sd)
        for name, value in sd.items():
            assert f[name].dtype == np.float32 and f[name].shape == value.shape
            np.testing.assert_array_equal(f[name], value.astype(np.float32))
    tally.write_model_file(tmp_path / "m.safetensors", sd, metadata={"step": 7})
    tensors, metadata = spec_read(tmp_path / "m.safetensors")
    assert list(tensors) == list(sd) and metadata == {"format": "pt", "step": "7"}
    np.testing.assert_array_equal(flat(tensors), flat(sd))
    for path in ("m.npz", "m.safetensors"):
        back = tally.read_model_file(tmp_path / path)
        assert list(back) == list(sd)
        np.testing.assert_array_equal(flat(back), flat(sd))
        assert not (tmp_path / (path + ".tmp")).exists()


def test_read_model_file_converts_bfloat16_and_half(tmp_path):
    # BF16 0x4049 = 3.140625, 0xBF80 = -1; F16 0x3C00 = 1, 0x7BFF = 65504.
    header = json.dumps({"h": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]},
                         "b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    data = struct.pack("<HH", 0x4049, 0xBF80) + struct.pack("<HH", 0x3C00, 0x7BFF)
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    back = tally.read_model_file(tmp_path / "x.safetensors")
    assert list(back) == ["b", "h"]  # The data's order, not the header's.
    np.testing.assert_array_equal(back["b"], [3.140625, -1.0])
    np.testing.assert_array_equal(back["h"], [1.0, 65504.0])


def test_write_model_file_refuses_what_the_server_would(tmp_path):
    cases = [
        ({"w": np.array([1.0, np.nan], np.float32)}, ValueError, "finite"),
        ({"w": np.array([1e300])}, ValueError, "finite"),
        ({"n": np.array(1 << 25)}, ValueError, "2^24"),
        ({"c": np.array([1j])}, ValueError, "unsupported dtype"),
        ({"a:b": np.zeros(2, np.float32)}, ProtocolError, "a:b"),
        ({"z": np.zeros((2, 0), np.float32)}, ProtocolError, "dimension < 1"),
    ]
    for tensors, error, text in cases:
        with pytest.raises(error, match=text.replace("^", r"\^")):
            tally.write_model_file(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(ValueError, match="extension"):
        tally.write_model_file(tmp_path / "bad.pt", {"w": np.zeros(2)})
    assert not list(tmp_path.iterdir())  # Nothing left behind.


@pytest.mark.parametrize("ext", ["safetensors", "npz"])
def test_a_server_starts_from_the_file_the_sdk_wrote(tmp_path, ext):
    sd = state_dict()
    path = tmp_path / f"init.{ext}"
    tally.write_model_file(path, sd)
    with ServerProcess(build_binary("tally-server"), f'model {{ init {{ file: "{path}" }} }}') as s:
        client = tally.Client(s.target, "from-file", seed=1)
        joined = client.join()
        assert [t.name for t in joined.layout.tensors] == list(sd)
        assert joined.layout.tensors[0].shape == (2, 2) and joined.layout.tensors[2].shape == ()
        model = client.pull_model()
        np.testing.assert_array_equal(model.params, flat(sd))
        assert model.tensors()["bn.num_batches_tracked"] == 300
        client.close()
        # The SDK wrote every entry as float32 (num_batches_tracked too).
        assert f"initial model from {path}: 4 tensors, 10 parameters\n" in s.log()


def test_a_disagreeing_tensors_list_stops_the_server(tmp_path):
    path = tmp_path / "init.safetensors"
    tally.write_model_file(path, state_dict())
    config = (f'model {{ init {{ file: "{path}" }} '
              'tensors { name: "conv.weight" shape: 2 shape: 3 } }')
    with pytest.raises(RuntimeError) as refused:
        ServerProcess(build_binary("tally-server"), config)
    assert (f"model.tensors[0]: the config lists 'conv.weight' [2, 3], model.init.file '{path}' "
            "has 'conv.weight' [2, 2] there") in str(refused.value)


def test_a_torch_state_dict_round_trips_through_a_server(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    net.train()
    net(torch.randn(4, 3))  # num_batches_tracked = 1, running stats move.
    sd = net.state_dict()
    path = tmp_path / "net.safetensors"
    tally.write_model_file(path, sd)
    with ServerProcess(build_binary("tally-server"), f'model {{ init {{ file: "{path}" }} }}') as s:
        client = tally.Client(s.target, "torch", seed=1)
        client.join()
        pulled = client.pull_model().state_dict(like=sd)
        client.close()
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    fresh.load_state_dict(pulled)  # strict: every entry, num_batches_tracked included.
    for name, value in sd.items():
        assert torch.equal(fresh.state_dict()[name], value), name
    back = tally.read_model_file(path)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()})
    assert fresh.state_dict()["1.num_batches_tracked"].item() == 1
