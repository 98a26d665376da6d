#!/usr/bin/env python3
"""`tally export` of checkpoints a real tally-server wrote (ctest: tally_export).

A tally-server starts from a NumPy .npz (model { init { file } }) written by
np.savez with float16, float64, int64 and float32 entries; a Python SDK
client checks that it serves those values, then runs two FedAvg rounds with
known deltas. `tally export` then writes the checkpointed model as
.safetensors and .npz, and numpy reads back the right names, shapes and
values (the safetensors file through a parser written from the format's
description: the safetensors package is not a dependency). Also: picking
the previous version with --model_version, a version that is not kept, a
corrupt newest checkpoint, usage errors, and the end of a run (total_rounds
with final_model_path and --exit_when_done).

Usage: export_test.py --tally=BIN --server=BIN --source_dir=DIR
(with the Python SDK's stubs in $TALLY_PY_GEN, as for the python_sdk test)
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

NAMES = ["conv.weight", "bn.running_var", "bn.num_batches_tracked", "fc.bias"]


def initial_arrays():
    return {
        "conv.weight": np.array([[1.0, -0.5, 2.0], [0.25, 0.0, -3.0]], dtype=np.float16),
        "bn.running_var": np.array([0.5, 1.0, 4.0], dtype=np.float64),
        "bn.num_batches_tracked": np.array(100, dtype=np.int64),
        "fc.bias": np.array([-1.0, 8.0], dtype=np.float32),
    }


def flat(arrays):
    return np.concatenate([np.asarray(a, np.float32).ravel() for a in arrays.values()])


def read_safetensors(path):
    """name -> (array, dtype string) and the metadata, straight from the spec."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert entry["dtype"] == "F32", entry
        begin, end = entry["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], "<f4").reshape(entry["shape"])
    return out, metadata


class Export:
    def __init__(self, tally, ckpt_dir):
        self.tally, self.ckpt_dir = tally, ckpt_dir

    def __call__(self, out, *flags):
        return subprocess.run([self.tally, "export", f"--checkpoint_dir={self.ckpt_dir}",
                               f"--out={out}", *flags], capture_output=True, text=True)


def check_model(path, want, shapes, version):
    """The exported file holds `want` (flat float32) under NAMES and `shapes`."""
    if path.endswith(".npz"):
        with np.load(path) as f:
            assert list(f.keys()) == NAMES, list(f.keys())
            arrays = {k: f[k] for k in f.keys()}
    else:
        arrays, metadata = read_safetensors(path)
        assert list(arrays) == NAMES, list(arrays)
        assert metadata["format"] == "pt" and metadata["tally_model_version"] == str(version), \
            metadata
    for name in NAMES:
        assert arrays[name].dtype == np.float32 and arrays[name].shape == shapes[name], \
            (name, arrays[name].dtype, arrays[name].shape)
    got = np.concatenate([arrays[n].ravel() for n in NAMES])
    np.testing.assert_array_equal(got, want)


def train_rounds(tally, target, init, deltas):
    client = tally.Client(target, "exporter", seed=1)
    joined = client.join()
    assert [t.name for t in joined.layout.tensors] == NAMES, joined.layout
    model = client.pull_model()
    # The server serves the file's values, each converted to float32.
    np.testing.assert_array_equal(model.params, init)
    assert model.tensors()["conv.weight"].shape == (2, 3)
    for delta in deltas:
        task = client.get_task(wait=10)
        assert task.kind == "train", task
        base = client.pull_model()
        client.push_update(delta=np.full(init.size, delta, np.float32), round=task.round,
                           base_version=base.version, num_samples=1)
        client.wait_for_version(base.version, timeout=10)
    final = client.pull_model()
    client.close()
    return final


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--source_dir", required=True)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(args.source_dir, "client", "python"))
    import tally
    from tally.testing import ServerProcess

    work = tempfile.mkdtemp(prefix="tally-export-test-")
    try:
        arrays = initial_arrays()
        shapes = {name: a.shape for name, a in arrays.items()}
        init = flat(arrays)
        init_path = os.path.join(work, "init.npz")
        np.savez(init_path, **arrays)
        ckpt = os.path.join(work, "ckpt")
        config = (f'model {{ init {{ file: "{init_path}" }} }} '
                  f'rounds {{ clients_per_round: 1 }} checkpoint_dir: "{ckpt}" '
                  "checkpoint_interval_ms: 1")
        export = Export(args.tally, ckpt)
        with ServerProcess(args.server, config) as server:
            final = train_rounds(tally, server.target, init, [0.5, 0.25])
            assert final.version == 3, final.version
            np.testing.assert_array_equal(final.params, init + np.float32(0.75))
            # Every published version is checkpointed (interval 1 ms), after
            # the publication: wait for version 3's file.
            deadline = time.monotonic() + 20
            while export(os.path.join(work, "v3.safetensors"), "--model_version=3").returncode:
                assert time.monotonic() < deadline, "no checkpoint of version 3"
                time.sleep(0.05)
            check_model(os.path.join(work, "v3.safetensors"), final.params, shapes, 3)
            # The one before it is kept as model.tallyckpt.prev.
            r = export(os.path.join(work, "v2.npz"), "--model_version=2")
            assert r.returncode == 0, r.stderr
            assert "model version 2 (1 rounds completed) from" in r.stderr, r.stderr
            check_model(os.path.join(work, "v2.npz"), init + np.float32(0.5), shapes, 2)
            r = export(os.path.join(work, "v1.npz"), "--model_version=1")
            assert r.returncode == 1 and "version 1 is not kept" in r.stderr and \
                "holds version 3 (model.tallyckpt) and 2 (model.tallyckpt.prev)" in r.stderr, \
                r.stderr
            assert not os.path.exists(os.path.join(work, "v1.npz"))
            assert server.stop() == 0, server.log()
            log = server.log()
            assert f"initial model from {init_path}: 4 tensors, 12 parameters; 1 integer " \
                   "entries kept as exact float32 (bn.num_batches_tracked)" in log, log

        # After the drain: the newest checkpoint, in both formats.
        for name in ("final.npz", "final.safetensors"):
            r = export(os.path.join(work, name))
            assert r.returncode == 0, r.stderr
            check_model(os.path.join(work, name), final.params, shapes, 3)
        # The exported file starts a new federation exactly where this one ended.
        with ServerProcess(args.server, f'model {{ init {{ file: "{work}/final.safetensors" }} }}'
                           ) as again:
            client = tally.Client(again.target, "again", seed=2)
            client.join()
            np.testing.assert_array_equal(client.pull_model().params, final.params)
            client.close()

        # The end of a run: rounds.total_rounds = 2 with final_model_path and
        # --exit_when_done: the server logs the end, writes the final model
        # and exits by itself with 0 (no signal sent).
        final_path = os.path.join(work, "end", "final.npz")
        os.makedirs(os.path.dirname(final_path))
        config = (f'model {{ init {{ file: "{init_path}" }} }} '
                  f'rounds {{ clients_per_round: 1 total_rounds: 2 }} '
                  f'final_model_path: "{final_path}"')
        with ServerProcess(args.server, config, extra_args=["--exit_when_done"]) as ending:
            ended = train_rounds(tally, ending.target, init, [0.5, 0.25])
            np.testing.assert_array_equal(ended.params, init + np.float32(0.75))
            ending.process.wait(timeout=30)
            assert ending.process.returncode == 0, ending.log()
            log = ending.log()
            assert "federation finished: rounds.total_rounds = 2 reached; final model " \
                   "version 3 (round 2)" in log, log
            assert f"final model (version 3) written to {final_path}" in log, log
            assert "the federation is finished (--exit_when_done), draining" in log, log
        with np.load(final_path) as ended_file:
            assert list(ended_file.keys()) == NAMES, list(ended_file.keys())
            got = np.concatenate([ended_file[n].astype(np.float32).ravel() for n in NAMES])
            np.testing.assert_array_equal(got, ended.params)
            assert ended_file["conv.weight"].shape == shapes["conv.weight"]

        # A corrupt newest checkpoint is passed over, with a warning.
        with open(os.path.join(ckpt, "model.tallyckpt"), "r+b") as f:
            f.seek(60)
            byte = f.read(1)
            f.seek(60)
            f.write(bytes([byte[0] ^ 1]))
        r = export(os.path.join(work, "fallback.npz"))
        assert r.returncode == 0 and "skipping a corrupt checkpoint" in r.stderr, r.stderr

        # Usage errors exit 2; an empty directory is an error (1).
        assert export(os.path.join(work, "model.pt")).returncode == 2
        r = subprocess.run([args.tally, "export", f"--out={work}/x.npz"], capture_output=True,
                           text=True)
        assert r.returncode == 2 and "--checkpoint_dir is required" in r.stderr, r.stderr
        os.mkdir(os.path.join(work, "empty"))
        r = Export(args.tally, os.path.join(work, "empty"))(os.path.join(work, "x.npz"))
        assert r.returncode == 1 and "no checkpoint in" in r.stderr, r.stderr
        print("export_test: ok")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
