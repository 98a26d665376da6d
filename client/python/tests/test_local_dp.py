"""Local DP in the Python SDK (tally.privacy, docs/privacy.md#local-dp):
clipping by hand, the discrete Gaussian's pmf and the noise's standard
deviation over many coordinates (seeded random.Random: deterministic, 6-sigma
bounds), the per-round epsilon against the closed form, and a local-DP client
against a real tally-server: its declaration is logged at Join and the
round's model is its clipped update plus noise."""
import math
import random

import numpy as np
import pytest

from conftest import build_binary
from tally.client import Client
from tally.errors import TallyError
from tally.privacy import (LocalDp, SecureRandom, apply_local_dp, bernoulli_exp, clip,
                           discrete_gaussian)
from tally.testing import ServerProcess


def test_clip_by_hand():
    # ||(3, 4)|| = 5 -> scale 0.2; float32(0.6)^2 + float32(0.8)^2 > 1, so
    # the factor steps down once by 2^-23 (as the C++ ClipToNorm).
    y, norm, scale = clip(np.array([3, 4], dtype=np.float32), 1.0)
    assert norm == 5.0
    assert scale == 0.2 * (1 - 2.0 ** -23)
    assert y.tolist() == [np.float32(3 * scale), np.float32(4 * scale)]
    assert math.hypot(float(y[0]), float(y[1])) <= 1.0
    small, norm, scale = clip(np.array([0.3, 0.4], dtype=np.float32), 1.0)
    assert scale == 1.0 and small.tolist() == [np.float32(0.3), np.float32(0.4)]


def test_secure_random_is_uniform():
    # The OS CSPRNG (not seeded): 6-sigma bounds, failure odds ~1e-8.
    rng = SecureRandom()
    n = 60000
    counts = [0] * 6
    for _ in range(n):
        counts[rng.randrange(6)] += 1
    for c in counts:
        assert abs(c / n - 1 / 6) <= 6 * math.sqrt(5 / 36 / n), counts
    assert rng.randrange(1) == 0
    assert 0 <= rng.getrandbits(200) < 2 ** 200


def test_bernoulli_exp_frequency():
    rng = random.Random(1)
    n = 40000
    for num, den in [(1, 2), (3, 2), (5, 3)]:
        p = math.exp(-num / den)
        freq = sum(bernoulli_exp(rng, num, den) for _ in range(n)) / n
        assert abs(freq - p) <= 6 * math.sqrt(p * (1 - p) / n), (num, den, freq, p)


def test_discrete_gaussian_pmf():
    # sigma = 2: P[x] = exp(-x^2/8) / sum_y exp(-y^2/8).
    rng = random.Random(2)
    n = 40000
    samples = [discrete_gaussian(rng, 2) for _ in range(n)]
    norm = sum(math.exp(-y * y / 8) for y in range(-60, 61))
    for x in range(-4, 5):
        p = math.exp(-x * x / 8) / norm
        freq = samples.count(x) / n
        assert abs(freq - p) <= 6 * math.sqrt(p * (1 - p) / n), (x, freq, p)


def test_noise_std_over_many_coordinates():
    # d = 10000 zeros, C = 2, z = 0.25: sd = z (C + sqrt(d) 2^-41) = 0.5.
    rng = random.Random(3)
    d = 10000
    out, norm = apply_local_dp(np.zeros(d, dtype=np.float32), LocalDp(2.0, 0.25), rng)
    assert norm == 0.0 and out.dtype == np.float32
    sd = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    assert abs(sd - 0.5) <= 6 * 0.5 / math.sqrt(2 * d), sd
    assert abs(float(np.mean(out))) <= 6 * 0.5 / math.sqrt(d)
    assert abs(int(np.sum(out > 0)) - int(np.sum(out < 0))) <= 6 * math.sqrt(d)


def test_epsilon_is_the_gaussian_at_half_the_multiplier():
    # z = 4 -> z/2 = 2, q = 1: RDP(alpha) = alpha / 8.
    best = min(a / 8 + math.log1p(-1 / a) - math.log(1e-5 * a) / (a - 1) for a in range(2, 257))
    eps, order = LocalDp(1.0, 4.0, 1e-5).epsilon()
    assert abs(eps - best) <= 1e-12
    assert 2 <= order <= 256


def test_settings_are_validated():
    for bad in [dict(clip_norm=0), dict(noise_multiplier=-1), dict(delta=1),
                dict(clip_norm=100, noise_multiplier=100)]:
        with pytest.raises(TallyError, match="local_dp"):
            LocalDp(**bad)
    with pytest.raises(TallyError, match="local_dp"):
        Client("localhost:1", "x", local_dp=(1.0, 1.0))


def test_local_dp_client_against_a_real_server():
    # One client, delta = 100 everywhere (norm 400) clipped to C = 1: each of
    # the 16 coordinates 0.25, plus noise z C = 0.01. Server optimizer sgd
    # with lr 1: the new model is the update.
    dp = LocalDp(clip_norm=1.0, noise_multiplier=0.01, delta=1e-5)
    config = 'model { tensors { name: "w" shape: 16 } } ' \
             'rounds { clients_per_round: 1 }'
    with ServerProcess(build_binary("tally-server"), config) as server:
        client = Client(server.target, "private-1", seed=7, local_dp=dp)
        client.join()
        eps = dp.epsilon()[0]
        log = server.log()
        assert "private-1" in log and \
            f"declares local_dp{{clip_norm=1 noise_multiplier=0.01 epsilon={eps:g} " \
            "delta=1e-05}" in log, log
        task = client.get_task(wait=10)
        base = client.pull_model()
        client.push_update(delta=np.full(16, 100.0, dtype=np.float32), round=task.round,
                           base_version=base.version)
        client.wait_for_version(base.version, timeout=10)
        new = np.asarray(client.pull_model().params, dtype=np.float64) - \
            np.asarray(base.params, dtype=np.float64)
        assert np.all(np.abs(new - 0.25) <= 6 * 0.01), new
        assert abs(float(np.linalg.norm(new)) - 1.0) <= 6 * 0.01 * 4
        client.close()
