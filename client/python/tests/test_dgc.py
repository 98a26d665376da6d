"""Deep Gradient Compression: tally.dgc == compress::DgcCompressor, run at
test time through tally-codec-vectors. For several option sets, a sequence
of updates gives the same payload bytes, momentum and velocity bit for bit
at every step, and the same refusals (non-finite input, float32 overflow,
float16 range), after which neither side has changed its state. Then
Client(dgc=...) against a real tally-server: a hand-computed model, the
state kept only for acknowledged pushes, Join's refusal of a server without
topk."""
import dataclasses

import numpy as np
import pytest

from conftest import INITIAL_VERSION, build_binary
from cpp_codecs import CppCodecs
from tally import codecs
from tally.client import Client
from tally.dgc import DgcCompressor, DgcSettings
from tally.errors import CodecError, RejectedUpdateError, TallyError, UnsupportedError
from tally.testing import ServerProcess

# (size, ndim): weight matrices and a 4-D kernel are compressed; a bias and
# a scalar go exactly.
TENSORS = [(300, 2), (30, 1), (120, 4), (1, 0), (63, 2)]
D = sum(size for size, _ in TENSORS)

SETTINGS = {
    "default": DgcSettings(),
    "reference-momentum": DgcSettings(momentum=0.9),
    "ratio-0.05": DgcSettings(momentum=0.9, compress_ratio=0.05),
    "nesterov": DgcSettings(momentum=0.9, nesterov=True, compress_ratio=0.03),
    "no-masking": DgcSettings(momentum=0.9, momentum_masking=False, compress_ratio=0.02),
    "warmup": DgcSettings(momentum=0.9, compress_ratio=0.01, warmup_steps=4),
    "warmup-ratios": DgcSettings(momentum=0.9, compress_ratio=0.01, warmup_steps=3,
                                 warmup_ratios=(0.5, 0.25, 0.0625)),
    "half-values": DgcSettings(momentum=0.9, compress_ratio=0.05, half_values=True),
    # Clipping: most rows have norm far above 3 (scaled), a few below (not).
    "clip": DgcSettings(momentum=0.9, compress_ratio=0.02, clip_norm=3.0),
    "clip-tiny-1d": DgcSettings(compress_ratio=0.05, clip_norm=1e-3, compress_1d=True),
    "1d": DgcSettings(compress_ratio=0.1, compress_1d=True),
    "1d-nesterov-half-clip": DgcSettings(momentum=0.5, nesterov=True, compress_ratio=0.004,
                                         compress_1d=True, clip_norm=20.0, half_values=True,
                                         warmup_steps=3),
    "momentum-0-zstd": DgcSettings(momentum=0.0, compress_ratio=0.1, zstd=True),
    "nesterov-half-no-masking": DgcSettings(momentum=0.37, nesterov=True, momentum_masking=False,
                                            half_values=True, compress_ratio=0.3),
}


def tensors():
    out, offset = [], 0
    for size, ndim in TENSORS:
        out.append((offset, size, ndim))
        offset += size
    return out


def updates():
    """Ties first (zeros: every |v| equal; then a coarse grid), Gaussian
    updates at several scales, negative zeros."""
    g = np.random.default_rng(11)
    rows = [np.zeros(D), np.round(g.uniform(-2, 2, D) * 2) / 2]
    rows += [g.standard_normal(D) * scale for scale in (1.0, 0.01, 5.0, 1e-3, 0.3)]
    rows.append(-np.zeros(D))
    rows += [g.standard_normal(D) * g.uniform(0.01, 3) for _ in range(4)]
    return np.array(rows, dtype=np.float32)


def refusing_updates():
    """A sequence with steps both sides must refuse (k = 2, 1, 1 per
    compressed tensor at ratio 0.004)."""
    g = np.random.default_rng(12)
    rows = g.standard_normal((8, D)).astype(np.float32)
    rows[1, 5] = np.nan  # Non-finite update.
    rows[3, 310] = np.inf  # ... in the bias too.
    rows[4, :3] = 3e38  # 0 and 1 sent; v_2 = 3e38 stays,
    rows[5, 2] = 3e38  # and now overflows float32, as does any later
    return rows  # step: u_2 = v_2 = 3e38 stay (reset() starts over).


