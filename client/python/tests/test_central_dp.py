"""Central DP (docs/privacy.md#in-the-server) with Python clients against a
real tally-server process: updates are clipped to C with weight 1 and the
mean divides by m (noise z = 1e-9, far below the tolerance); the budget
stops the federation at the round the q = 1 closed form predicts, the
status and the log say so."""
import math
import os

import numpy as np

from conftest import build_binary
from tally.client import Client
from tally.testing import ServerProcess

from test_end_to_end import run_round

TENSORS = 'tensors { name: "w" shape: 4 }'


def test_clipped_mean_with_weight_one():
    config = (f"model {{ {TENSORS} }} rounds {{ clients_per_round: 2 }} "
              'privacy { mode: "central" clip_norm: 1 noise_multiplier: 1e-9 }')
    with ServerProcess(build_binary("tally-server"), config) as s:
        deltas = [np.array([3, 4, 0, 0], np.float32), np.array([0, 0, 0.5, 0], np.float32)]
        clients, _ = run_round(s.target, deltas, [1000, 1])
        clients[0].wait_for_version(1, timeout=30)
        model = clients[0].pull_model()
        # (0.6, 0.8, 0, 0) + (0, 0, 0.5, 0), over m = 2.
        np.testing.assert_allclose(model.params, [0.3, 0.4, 0.25, 0], atol=1e-6)
        status = clients[0].server_status()
        assert status.privacy_steps == 1
        assert status.privacy_clip_norm == 1.0
        assert status.privacy_epsilon > 0


def epsilon_q1(steps, z, delta):
    """The closed form for q = 1 (docs/privacy.md, the accountant)."""
    return min(steps * a / (2 * z * z) + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
               for a in range(2, 257))


def test_budget_stops_the_federation(tmp_path):
    # z = 2, delta = 1e-5: epsilon(3) = 4.0119 <= 4.5 < epsilon(4) = 4.7527.
    assert epsilon_q1(3, 2, 1e-5) <= 4.5 < epsilon_q1(4, 2, 1e-5)
    config = (f"model {{ {TENSORS} }} rounds {{ clients_per_round: 1 total_rounds: 10 }} "
              f'checkpoint_dir: "{tmp_path}" '
              'privacy { mode: "central" clip_norm: 1 noise_multiplier: 2 target_epsilon: 4.5 '
              "delta: 1e-5 }")
    with ServerProcess(build_binary("tally-server"), config) as s:
        client = Client(s.target, "py-budget")
        client.join()
        trained = 0
        for _ in range(50):
            task = client.get_task(wait=10)
            if task.kind == "done":
                break
            if task.kind != "train":
                continue
            client.push_update(delta=np.full(4, 0.1, np.float32), round=task.round,
                               base_version=task.model_version)
            trained += 1
        assert trained == 3
        status = client.server_status()
        assert status.done and status.privacy_steps == 3
        assert abs(status.privacy_epsilon - epsilon_q1(3, 2, 1e-5)) < 1e-9
        assert "privacy budget: epsilon=4.01191 spent in 3 step(s)" in s.log()
        assert "stopping" in s.log()
    assert os.path.exists(tmp_path / "model.tallyckpt")
