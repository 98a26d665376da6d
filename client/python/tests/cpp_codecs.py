"""Runs the C++ codecs through tally-codec-vectors (tools/codec_vectors.cc):
queue commands, run them all in one process, read the results back."""
import os
import subprocess

import numpy as np

from conftest import build_binary


def spec_text(spec):
    """The tool's SPEC for a tally.codecs.CodecSpec (every field explicit)."""
    items = [f"block_size={spec.block_size}", f"levels={spec.levels}", f"k={spec.k}",
             f"ratio={float(np.float32(spec.ratio))!r}",
             f"half_values={int(spec.half_values)}", f"biased={int(not spec.rescale)}",
             f"seed={spec.seed}", f"zstd={int(spec.zstd)}", f"zstd_level={spec.zstd_level}"]
    return f"{spec.codec}:{','.join(items)}"


class CppCodecs:
    """Collects commands; run() executes them. Each command returns a Result
    whose `.error` (the C++ refusal, or None) and outputs are valid after
    run()."""

    class Result:
        error = None

    def __init__(self, directory):
        self.dir = str(directory)
        self.lines, self.results = [], []

    def _path(self, suffix):
        return os.path.join(self.dir, f"{len(self.lines)}{suffix}")

    def _add(self, line, result):
        self.lines.append(line)
        self.results.append(result)
        return result

    def encode(self, spec, x):
        r = self.Result()
        source, r.out = self._path(".in.f32"), self._path(".out.bin")
        np.asarray(x, dtype="<f4").tofile(source)
        r.payload = lambda: open(r.out, "rb").read()
        return self._add(f"encode {spec_text(spec)} {source} {r.out}", r)

    def encode_then_decode(self, spec, x, d):
        """C++ Encode, then C++ Decode of that payload (two commands)."""
        encoded = self.encode(spec, x)
        r = self.Result()
        r.out = self._path(".dec.f32")
        r.floats = lambda: np.fromfile(r.out, dtype="<f4")
        self._add(f"decode {spec_text(spec)} {d} {encoded.out} {r.out}", r)
        return encoded, r

    def decode(self, spec, d, payload):
        r = self.Result()
        source, r.out = self._path(".in.bin"), self._path(".out.f32")
        with open(source, "wb") as f:
            f.write(payload)
        r.floats = lambda: np.fromfile(r.out, dtype="<f4")
        return self._add(f"decode {spec_text(spec)} {d} {source} {r.out}", r)

    def feedback(self, spec, updates):
        """Error feedback over the rows of `updates` (T x d)."""
        r = self.Result()
        source, prefix = self._path(".ef.f32"), self._path(".ef")
        updates = np.asarray(updates, dtype="<f4")
        updates.tofile(source)
        r.payloads = lambda: [open(f"{prefix}.{t}.bin", "rb").read()
                              for t in range(updates.shape[0])]
        r.residuals = lambda: [np.fromfile(f"{prefix}.{t}.f32", dtype="<f4")
                               for t in range(updates.shape[0])]
        return self._add(f"feedback {spec_text(spec)} {updates.shape[1]} {source} {prefix}", r)

    def dgc(self, settings, tensors, updates):
        """compress::DgcCompressor (tally.DgcSettings `settings`, tensors
        (size, ndim) in order) over the rows of `updates` (T x d). Per step
        t: .payload(t) (None if refused), .refusal(t) (the message or None),
        .momentum(t), .velocity(t) (after the step)."""
        r = self.Result()
        source, prefix = self._path(".dgc.f32"), self._path(".dgc")
        np.asarray(updates, dtype="<f4").tofile(source)
        options = ",".join([
            f"momentum={float(np.float32(settings.momentum))!r}",
            f"nesterov={int(settings.nesterov)}",
            f"momentum_masking={int(settings.momentum_masking)}",
            f"clip_norm={float(settings.clip_norm)!r}",
            f"compress_1d={int(settings.compress_1d)}",
            f"compress_ratio={float(settings.compress_ratio)!r}",
            f"warmup_steps={settings.warmup_steps}",
            f"half_values={int(settings.half_values)}", f"zstd={int(settings.zstd)}",
            f"zstd_level={settings.zstd_level}"]
            + ([f"warmup_ratios={'/'.join(repr(float(x)) for x in settings.warmup_ratios)}"]
               if settings.warmup_ratios else []))
        layout = ",".join(f"{size}:{ndim}" for size, ndim in tensors)

        def read(t, suffix):
            path = f"{prefix}.{t}{suffix}"
            if not os.path.exists(path):
                return None
            with open(path, "rb") as f:
                return f.read()

        r.payload = lambda t: read(t, ".bin")
        r.refusal = lambda t: None if read(t, ".err") is None else read(t, ".err").decode()
        r.momentum = lambda t: np.frombuffer(read(t, ".u.f32"), dtype="<f4")
        r.velocity = lambda t: np.frombuffer(read(t, ".v.f32"), dtype="<f4")
        return self._add(f"dgc {options} {layout} {source} {prefix}", r)

    def run(self):
        manifest = os.path.join(self.dir, "manifest.txt")
        with open(manifest, "w") as f:
            f.write("\n".join(self.lines) + "\n")
        done = subprocess.run([build_binary("tally-codec-vectors"), manifest], check=True,
                              capture_output=True, text=True)
        answers = done.stdout.splitlines()
        assert len(answers) == len(self.results), done.stderr
        for answer, result in zip(answers, self.results):
            result.error = None if answer == "ok" else answer.removeprefix("error ")
