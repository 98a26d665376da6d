"""Local differential privacy for updates (docs/privacy.md#local-dp).

The same mechanism as the C++ SDK (core/privacy/mechanism.h): clip the update
to L2 norm C, round it to the exact sum's 2^-40 grid, and add discrete
Gaussian noise there (Canonne, Kamath, Steinke, "The Discrete Gaussian for
Differential Privacy", NeurIPS 2020, Algorithms 1-3), with Python's exact
integers and randomness from os.urandom (the OS CSPRNG, as `secrets`). Its per-round
guarantee is the Gaussian mechanism with sensitivity 2C (replace-one: any two
updates the client could send), i.e. noise multiplier z / 2, converted to
(epsilon, delta) with the accountant's RDP formula at q = 1.
"""
import math
import os
from dataclasses import dataclass

import numpy as np

from tally.errors import TallyError

LANE_SCALE = 2.0 ** 40  # The exact sum's grid (core/exact_sum.h).
MAX_SIGMA = 1 << 50     # The sampler's range, as the C++ one.


@dataclass(frozen=True)
class LocalDp:
    """clip_norm C > 0, noise_multiplier z > 0 (z * C at most about 1024),
    delta in (0, 1). Every update gets clipped to C, then noise z * C."""
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5

    def __post_init__(self):
        if not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise TallyError(f"local_dp.clip_norm: {self.clip_norm} must be > 0")
        if not (self.noise_multiplier > 0 and math.isfinite(self.noise_multiplier)):
            raise TallyError(f"local_dp.noise_multiplier: {self.noise_multiplier} must be > 0")
        if not 0 < self.delta < 1:
            raise TallyError(f"local_dp.delta: {self.delta} must be in (0, 1)")
        if math.ceil(self.noise_multiplier * (self.clip_norm * LANE_SCALE + 0.5)) > MAX_SIGMA:
            raise TallyError("local_dp: noise_multiplier x clip_norm must be at most about 1024")

    def epsilon(self):
        """(epsilon, order) of one update: RDP(alpha) = alpha / (2 (z/2)^2)
        at alpha = 2..256, epsilon = min RDP + log1p(-1/alpha) -
        log(delta alpha) / (alpha - 1) (0 where delta^2 + expm1(-RDP) > 0)."""
        z = self.noise_multiplier / 2
        best = (math.inf, 2)
        for a in range(2, 257):
            r = a / (2 * z * z)
            if self.delta ** 2 + math.expm1(-r) > 0:
                e = 0.0
            else:
                e = r + math.log1p(-1 / a) - math.log(self.delta * a) / (a - 1)
            if e < best[0]:
                best = (e, a)
        return max(0.0, best[0]), best[1]


def clip(update, clip_norm):
    """update (float32 array) scaled to L2 norm <= clip_norm: factor
    min(1, C / ||x||) in float64, lowered by 2^-23 steps while float32
    rounding leaves the norm above C. Returns (clipped, norm, scale)."""
    x = np.asarray(update, dtype=np.float32)
    norm = math.sqrt(float(np.dot(x.astype(np.float64), x.astype(np.float64))))
    if norm <= clip_norm:
        return x.copy(), norm, 1.0
    scale = clip_norm / norm
    while True:
        y = (x.astype(np.float64) * scale).astype(np.float32)
        if math.sqrt(float(np.dot(y.astype(np.float64), y.astype(np.float64)))) <= clip_norm:
            return y, norm, scale
        scale *= 1 - 2.0 ** -23


class SecureRandom:
    """randrange / getrandbits from the OS CSPRNG (os.urandom, as `secrets`),
    read 64 KiB at a time: one system call per thousands of draws instead of
    one per draw."""

    def __init__(self):
        self._buffer = b""
        self._used = 0

    def getrandbits(self, k):
        n = (k + 7) // 8
        if self._used + n > len(self._buffer):
            self._buffer = os.urandom(max(65536, n))
            self._used = 0
        value = int.from_bytes(self._buffer[self._used:self._used + n], "little")
        self._used += n
        return value & ((1 << k) - 1)

    def randrange(self, n):
        """Uniform in [0, n) for n >= 1: rejection on n's bit length (exact)."""
        k = (n - 1).bit_length()
        while True:
            x = self.getrandbits(k)
            if x < n:
                return x


def _bernoulli_exp_fraction(rng, n, d):
    """P[True] = exp(-n/d) for 0 <= n <= d (CKS Algorithm 1, gamma <= 1)."""
    k = 1
    while True:
        if rng.randrange(d * k) >= n:
            return k % 2 == 1
        k += 1


def bernoulli_exp(rng, n, d):
    """P[True] = exp(-n/d) for integers n >= 0, d >= 1."""
    whole, rest = divmod(n, d)
    for _ in range(whole):
        if not _bernoulli_exp_fraction(rng, 1, 1):
            return False
    return _bernoulli_exp_fraction(rng, rest, d)


def discrete_laplace(rng, t):
    """P[x] proportional to exp(-|x| / t) (CKS Algorithm 2)."""
    while True:
        u = rng.randrange(t)
        if not bernoulli_exp(rng, u, t):
            continue
        v = 0
        while bernoulli_exp(rng, 1, 1):
            v += 1
        x = u + t * v
        negative = rng.getrandbits(1)
        if negative and x == 0:
            continue
        return -x if negative else x


def discrete_gaussian(rng, sigma):
    """One sample of N_Z(0, sigma^2) for an integer sigma >= 1 (CKS
    Algorithm 3 with t = sigma + 1)."""
    t = sigma + 1
    s2 = sigma * sigma
    d = 2 * s2 * t * t
    while True:
        y = discrete_laplace(rng, t)
        a = abs(y) * t - s2
        if bernoulli_exp(rng, a * a, d):
            return y


def apply_local_dp(update, settings, rng=None):
    """Clips `update` to settings.clip_norm, then adds discrete Gaussian noise
    of sigma = ceil(z (C 2^40 + sqrt(d) / 2)) grid units (2^-40) to every
    coordinate. rng: an object with randrange/getrandbits; default the OS
    CSPRNG (SecureRandom above). Pass a seeded random.Random only in
    tests. Returns (noised float32 array, norm before clipping)."""
    rng = rng if rng is not None else SecureRandom()
    x, norm, _ = clip(update, settings.clip_norm)
    if not np.all(np.isfinite(x)):
        raise TallyError("local DP: the update is not finite")
    d = x.size
    sigma = math.ceil(settings.noise_multiplier * (settings.clip_norm * LANE_SCALE
                                                   + math.sqrt(d) / 2))
    lanes = np.rint(x.astype(np.float64) * LANE_SCALE).astype(np.int64)  # Round half to even.
    noise = np.fromiter((discrete_gaussian(rng, sigma) for _ in range(d)), dtype=np.int64,
                        count=d)
    return ((lanes + noise).astype(np.float64) / LANE_SCALE).astype(np.float32), norm
