"""Python codecs == C++ codecs (compress/), checked against the C++ code run
at test time through tally-codec-vectors: Python encode gives the C++ bytes,
Python decode of C++ payloads gives the C++ floats bit for bit (and C++
decode of Python payloads the Python floats), error-feedback sequences give
the same payloads and residuals, and payloads the C++ decoders refuse raise
CodecError in Python (hand-made malformed cases and random mutations)."""
import numpy as np
import pytest

from cpp_codecs import CppCodecs
from tally import codecs
from tally.errors import CodecError

D = codecs.CodecSpec.default


def specs():
    """(id, spec) pairs covering every codec and parameter path."""
    out = [("float32", D("float32")), ("float16", D("float16")), ("bfloat16", D("bfloat16")),
           ("int8", D("int8")), ("int8-b0", D("int8").replace(block_size=0)),
           ("int8-b7", D("int8").replace(block_size=7)),
           ("sign", D("sign")), ("sign-b3", D("sign").replace(block_size=3)),
           ("sign-b64", D("sign").replace(block_size=64)),
           ("topk", D("topk")), ("topk-k1", D("topk").replace(k=1)),
           ("topk-k17-half", D("topk").replace(k=17, half_values=True)),
           ("topk-r0.3", D("topk").replace(ratio=0.3)),
           ("randk", D("randk").replace(seed=11)),
           ("randk-r0.25-half", D("randk").replace(ratio=0.25, half_values=True, seed=3)),
           ("randk-biased", D("randk").replace(ratio=0.1, rescale=False, seed=2**64 - 1)),
           ("randk-all", D("randk").replace(ratio=1.0, seed=5)),
           ("spsa", D("spsa").replace(seed=9)), ("spsa-k5", D("spsa").replace(k=5, seed=77))]
    for levels in (1, 2, 3, 7, 15, 127, 128, 300, 32767):
        out.append((f"qsgd-s{levels}", D("qsgd").replace(levels=levels, seed=levels * 31)))
    out += [("qsgd-b0", D("qsgd").replace(block_size=0, seed=1)),
            ("qsgd-b5", D("qsgd").replace(block_size=5, seed=2))]
    for name, spec in list(out[::3]):
        out.append((name + "-zstd", spec.replace(zstd=True)))
    out += [("int8-zstd19", D("int8").replace(zstd=True, zstd_level=19)),
            ("topk-zstd-neg", D("topk").replace(zstd=True, zstd_level=-5))]
    return out


def inputs():
    """Named input vectors: random scales and sizes plus edge values."""
    g = np.random.default_rng(20240607)
    special = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0**-140, -(2.0**-149), 3e-8,
                        65504.0, -65519.0, 1e-5, 0.1, 0.1, -0.1, 7.0, 7.0, -7.0] * 3,
                       dtype=np.float32)
    # float16 / bfloat16 rounding ties: halfway between representable values.
    ties = np.array([1 + 2.0**-11, 1 + 3 * 2.0**-11, 1 + 2.0**-8, 1 + 3 * 2.0**-8,
                     2.0**-24 * 1.5, 2.0**-24 * 2.5], dtype=np.float32)
    return {
        "normal-1000": g.standard_normal(1000).astype(np.float32),
        "small-7": (g.standard_normal(7) * 1e-3).astype(np.float32),
        "one": np.array([-0.25], dtype=np.float32),
        "wide-4099": (g.standard_normal(4099) * np.exp(g.uniform(-20, 8, 4099)))
        .astype(np.float32),
        "ties-and-zeros": np.concatenate([special, ties, np.zeros(9, np.float32)]),
        "all-zero-64": np.zeros(64, dtype=np.float32),
        "int-grid": np.round(g.uniform(-4, 4, 515) * 2) / 2,
    }


