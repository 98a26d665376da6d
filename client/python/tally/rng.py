"""The codecs' counter-based RNG (compress/codec_rng.h), vectorised.

RngBits(seed, j) = Mix(seed + (j + 1) * 0x9e3779b97f4a7c15) mod 2^64, the j-th
output of SplitMix64 from state `seed`; RngUniform = (RngBits >> 40) * 2^-24
as float32; Rademacher z_j = -1 iff bit (j mod 64) of RngBits(seed, j // 64).
"""
import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix(x):
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def rng_bits(seed, first, n):
    """RngBits(seed, j) for j in first .. first + n - 1 (uint64 array)."""
    j = np.arange(n, dtype=np.uint64) + np.uint64(first + 1)
    with np.errstate(over="ignore"):
        return mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) + j * GAMMA)


def rng_bits_one(seed, j):
    """RngBits(seed, j) as a Python int."""
    return int(rng_bits(seed, j, 1)[0])


def rng_uniform(seed, first, n):
    """RngUniform(seed, j) for j in first .. first + n - 1 (float32 array)."""
    return (rng_bits(seed, first, n) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def rademacher_negative(seed, d):
    """Boolean array: True where z_j(seed) = -1, for j < d."""
    words = rng_bits(seed, 0, (d + 63) // 64)
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:d].astype(bool)
