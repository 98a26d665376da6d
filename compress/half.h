// float32 <-> IEEE binary16 ("float16") and bfloat16 conversions on bit
// patterns, round to nearest even, without F16C or _Float16 so that every
// build and SDK gives the same bits. Branch-free enough for GCC to vectorise
// the loops in compress/kernels.cc.
//
// FloatToHalfBits gives exactly numpy's astype(np.float16) for every
// non-NaN float (overflow, including the tie at 65520, becomes ±inf;
// subnormal halves are produced, not flushed). NaN stays NaN: numpy's rule,
// sign and the top 10 mantissa bits kept, a zero result mantissa set to 1.
// FloatToBfloat16Bits rounds the bit pattern to nearest even (overflow →
// ±inf); NaN becomes the quiet NaN with the same sign and top mantissa bits.
#ifndef TALLY_COMPRESS_HALF_H_
#define TALLY_COMPRESS_HALF_H_

#include <cstdint>
#include <cstring>

namespace tally::compress {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Branch-free (every candidate computed, then selected) so that loops over
// it vectorise; the unused candidates may raise inexact/overflow flags, which
// nothing traps on.
inline uint16_t FloatToHalfBits(float f) {
  const uint32_t bits = FloatBits(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t u = bits & 0x7fffffffu;
  // |f| >= 65536, inf or NaN; NaN keeps its top 10 payload bits (at least 1).
  const uint32_t payload = (u & 0x007fffffu) >> 13;
  const uint32_t nan = 0x7c00u | (payload != 0 ? payload : 1u);
  const uint32_t large = u > 0x7f800000u ? nan : 0x7c00u;
  // |f| < 2^-14: adding 0.5 leaves the result's ulp at 2^-24, the subnormal
  // half's spacing, so the FPU's round-to-nearest-even does the rounding.
  const uint32_t small = FloatBits(BitsFloat(u) + 0.5f) - 0x3f000000u;
  // Otherwise rebias the exponent (127 -> 15) and round the 13 dropped bits
  // to nearest even; a carry into the exponent is the correct result
  // (including 65520 and above -> inf).
  const uint32_t normal = (u - 0x38000000u + 0x0fffu + ((u >> 13) & 1u)) >> 13;
  const uint32_t h = u >= 0x47800000u ? large : u < 0x38800000u ? small : normal;
  return static_cast<uint16_t>(h | sign);
}

inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  const uint32_t normal = (em << 13) + 0x38000000u;  // Exponent 15 -> 127.
  const uint32_t special = normal + 0x38000000u;     // Inf / NaN: exponent 255.
  // Subnormal or zero: m · 2^-24 = (2^-14 · (1 + m/1024)) − 2^-14, exact.
  const uint32_t subnormal =
      FloatBits(BitsFloat((em << 13) + 0x38800000u) - BitsFloat(0x38800000u));
  const uint32_t bits = em >= 0x7c00u ? special : em < 0x0400u ? subnormal : normal;
  return BitsFloat(bits | sign);
}

inline bool HalfBitsFinite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

inline uint16_t FloatToBfloat16Bits(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float Bfloat16BitsToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

inline bool Bfloat16BitsFinite(uint16_t b) { return (b & 0x7f80u) != 0x7f80u; }

}  // namespace tally::compress

#endif  // TALLY_COMPRESS_HALF_H_
