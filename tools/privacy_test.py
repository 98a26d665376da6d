#!/usr/bin/env python3
"""End-to-end test of `tally privacy` (tools/tally_main.cc, core/privacy/accountant.h).

The expected values come from outside the C++ code:
  - an mpmath evaluation (80 digits) of A_alpha of the sampled Gaussian
    mechanism (Mironov, Talwar, Zhang 2019) as a plain binomial sum, and for
    two points as the integral that defines it,
      A_alpha = E_{x ~ N(0, z^2)} [((1 - q) + q exp((2x - 1) / (2 z^2)))^alpha];
  - the epsilon conversion written here again from docs/privacy.md;
  - published values of google/differential-privacy's dp_accounting
    (python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py,
    test_compute_rdp_poisson_sampled_gaussian: q = 0.01, z = 2.5, 50 steps).
Usage: privacy_test.py TALLY_BINARY
"""
import math
import subprocess
import sys

import mpmath as mp

TALLY = sys.argv[1]
mp.mp.dps = 80


def run(*args, expect=0):
    p = subprocess.run([TALLY, "privacy", *args], capture_output=True, text=True)
    assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
    return p.stdout


def parse(out):
    """First line's key=value pairs, and {order: rdp} from --print_rdp lines."""
    lines = out.strip().splitlines()
    head = dict(kv.split("=") for kv in lines[0].split())
    rdp = {}
    for line in lines[1:]:
        kv = dict(x.split("=") for x in line.split())
        rdp[int(kv["order"])] = float(kv["rdp"])
    return head, rdp


def rdp_sum(q, z, alpha):
    q, z = mp.mpf(q), mp.mpf(z)
    a = mp.fsum(mp.binomial(alpha, k) * (1 - q) ** (alpha - k) * q ** k *
                mp.exp(mp.mpf(k * k - k) / (2 * z * z)) for k in range(alpha + 1))
    return mp.log(a) / (alpha - 1)


def rdp_integral(q, z, alpha):
    q, z = mp.mpf(q), mp.mpf(z)
    f = lambda x: mp.npdf(x, 0, z) * ((1 - q) + q * mp.exp((2 * x - 1) / (2 * z * z))) ** alpha
    return mp.log(mp.quad(f, [-mp.inf, 0, 1, mp.inf], maxdegree=10)) / (alpha - 1)


def epsilon(rdp_by_order, delta):
    best = (math.inf, None)
    for a, r in sorted(rdp_by_order.items()):
        if delta ** 2 + math.expm1(-r) > 0:
            e = 0.0
        else:
            e = r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        if e < best[0]:
            best = (e, a)
    return max(0.0, best[0]), best[1]


def close(a, b, rtol, what):
    assert abs(a - b) <= rtol * abs(b), f"{what}: {a} vs {b}"


# 1. RDP at every order against the 80-digit binomial sum, three settings.
for q, z, steps in [(0.01, 1.1, 1000), (0.1, 0.8, 37), (0.5, 3.0, 5)]:
    head, rdp = parse(run(f"--sampling_rate={q}", f"--noise_multiplier={z}",
                          f"--steps={steps}", "--delta=1e-5", "--print_rdp"))
    assert sorted(rdp) == list(range(2, 257))
    ref = {a: float(steps * rdp_sum(q, z, a)) for a in range(2, 257)}
    for a in range(2, 257):
        close(rdp[a], ref[a], 1e-9, f"rdp q={q} z={z} alpha={a}")
    e, order = epsilon(ref, 1e-5)
    close(float(head["epsilon"]), e, 1e-9, f"epsilon q={q} z={z}")
    assert int(head["order"]) == order, (head, order)

# 2. Two orders against the defining integral.
for q, z, a in [(0.1, 1.0, 8), (0.05, 2.0, 20)]:
    _, rdp = parse(run(f"--sampling_rate={q}", f"--noise_multiplier={z}", "--steps=1",
                       "--delta=1e-5", "--print_rdp"))
    close(rdp[a], float(rdp_integral(q, z, a)), 1e-8, f"integral q={q} z={z} alpha={a}")

# 3. dp_accounting's published RDP (their rtol: 1e-4).
_, rdp = parse(run("--sampling_rate=0.01", "--noise_multiplier=2.5", "--steps=50",
                   "--delta=1e-5", "--print_rdp"))
for a, published in [(5, 2.18075656e-03), (50, 2.38460375e-02), (100, 1.67416308e02)]:
    close(rdp[a], published, 1e-6, f"published alpha={a}")

# 4. q = 1: RDP(alpha) = T alpha / (2 z^2) in closed form.
head, rdp = parse(run("--sampling_rate=1", "--noise_multiplier=5", "--steps=3", "--delta=1e-6",
                      "--print_rdp"))
closed = {a: 3 * a / 50 for a in range(2, 257)}
for a in (2, 100, 256):
    close(rdp[a], closed[a], 1e-15, f"closed form alpha={a}")
e, order = epsilon(closed, 1e-6)
close(float(head["epsilon"]), e, 1e-10, "closed-form epsilon")
assert int(head["order"]) == order

# 5. --target_epsilon: the noise multiplier found keeps the target, 1e-5 less does not.
head, _ = parse(run("--sampling_rate=0.01", "--target_epsilon=2", "--steps=1000",
                    "--delta=1e-5"))
z = float(head["noise_multiplier"])
assert float(head["epsilon"]) <= 2.0, head
head, _ = parse(run("--sampling_rate=0.01", f"--noise_multiplier={z * (1 - 1e-5)!r}",
                    "--steps=1000", "--delta=1e-5"))
assert float(head["epsilon"]) > 2.0, (z, head)

# 6. Usage errors exit 2.
run("--sampling_rate=0.1", "--noise_multiplier=1", "--steps=10", expect=2)  # No delta.
run("--sampling_rate=1.5", "--noise_multiplier=1", "--steps=10", "--delta=1e-5", expect=2)
run("--sampling_rate=0.1", "--noise_multiplier=1", "--target_epsilon=1", "--steps=10",
    "--delta=1e-5", expect=2)
run("--sampling_rate=0.1", "--noise_multiplier=-1", "--steps=10", "--delta=1e-5", expect=2)
print("tally privacy: all checks passed")
