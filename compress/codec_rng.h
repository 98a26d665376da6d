// The codecs' one random number generator, counter-based so that any entry's
// value is a pure function of (seed, position) and every SDK reproduces it
// bit for bit (QSGD's rounding, randk's selection, spsa's perturbations).
//
// Definition (all arithmetic on unsigned 64-bit integers, mod 2^64):
//   Mix(x):  x ^= x >> 30;  x *= 0xbf58476d1ce4e5b9;
//            x ^= x >> 27;  x *= 0x94d049bb133111eb;
//            x ^= x >> 31;  return x
//   RngBits(seed, j)    = Mix(seed + (j + 1) · 0x9e3779b97f4a7c15)
// i.e. the j-th output (from 0) of SplitMix64 (Steele, Lea, Flood 2014;
// Vigna's splitmix64.c, Java's SplittableRandom) started from state `seed`.
//   RngUniform(seed, j) = (RngBits(seed, j) >> 40) · 2^-24
// a float32 in [0, 1) on the 2^-24 grid (exact: 24 bits fit the mantissa).
//   Rademacher z_j(seed) = +1 if bit (j mod 64) of RngBits(seed, floor(j/64))
// is 0, else −1 (64 entries per draw; bit 0 = least significant).
//
// numpy (uint64 arrays wrap silently):
//   G = np.uint64(0x9e3779b97f4a7c15)
//   def mix(x):
//       x = (x ^ (x >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
//       x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
//       return x ^ (x >> np.uint64(31))
//   bits = mix(np.uint64(seed) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * G)
//   uniform = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2**-24)
//   z = 1 - 2 * np.unpackbits(mix(...words...).view(np.uint8),
//                             bitorder='little')[:d].astype(np.float32)
// (unpackbits on the little-endian bytes of each word gives bit 0 first).
//
// Stateless; thread-safe.
#ifndef TALLY_COMPRESS_CODEC_RNG_H_
#define TALLY_COMPRESS_CODEC_RNG_H_

#include <cstdint>

#include "absl/types/span.h"

namespace tally::compress {

inline constexpr uint64_t kRngGamma = 0x9e3779b97f4a7c15ULL;

inline constexpr uint64_t RngMix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// 64 random bits at position j of stream `seed`.
inline constexpr uint64_t RngBits(uint64_t seed, uint64_t j) {
  return RngMix(seed + (j + 1) * kRngGamma);
}

// Uniform in [0, 1) with 24 random bits, at position j.
inline float RngUniform(uint64_t seed, uint64_t j) {
  // Through int32 (exact: < 2^24), which vectorises without AVX-512DQ.
  return static_cast<float>(static_cast<int32_t>(RngBits(seed, j) >> 40)) * 0x1p-24f;
}

// z[i] = the Rademacher entry first + i of z(seed), as ±1.0f.
void FillRademacher(uint64_t seed, uint64_t first, absl::Span<float> z);

}  // namespace tally::compress

#endif  // TALLY_COMPRESS_CODEC_RNG_H_