def half_refusing_updates():
    g = np.random.default_rng(13)
    rows = g.standard_normal((4, D)).astype(np.float32)
    rows[1, 305] = 1e5  # A bias entry beyond float16.
    rows[2, 7] = 7e4  # The largest weight entry, selected, beyond float16.
    return rows


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def test_dgc_sequences_match_the_cpp_compressor(tmp_path):
    cpp = CppCodecs(tmp_path)
    cases = [(name, settings, updates(), cpp.dgc(settings, TENSORS, updates()))
             for name, settings in SETTINGS.items()]
    for name, settings, rows in [
            ("refusals", DgcSettings(momentum=0.9, compress_ratio=0.004), refusing_updates()),
            ("half-refusals", DgcSettings(momentum=0.9, compress_ratio=0.004, half_values=True),
             half_refusing_updates())]:
        cases.append((name, settings, rows, cpp.dgc(settings, TENSORS, rows)))
    cpp.run()
    refused = []
    for name, settings, rows, run in cases:
        assert run.error is None, (name, run.error)
        dgc = DgcCompressor(tensors(), settings)
        for t, g in enumerate(rows):
            where = f"{name} step {t}"
            if run.refusal(t) is not None:
                refused.append((name, t))
                before = dgc.copy()
                with pytest.raises(CodecError):
                    dgc.compress(g)
                assert dgc.step == before.step, where
                np.testing.assert_array_equal(bits(dgc.momentum), bits(before.momentum), where)
                np.testing.assert_array_equal(bits(dgc.velocity), bits(before.velocity), where)
            else:
                payload, spec = dgc.compress(g)
                assert payload == run.payload(t), where
                assert spec.codec == "topk" and spec.half_values == settings.half_values
                decoded = codecs.decode(spec, payload, D)
                assert np.count_nonzero(decoded) <= spec.k, where
            np.testing.assert_array_equal(bits(dgc.momentum), bits(run.momentum(t)), where)
            np.testing.assert_array_equal(bits(dgc.velocity), bits(run.velocity(t)), where)
    assert refused == [("refusals", t) for t in (1, 3, 5, 6, 7)] + \
        [("half-refusals", 1), ("half-refusals", 2)]


def test_warmup_schedule_and_selection_by_hand():
    """The reference's geometric warm-up (compress/dgc.h: base 0.001, E = 5)
    and one step worked by hand."""
    from tally.dgc import compress_ratio

    s = DgcSettings(warmup_steps=5)
    expected = [0.316228, 0.1, 0.031623, 0.01, 0.003162, 0.001, 0.001]
    np.testing.assert_allclose([compress_ratio(s, e) for e in range(7)], expected, atol=5e-7)
    # w (2x3) and b (2), ratio 0.2: k = ceil(6 * 0.2) = 2 of w, b exactly.
    dgc = DgcCompressor([(0, 6, 2), (6, 2, 1)], DgcSettings(compress_ratio=0.2))
    payload, spec = dgc.compress([1, -5, 0.5, 2, 0, 0, 0.3, -0.3])
    assert spec.k == 4 and len(payload) == 5 + 16
    np.testing.assert_array_equal(codecs.decode(spec, payload, 8),
                                  np.float32([0, -5, 0, 2, 0, 0, 0.3, -0.3]))
    np.testing.assert_array_equal(dgc.momentum, np.float32([1, 0, 0.5, 0, 0, 0, 0, 0]))
    np.testing.assert_array_equal(dgc.velocity, np.float32([1, 0, 0.5, 0, 0, 0, 0, 0]))


def test_invalid_settings_are_refused_like_cpp(tmp_path):
    bad = [DgcSettings(compress_ratio=0.0), DgcSettings(compress_ratio=1.5),
           DgcSettings(compress_ratio=float("nan")), DgcSettings(momentum=-0.1),
           DgcSettings(momentum=1.5), DgcSettings(warmup_steps=2, warmup_ratios=(0.5,)),
           DgcSettings(warmup_steps=2, warmup_ratios=(0.5, 0.0)),
           DgcSettings(zstd=True, zstd_level=99)]
    cpp = CppCodecs(tmp_path)
    runs = [cpp.dgc(settings, TENSORS, np.zeros((0, D))) for settings in bad]
    cpp.run()
    for settings, run in zip(bad, runs):
        assert run.error is not None, settings
        with pytest.raises(CodecError):
            DgcCompressor(tensors(), settings)
    with pytest.raises(CodecError, match="starts at"):
        DgcCompressor([(0, 3, 2), (4, 1, 1)])
    with pytest.raises(TallyError, match="dgc"):
        Client("127.0.0.1:1", "c", dgc=DgcSettings(compress_ratio=0))


