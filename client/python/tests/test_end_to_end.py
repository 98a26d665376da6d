"""Python clients against a real tally-server process: a FedAvg round's
model is the hand-computed sample-weighted mean of the deltas; compressed
uploads reach the server as the Python codec's decode; state_dict weights
with their base, unnamed updates refused,
retries of an acknowledged update, watch, heartbeat, leave."""
import threading

import numpy as np
import pytest

import tally
from conftest import INITIAL_VERSION, build_binary
from tally.client import Client
from tally.errors import LengthMismatchError, NotJoinedError, RejectedUpdateError, \
    TallyError
from tally.testing import ServerProcess

TENSORS = 'tensors { name: "w" shape: 3 shape: 4 } tensors { name: "b" shape: 4 }'


def server(config):
    return ServerProcess(build_binary("tally-server"), config)


def run_round(target, deltas, samples, **client_options):
    """One client per delta, all in the round at once (threads)."""
    clients = [Client(target, f"py-{i}", seed=100 + i, **client_options)
               for i in range(len(deltas))]
    results, errors = [None] * len(deltas), []

    def work(i):
        try:
            clients[i].join()
            task = clients[i].get_task(wait=10)
            assert task.kind == "train", task
            model = clients[i].pull_model()
            results[i] = clients[i].push_update(delta=deltas[i], round=task.round,
                                                base_version=model.version,
                                                num_samples=samples[i], metrics={"loss": 0.5})
        except Exception as e:  # noqa: BLE001 -- reported below.
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(deltas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return clients, results


def test_fedavg_round_is_the_weighted_mean():
    g = np.random.default_rng(3)
    deltas = [g.standard_normal(16).astype(np.float32) for _ in range(3)]
    samples = [10, 30, 60]
    with server(f"model {{ {TENSORS} }} rounds {{ clients_per_round: 3 }}") as s:
        clients, results = run_round(s.target, deltas, samples)
        assert all(not r.duplicate and r.attempts == 1 and r.payload_bytes == 64
                   for r in results)
        version = clients[0].wait_for_version(INITIAL_VERSION, timeout=10)
        model = clients[0].pull_model()
        assert model.version == version >= 1 and model.round == 1
        # Hand computation: zero initial model, SGD with lr 1 over the
        # sample-weighted mean (FedAvg).
        expected = sum(n * d.astype(np.float64) for n, d in zip(samples, deltas)) / sum(samples)
        np.testing.assert_allclose(model.params, expected, rtol=1e-6, atol=1e-7)
        tensors = model.tensors()
        assert list(tensors) == ["w", "b"] and tensors["w"].shape == (3, 4)
        np.testing.assert_array_equal(tensors["b"], model.params[12:])
        status = clients[0].server_status()
        assert status.rounds_completed == 1 and status.updates_accepted == 3
        for c in clients:
            c.leave()
            c.close()


def test_compressed_uploads_decode_like_python():
    """The server decodes topk (with zstd) exactly as tally.codecs does."""
    g = np.random.default_rng(4)
    deltas = [g.standard_normal(16).astype(np.float32) for _ in range(2)]
    config = (f"model {{ {TENSORS} }} rounds {{ clients_per_round: 2 }} "
              'compression { upload { codec: "topk" params { k: 5 zstd: true } } }')
    with server(config) as s:
        clients, results = run_round(s.target, deltas, [1, 3], upload_codecs=["topk", "int8"])
        joined = clients[0].joined
        assert joined.upload_codec.codec == "topk" and joined.upload_codec.k == 5
        model = clients[0].pull_model(clients[0].wait_for_version(INITIAL_VERSION, timeout=10))
        # Each client's first update carries Decode(Encode(delta)) (zero
        # residual); error feedback keeps the rest for the next one.
        sent = [tally.decode(joined.upload_codec, tally.encode(joined.upload_codec, d), 16)
                for d in deltas]
        expected = (1 * sent[0].astype(np.float64) + 3 * sent[1]) / 4
        np.testing.assert_allclose(model.params, expected, rtol=1e-6, atol=1e-7)
        assert np.count_nonzero(sent[0]) == 5
        assert all(r.payload_bytes < 64 for r in results)
        for c in clients:  # Open channels hold up the server's drain (~5 s).
            c.close()


def test_state_dict_push_and_retry_is_a_duplicate():
    import torch
    with server(f"model {{ {TENSORS} }} rounds {{ clients_per_round: 1 }}") as s:
        client = Client(s.target, "sd-client", seed=1)
        joined = client.join()
        assert joined.layout.num_params == 16 and joined.download_codec.codec == "float32"
        task = client.get_task(wait=10)
        model = client.pull_model()
        base = model.state_dict(like={"w": torch.zeros(3, 4), "b": torch.zeros(4)})
        local = {name: t + 0.25 for name, t in base.items()}
        pushed = client.push_update(weights=local, base=base, round=task.round,
                                    base_version=model.version, num_samples=5,
                                    update_id="fixed-id-1")
        assert not pushed.duplicate
        again = client.push_update(weights=local, base=base, round=task.round,
                                   base_version=model.version, num_samples=5,
                                   update_id="fixed-id-1")
        assert again.duplicate
        client.wait_for_version(INITIAL_VERSION, timeout=10)
        np.testing.assert_array_equal(client.pull_model().params, np.full(16, 0.25, np.float32))
        with pytest.raises(LengthMismatchError):
            client.push_update(delta=np.zeros(15, np.float32), round=task.round)
        with pytest.raises(RejectedUpdateError) as rejected:
            client.push_update(delta=np.zeros(16, np.float32), round=task.round, base_version=999)
        assert rejected.value.code is not None
        assert client.heartbeat()[0] >= 1
        client.leave()
        with pytest.raises(NotJoinedError):
            client.heartbeat()
        client.close()


def test_weights_are_pushed_as_their_difference_from_base():
    """After a round at ones (a delta), local weights 1.5 with base= the
    pulled model make the model 1.5; pushed as a delta they would make it
    2.5. Unnamed updates and weights without a base are refused before
    anything is sent."""
    with server('model { tensors { name: "w" shape: 4 } } rounds { clients_per_round: 1 }') as s:
        client = Client(s.target, "weights-client", seed=1)
        client.join()
        for push in (lambda model: dict(delta=np.ones(4, np.float32)),
                     lambda model: dict(weights={"w": model.params + 0.5}, base=model)):
            task = client.get_task(wait=10)
            model = client.pull_model()
            client.push_update(round=task.round, base_version=model.version, **push(model))
            client.wait_for_version(model.version, timeout=10)
        np.testing.assert_array_equal(client.pull_model().params, np.full(4, 1.5, np.float32))
        local = np.full(4, 2.0, np.float32)
        for args, kwargs, words in [
                ((local,), {}, "name the update: delta=local - base, or weights=local with base="),
                ((local,), {"base": model}, "name the update"),
                ((), {"weights": local}, "weights= needs base="),
                ((), {"delta": local, "base": model}, "base= goes with weights="),
                ((), {"delta": local, "weights": local, "base": model}, "not both"),
                ((), {}, "neither"),
                ((), {"weights": local, "base": np.ones(3, np.float32)}, "base has 3 floats")]:
            with pytest.raises(TallyError, match=words):
                client.push_update(*args, round=2, base_version=model.version, **kwargs)
        status = client.server_status()
        assert (status.updates_accepted, status.updates_rejected) == (2, 0)
        client.close()


def test_pytorch_digits_example_runs(tmp_path):
    """examples/pytorch_digits.py, two rounds of one robust federation with
    compressed transfers both ways."""
    import torch  # noqa: F401  (installed by scripts/install_deps.sh)
    import sklearn  # noqa: F401
    import os
    import subprocess
    import sys

    from conftest import REPO

    server_bin = build_binary("tally-server")
    build_dir = os.path.dirname(os.path.dirname(server_bin))
    out = tmp_path / "digits.png"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "pytorch_digits.py"), "--build_dir",
         build_dir, "--clients", "5", "--byzantine", "1", "--rounds", "2", "--no_baseline",
         "--rules", "trimmed_mean", "--upload_codec", "topk", "--upload_params", "ratio: 0.1",
         "--download_codec", "float16", "--delta_codec", "int8", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "round   2  test accuracy" in done.stdout and out.stat().st_size > 10000
    # 2410 parameters: a topk update of 241 entries is < 1/4 of 9640 float32 bytes.
    up = int(done.stdout.split(" B up")[0].rsplit(" ", 1)[1])
    assert 0 < up < 9640 // 4, done.stdout
