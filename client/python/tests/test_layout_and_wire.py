"""State_dict flatten / unflatten round trips, the layout hash (the C++
ModelLayout's), and the checks on what the server streams (PullModel
segments, deltas, lengths, hashes) without a server."""
import grpc
import numpy as np
import pytest

from tally import _retry, _wire, codecs
from tally.errors import CodecError, LayoutMismatchError, LengthMismatchError, ProtocolError
from tally.layout import ModelLayout, fnv1a64
from tally.v1 import tally_pb2 as pb


def test_layout_hash_is_fnv1a_of_the_canonical_string():
    layout = ModelLayout([("dense/kernel", (32, 10)), ("dense/bias", (10,)), ("s", ())])
    assert layout.canonical_string() == "dense/kernel:f32:32,10;dense/bias:f32:10;s:f32:;"
    assert fnv1a64(b"") == 0xCBF29CE484222325 and fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert layout.num_params == 331 and [t.offset for t in layout.tensors] == [0, 320, 330]
    with pytest.raises(ProtocolError):
        ModelLayout([("a:b", (1,))])


def test_state_dict_round_trip():
    import torch
    net = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    state = net.state_dict()
    layout = ModelLayout.from_state_dict(state)
    flat = layout.flatten(state)
    assert flat.dtype == np.float32 and flat.size == 5 * 3 + 3 + 3 * 2 + 2
    back = layout.unflatten(flat, like=state)
    assert list(back) == list(state)
    for name in state:
        assert back[name].dtype == state[name].dtype and torch.equal(back[name], state[name])
    net.load_state_dict(back)
    arrays = layout.unflatten(flat)
    np.testing.assert_array_equal(arrays["0.weight"], state["0.weight"].numpy())
    with pytest.raises(LayoutMismatchError):
        layout.flatten({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(LayoutMismatchError):
        layout.flatten({**state, "0.bias": torch.zeros(4)})
    with pytest.raises(LengthMismatchError):
        layout.unflatten(flat[:-1])


LAYOUT = ModelLayout([("w", (2, 3)), ("b", (2,))])


def header(version=1, codec=1, payload_bytes=32, base_version=0, delta_base=False, params=None,
           layout_hash=None, num_params=8, chain_id=0):
    spec = pb.ModelSpec(num_params=num_params, layout_hash=LAYOUT.layout_hash
                        if layout_hash is None else layout_hash)
    for t in LAYOUT.tensors:
        spec.tensors.add(name=t.name, shape=t.shape, dtype=pb.DTYPE_FLOAT32)
    h = pb.ModelHeader(version=version, model_spec=spec, codec=codec, payload_bytes=payload_bytes,
                       round=version, base_version=base_version, delta_base=delta_base,
                       chain_id=chain_id)
    if params is not None:
        h.codec_params.CopyFrom(params)
    return pb.ModelChunk(header=h)


def data(payload, offset=0):
    return pb.ModelChunk(data=payload, offset=offset)


def assemble(chunks, precision="float32", held=None):
    a = _wire.ModelAssembler(LAYOUT, precision, held)
    for c in chunks:
        a.add(c)
    return a, a.complete()


def test_full_float32_model_in_chunks():
    x = np.arange(8, dtype=np.float32)
    a, params = assemble([header(), data(x[:3].tobytes()), data(x[3:].tobytes(), 12)])
    np.testing.assert_array_equal(params, x)
    assert a.version == 1 and not a.delta_base and a.segments == 1


@pytest.mark.parametrize("chunks, error", [
    ([header(layout_hash=123)], LayoutMismatchError),
    ([header(num_params=9)], LengthMismatchError),
    ([header(payload_bytes=28)], LengthMismatchError),
    ([header(), data(b"\0" * 16, 4)], ProtocolError),
    ([header(), data(b"\0" * 36)], LengthMismatchError),
    ([header(), data(b"\0" * 16)], LengthMismatchError),  # Ended early.
    ([data(b"\0" * 32)], ProtocolError),
    ([], ProtocolError),
    ([header(), data(np.full(8, np.inf, np.float32).tobytes())], CodecError),
    ([header(codec=2, payload_bytes=16), data(b"\x00\x7c" * 8)], CodecError),
    ([header(codec=4, payload_bytes=1000)], LengthMismatchError),
    ([header(version=2, base_version=1), data(b"\0" * 32)], ProtocolError),  # Holds nothing.
])
def test_bad_streams_raise_named_errors(chunks, error):
    with pytest.raises(error):
        assemble(chunks)


def test_compressed_full_model_then_deltas():
    """float16 full model, then two topk deltas, each sum rounded to
    float16 (P); the result is what the rule computes by hand."""
    g = np.random.default_rng(1)
    full = g.standard_normal(8).astype(np.float32)
    f16 = codecs.CodecSpec.default("float16")
    topk = codecs.CodecSpec.default("topk").replace(k=3)
    d1 = g.standard_normal(8).astype(np.float32)
    d2 = g.standard_normal(8).astype(np.float32)
    p0, p1, p2 = codecs.encode(f16, full), codecs.encode(topk, d1), codecs.encode(topk, d2)
    topk_params = pb.CodecParams(k=3)
    a, params = assemble([
        header(version=1, codec=2, payload_bytes=len(p0)), data(p0),
        header(version=2, codec=7, payload_bytes=len(p1), base_version=1, params=topk_params),
        data(p1),
        header(version=3, codec=7, payload_bytes=len(p2), base_version=2, delta_base=True,
               params=topk_params), data(p2)], precision="float16")
    m = codecs.decode(f16, p0, 8)
    for p in (p1, p2):
        m = (m + codecs.decode(topk, p, 8)).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(params, m)
    assert a.version == 3 and a.delta_base and a.segments == 3 and a.delta_segments == 2
    # A delta from a held model (have_version).
    held = _wire.HeldModel(3, params, chain_id=5)
    a, after = assemble([header(version=4, codec=7, payload_bytes=len(p1), base_version=3,
                                params=topk_params, chain_id=5), data(p1)], "float16", held)
    np.testing.assert_array_equal(
        after, (params + codecs.decode(topk, p1, 8)).astype(np.float16).astype(np.float32))
    with pytest.raises(ProtocolError, match="chain"):  # Computed against another chain.
        assemble([header(version=4, codec=7, payload_bytes=len(p1), base_version=3,
                         params=topk_params, chain_id=6), data(p1)], "float16", held)


class FakeRpcError(grpc.RpcError):
    def __init__(self, trailers):
        self._trailers = trailers

    def trailing_metadata(self):
        return self._trailers


def test_retry_hint_and_backoff():
    info = pb.RetryInfo()
    info.retry_delay.seconds, info.retry_delay.nanos = 1, 500000000
    status = pb.RpcStatus(code=8, message="overloaded")
    status.details.add(type_url=_retry.RETRY_INFO_TYPE_URL, value=info.SerializeToString())
    error = FakeRpcError((("grpc-status-details-bin", status.SerializeToString()),))
    assert _retry.retry_after(error) == pytest.approx(1.5)
    assert _retry.retry_after(FakeRpcError(())) is None
    backoff = _retry.Backoff(0.1, 1.0, 2.0, seed=1)
    assert backoff.delay(grpc.StatusCode.RESOURCE_EXHAUSTED, 1.5, 1) == 1.5
    assert backoff.delay(grpc.StatusCode.INVALID_ARGUMENT, None, 1) is None
    assert all(0 <= backoff.delay(grpc.StatusCode.UNAVAILABLE, None, n) <= min(0.1 * 2**(n - 1), 1)
               for n in range(1, 10))
    assert _retry.backoff_ceiling(0.1, 5.0, 2.0, 10**6) == 5.0