MODEL = 'model { tensors { name: "w" shape: 2 shape: 3 } tensors { name: "b" shape: 2 } } ' \
        "rounds { clients_per_round: 1 }"


def push(client, delta, **options):
    task = client.get_task(wait=10)
    assert task.kind == "train", task
    return client.push_update(delta=np.float32(delta), round=task.round,
                              base_version=options.pop("base_version", task.model_version),
                              **options)


def test_client_dgc_against_a_server_by_hand():
    """The numbers of the C++ SDK's SdkDgcSendsMomentumCorrectedTopK:
    k = ceil(6 * 0.2) = 2 entries of w, b exactly. Step 1 sends w_1 = -5,
    w_3 = 2 and b; u = v = (1, 0, 0.5, 0, 0, 0) remain. Step 2 (g = 0): u =
    0.9 u, v = v + u = (1.9, 0, 0.95, 0, 0, 0): sends w_0, w_2. Server: SGD
    with lr 1 over one client, model = the sum of what was sent."""
    config = MODEL + ' compression { upload { codec: "topk" } }'
    with ServerProcess(build_binary("tally-server"), config) as server:
        client = Client(server.target, "dgc", dgc=DgcSettings(momentum=0.9, compress_ratio=0.2),
                        seed=1)
        assert client.join().upload_codec.codec == "topk"
        first = push(client, [1, -5, 0.5, 2, 0, 0, 0.3, -0.3])
        assert first.payload_bytes == 5 + 16  # Count 4, gaps 1, 1, 2, 0; four floats.
        client.wait_for_version(INITIAL_VERSION, timeout=10)
        np.testing.assert_allclose(client.pull_model().params,
                                   [0, -5, 0, 2, 0, 0, 0.3, -0.3], atol=1e-6)
        # A refused push leaves the DGC state as the acknowledged one left it.
        with pytest.raises(RejectedUpdateError):
            push(client, [100] * 8, base_version=999)
        push(client, [0] * 8)
        client.wait_for_version(INITIAL_VERSION + 1, timeout=10)
        np.testing.assert_allclose(client.pull_model().params,
                                   [1.9, -5, 0.95, 2, 0, 0, 0.3, -0.3], atol=1e-6)
        client.close()
    with ServerProcess(build_binary("tally-server"), MODEL) as plain:
        refused = Client(plain.target, "dgc", dgc=DgcSettings())
        with pytest.raises(UnsupportedError, match="compression.upload must list topk"):
            refused.join()
        refused.close()


def test_compress_1d_and_clipping_by_hand():
    """The hand computations of the C++ DgcTest.Compress1dSparsifiesBiases-
    AndScalars and DgcTest.ClipsTheWholeUpdateBeforeAccumulation
    (tests/compress_feedback_test.cc, where each step is worked out)."""
    from tally.dgc import clip_scale

    layout = [(0, 4, 2), (4, 2, 1), (6, 1, 0)]
    dgc = DgcCompressor(layout, DgcSettings(momentum=0.5, compress_ratio=0.5, compress_1d=True))
    g1 = [1, -2, 0.5, 0.25, 0.75, -1, 0.125]
    payload, spec = dgc.compress(g1)
    assert spec.k == 4
    assert payload == bytes([4, 0, 0, 3, 0]) + np.float32([1, -2, -1, 0.125]).tobytes()
    np.testing.assert_array_equal(dgc.momentum, np.float32([0, 0, 0.5, 0.25, 0.75, 0, 0]))
    np.testing.assert_array_equal(dgc.velocity, np.float32([0, 0, 0.5, 0.25, 0.75, 0, 0]))
    payload, _ = dgc.compress([0, 0, 0, 0, 0, 0.5, 0])
    assert payload == bytes([4, 2, 0, 0, 1]) + np.float32([0.75, 0.375, 1.125, 0]).tobytes()
    np.testing.assert_array_equal(dgc.momentum, np.float32([0, 0, 0, 0, 0, 0.5, 0]))
    np.testing.assert_array_equal(dgc.velocity, np.float32([0, 0, 0, 0, 0, 0.5, 0]))
    exact = DgcCompressor(layout, DgcSettings(momentum=0.5, compress_ratio=0.5))
    payload, _ = exact.compress(g1)
    assert payload == bytes([5, 0, 0, 2, 0, 0]) + np.float32([1, -2, 0.75, -1, 0.125]).tobytes()

    assert clip_scale(np.float32([3, 0, 0, 4, 0, 0]), 2.5) == np.float32(0.5)
    assert clip_scale(np.float32([3, 0, 0, 4, 0, 0]), 5.0) == np.float32(1.0)
    assert clip_scale(np.float32([3, 0, 0, 4, 0, 0]), 0.0) == np.float32(1.0)
    dgc = DgcCompressor([(0, 4, 2), (4, 2, 1)], DgcSettings(compress_ratio=0.25, clip_norm=2.5))
    payload, _ = dgc.compress([3, 0, 0, 4, 0, 0])
    assert payload == bytes([3, 3, 0, 0]) + np.float32([2, 0, 0]).tobytes()
    np.testing.assert_array_equal(dgc.velocity, np.float32([1.5, 0, 0, 0, 0, 0]))
    payload, _ = dgc.compress([0, 0, 1, 0, 0.5, -0.5])
    assert payload == bytes([3, 0, 3, 0]) + np.float32([1.5, 0.5, -0.5]).tobytes()
    np.testing.assert_array_equal(dgc.velocity, np.float32([0, 0, 1, 0, 0, 0]))
    payload, _ = dgc.compress([0, 0, 0, 0, 0, 10])
    assert payload == bytes([3, 2, 1, 0]) + np.float32([1, 0, 2.5]).tobytes()
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(CodecError, match="clip_norm"):
            DgcCompressor(layout, DgcSettings(clip_norm=bad))