def run_python(fn, *args):
    try:
        return fn(*args), None
    except CodecError as e:
        return None, str(e)


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Every spec x input through both implementations, both directions."""
    cpp = CppCodecs(tmp_path_factory.mktemp("parity"))
    cases = []
    for spec_name, spec in specs():
        for input_name, x in inputs().items():
            if spec.codec in ("topk", "randk") and spec.k > x.size:
                continue
            py_payload, py_error = run_python(codecs.encode, spec, x)
            cpp_enc, cpp_dec = cpp.encode_then_decode(spec, x, x.size)
            cpp_dec_of_py = cpp.decode(spec, x.size, py_payload) if py_payload else None
            cases.append((f"{spec_name}/{input_name}", spec, x, py_payload, py_error, cpp_enc,
                          cpp_dec, cpp_dec_of_py))
    cpp.run()
    return cases


def test_encode_gives_the_cpp_bytes(parity):
    assert len(parity) > 150
    for name, spec, x, py_payload, py_error, cpp_enc, _, _ in parity:
        assert (py_error is None) == (cpp_enc.error is None), (name, py_error, cpp_enc.error)
        if py_error is None:
            assert py_payload == cpp_enc.payload(), name


def test_encoder_refusals_agree():
    """Values a format cannot hold are refused by both (float16 overflow)."""
    x = np.array([1.0, 65520.0], dtype=np.float32)
    with pytest.raises(CodecError, match="float16"):
        codecs.encode(D("float16"), x)
    with pytest.raises(CodecError, match="finite"):
        codecs.encode(D("int8"), np.array([1.0, np.nan], dtype=np.float32))


def test_decode_of_cpp_payloads_is_bit_exact(parity):
    for name, spec, x, _, _, cpp_enc, cpp_dec, cpp_dec_of_py in parity:
        if cpp_enc.error is not None:
            continue
        assert cpp_dec.error is None, (name, cpp_dec.error)
        ours = codecs.decode(spec, cpp_enc.payload(), x.size)
        assert ours.dtype == np.float32 and ours.shape == x.shape
        np.testing.assert_array_equal(bits(ours), bits(cpp_dec.floats()), err_msg=name)
        if cpp_dec_of_py is not None:
            assert cpp_dec_of_py.error is None, (name, cpp_dec_of_py.error)
            np.testing.assert_array_equal(bits(cpp_dec_of_py.floats()), bits(ours),
                                          err_msg=name)


EF_SPECS = [D("topk").replace(k=7), D("sign").replace(block_size=50), D("int8"),
            D("qsgd").replace(levels=3, seed=4), D("randk").replace(ratio=0.2, rescale=False,
                                                                      seed=8),
            D("float16"), D("bfloat16"), D("float32"), D("spsa").replace(k=2, seed=6),
            D("topk").replace(ratio=0.05, half_values=True, zstd=True)]


def test_error_feedback_sequences_match(tmp_path):
    from tally.error_feedback import ErrorFeedback

    g = np.random.default_rng(5)
    updates = (g.standard_normal((5, 333)) * g.uniform(0.01, 3, (5, 1))).astype(np.float32)
    cpp = CppCodecs(tmp_path)
    runs = [(spec, cpp.feedback(spec, updates)) for spec in EF_SPECS]
    cpp.run()
    for spec, run in runs:
        assert run.error is None, (spec, run.error)
        ef = ErrorFeedback(updates.shape[1])
        for t, (payload, residual) in enumerate(zip(run.payloads(), run.residuals())):
            assert ef.compress(spec, updates[t]) == payload, (spec, t)
            np.testing.assert_array_equal(bits(ef.residual), bits(residual),
                                          err_msg=f"{spec} step {t}")


def _frame(inner, **options):
    import zstandard

    return zstandard.ZstdCompressor(**options).compress(inner)


def malformed():
    """(name, spec, d, payload) that the C++ decoders refuse."""
    f32 = lambda *v: np.array(v, dtype="<f4").tobytes()  # noqa: E731
    topk3 = D("topk").replace(k=3)
    ok_topk = codecs.encode(topk3, np.arange(10, dtype=np.float32))
    return [
        ("float32-truncated", D("float32"), 2, f32(1.0, 2.0)[:-1]),
        ("float32-trailing", D("float32"), 2, f32(1.0, 2.0) + b"\0"),
        ("float32-nan", D("float32"), 2, f32(1.0, np.nan)),
        ("float16-inf", D("float16"), 2, b"\x00\x3c\x00\x7c"),
        ("bfloat16-nan", D("bfloat16"), 1, b"\xc1\x7f"),
        ("int8-minus128", D("int8"), 2, f32(0.5) + b"\x01\x80"),
        ("int8-negative-scale", D("int8"), 2, f32(-0.5) + b"\x01\x02"),
        ("int8-scale-overflow", D("int8"), 2, f32(3e38) + b"\x01\x02"),
        ("qsgd-level-above-s", D("qsgd").replace(levels=1), 4, f32(1.0) + b"\x03\x00"),
        ("qsgd-sign-on-zero", D("qsgd").replace(levels=1), 4, f32(1.0) + b"\x01\x00"),
        ("qsgd-padding", D("qsgd").replace(levels=1), 3, f32(1.0) + b"\x40\x00"),
        ("qsgd-negative-norm", D("qsgd").replace(levels=1), 4, f32(-1.0) + b"\x00\x00"),
        ("sign-padding", D("sign"), 3, f32(1.0) + b"\x08"),
        ("sign-nan-scale", D("sign"), 3, f32(np.nan) + b"\x01"),
        ("topk-count-above-k", topk3, 10, b"\x04\x00\x00\x00\x00" + f32(1, 1, 1, 1)),
        ("topk-index-out-of-range", topk3, 10, b"\x01\x0a" + f32(1.0)),
        ("topk-gaps-out-of-range", topk3, 10, b"\x02\x05\x04" + f32(1.0, 2.0)),
        ("topk-overlong-varint", topk3, 10, b"\x01\x81\x00" + f32(1.0)),
        ("topk-overflowing-varint", topk3, 10, b"\x01" + b"\xff" * 10 + b"\x01" + f32(1.0)),
        ("topk-trailing", topk3, 10, ok_topk + b"\0"),
        ("topk-truncated", topk3, 10, ok_topk[:-1]),
        ("topk-nan-value", topk3, 10, b"\x01\x00" + f32(np.nan)),
        ("randk-count-mismatch", D("randk").replace(k=2, seed=1), 10, b"\x09" + f32(*[1] * 9)),
        ("randk-count-above-d", D("randk").replace(k=2, seed=1), 3, b"\x04" + f32(1, 1, 1, 1)),
        ("spsa-partial-pair", D("spsa").replace(k=2), 5, b"\0" * 13),
        ("spsa-too-many-pairs", D("spsa").replace(k=1), 5, b"\0" * 24),
        ("spsa-inf-scalar", D("spsa"), 5, b"\0" * 8 + f32(np.inf)),
        ("zstd-no-magic", D("float32").replace(zstd=True), 1, f32(1.0)),
        ("zstd-trailing", D("float32").replace(zstd=True), 1, _frame(f32(1.0)) + b"\0"),
        ("zstd-no-content-size", D("float32").replace(zstd=True), 1,
         _frame(f32(1.0), write_content_size=False)),
        ("zstd-declares-too-much", D("float32").replace(zstd=True), 1, _frame(f32(1.0, 2.0))),
        ("zstd-truncated", D("float32").replace(zstd=True), 2, _frame(f32(1.0, 2.0))[:-2]),
    ]


def test_malformed_payloads_raise_codec_error(tmp_path):
    cases = malformed()
    cpp = CppCodecs(tmp_path)
    results = [cpp.decode(spec, d, payload) for _, spec, d, payload in cases]
    cpp.run()
    for (name, spec, d, payload), result in zip(cases, results):
        assert result.error is not None, f"{name}: the C++ decoder accepted it"
        with pytest.raises(CodecError):
            codecs.decode(spec, payload, d)


def test_mutated_payloads_agree(tmp_path):
    """Random byte mutations of valid payloads: both accept with the same
    floats, or both refuse."""
    g = np.random.default_rng(99)
    cpp = CppCodecs(tmp_path)
    cases = []
    x = (g.standard_normal(40) * 2).astype(np.float32)
    for _, spec in specs():
        if spec.codec in ("topk", "randk") and spec.k > x.size:
            continue
        payload = bytearray(codecs.encode(spec, x))
        for _ in range(6):
            mutated = bytearray(payload)
            for _ in range(int(g.integers(1, 3))):
                mutated[int(g.integers(len(mutated)))] = int(g.integers(256))
            if g.random() < 0.2:
                mutated = mutated[:int(g.integers(len(mutated)))]
            cases.append((spec, bytes(mutated), cpp.decode(spec, x.size, bytes(mutated))))
    cpp.run()
    refused = 0
    for spec, payload, result in cases:
        ours, error = run_python(codecs.decode, spec, payload, x.size)
        assert (error is None) == (result.error is None), (spec, payload.hex(), error,
                                                            result.error)
        if error is None:
            np.testing.assert_array_equal(bits(ours), bits(result.floats()))
        else:
            refused += 1
    assert 0 < refused < len(cases)