# The example's model (examples/pytorch_digits.py, d = 2410). DGC at ratio
# 1.0: n = 2410 (2-byte varint), 2410 gaps of 0 (1 byte each), 2410 float32
# = 12052 bytes. The server's default limit is topk's worst case, 14574
# (tests/config_test.cc DefaultUpdateLimitAdmitsEveryCodecsWorstCase has the
# hand computation).
DIGITS = ('model { tensors { name: "w1" shape: 32 shape: 64 } tensors { name: "b1" shape: 32 } '
          'tensors { name: "w2" shape: 10 shape: 32 } tensors { name: "b2" shape: 10 } } '
          'rounds { clients_per_round: 1 } compression { upload { codec: "topk" } }')


def test_default_update_limit_admits_dgc_at_ratio_one():
    with ServerProcess(build_binary("tally-server"), DIGITS) as server:
        client = Client(server.target, "dgc", dgc=DgcSettings(compress_ratio=1.0), seed=1)
        assert client.join().max_update_bytes == 14574
        pushed = push(client, np.full(2410, 0.5))
        assert pushed.payload_bytes == 12052
        client.wait_for_version(INITIAL_VERSION, timeout=10)
        client.close()


def test_oversized_update_fails_at_once_with_a_named_error():
    """limits.max_update_bytes = 9640 (a dense update): the SDK raises
    UpdateTooLargeError before sending; with the SDK's check bypassed the
    server refuses it (RESOURCE_EXHAUSTED without a retry hint), which is
    the same error after one attempt, not a retry loop."""
    from tally.errors import ResourceExhaustedError, UpdateTooLargeError

    config = DIGITS + " limits { max_update_bytes: 9640 }"
    with ServerProcess(build_binary("tally-server"), config) as server:
        client = Client(server.target, "dgc", dgc=DgcSettings(compress_ratio=1.0), seed=1,
                        max_attempts=6)
        client.join()
        with pytest.raises(UpdateTooLargeError, match="max_update_bytes = 9640") as err:
            push(client, np.full(2410, 0.5))
        assert (err.value.payload_bytes, err.value.max_update_bytes) == (12052, 9640)
        assert isinstance(err.value, RejectedUpdateError)
        assert isinstance(err.value, ResourceExhaustedError)
        assert client.server_status().updates_rejected == 0  # Never sent.
        # Bypass the SDK's check: the server's refusal, after one attempt.
        session = client._session
        client._session = dataclasses.replace(
            session, join=dataclasses.replace(session.join, max_update_bytes=0))
        with pytest.raises(UpdateTooLargeError, match="limits.max_update_bytes = 9640") as err:
            push(client, np.full(2410, 0.5))
        assert err.value.retry_after is None
        assert client.server_status().updates_rejected == 1
        client.close()
