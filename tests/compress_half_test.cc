// compress/half.h: float16 and bfloat16 conversions against references
// written differently (double arithmetic with frexp/ldexp/nearbyint instead
// of bit tricks), over every half / bfloat16 bit pattern and, for encoding,
// every combination of the top 16 float bits with low halves that hit each
// rounding tie, its neighbours and the extremes, plus random floats.
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "compress/half.h"
#include "gtest/gtest.h"

namespace tally::compress {
namespace {

// IEEE binary16 value of h (NaN for NaN patterns).
double RefHalfToDouble(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == 0x1f) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// Nearest binary16 to a non-NaN float, ties to even, by arithmetic.
uint16_t RefFloatToHalf(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (std::isinf(a)) return sign | 0x7c00;
  if (a < 0x1p-14) {
    // Subnormal range: a multiple of 2^-24 (1024 · 2^-24 is the smallest normal).
    return sign | static_cast<uint16_t>(std::nearbyint(a * 0x1p24));
  }
  int e;
  std::frexp(a, &e);                                 // a in [2^(e-1), 2^e).
  double q = std::nearbyint(std::ldexp(a, 11 - e));  // 11 significant bits.
  int exponent = e - 1;
  if (q == 2048.0) {
    q = 1024.0;
    ++exponent;
  }
  if (exponent > 15) return sign | 0x7c00;
  return sign | static_cast<uint16_t>((exponent + 15) << 10) | static_cast<uint16_t>(q - 1024.0);
}

// Nearest bfloat16 (8 significant bits, float32's exponent range) to a
// non-NaN float, ties to even, as the top 16 bits of the float result.
uint16_t RefFloatToBfloat16(float f) {
  const double a = std::fabs(static_cast<double>(f));
  double value;
  if (std::isinf(a)) {
    value = a;
  } else if (a < 0x1p-126) {
    value = std::ldexp(std::nearbyint(std::ldexp(a, 133)), -133);  // Spacing 2^-133.
  } else {
    int e;
    std::frexp(a, &e);
    value = std::ldexp(std::nearbyint(std::ldexp(a, 8 - e)), e - 8);
  }
  float result = value >= 0x1p128 ? std::numeric_limits<float>::infinity()
                                  : static_cast<float>(value);  // Exact.
  if (std::signbit(f)) result = -result;
  return static_cast<uint16_t>(FloatBits(result) >> 16);
}

// Low 16 bits that hit every rounding position's tie (a single bit), the
// values around it, zero and all ones.
std::vector<uint32_t> InterestingLowHalves() {
  std::vector<uint32_t> lows = {0, 0xffff, 0x7fff, 0x8001};
  for (int b = 0; b < 16; ++b) {
    const uint32_t tie = 1u << b;
    lows.push_back(tie);
    lows.push_back(tie - 1);
    lows.push_back(tie + 1);
    lows.push_back((tie | (tie - 1)) & 0xffff);
  }
  return lows;
}

TEST(HalfTest, DecodesEveryHalfPattern) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const double want = RefHalfToDouble(static_cast<uint16_t>(h));
    const float got = HalfBitsToFloat(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      ASSERT_FALSE(HalfBitsFinite(static_cast<uint16_t>(h)));
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), want) << std::hex << h;
    ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
    ASSERT_EQ(HalfBitsFinite(static_cast<uint16_t>(h)), std::isfinite(want)) << std::hex << h;
  }
}

TEST(HalfTest, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    // NaNs too: numpy's rule keeps the sign and the payload's top bits.
    const uint16_t back = FloatToHalfBits(HalfBitsToFloat(static_cast<uint16_t>(h)));
    ASSERT_EQ(back, h) << std::hex << h;
  }
}

TEST(HalfTest, EncodesLikeTheReference) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  const std::vector<uint32_t> lows = InterestingLowHalves();
  for (uint32_t high = 0; high < 0x10000; ++high) {
    for (uint32_t low : lows) {
      const float f = BitsFloat((high << 16) | low);
      if (std::isnan(f)) continue;
      ASSERT_EQ(FloatToHalfBits(f), RefFloatToHalf(f)) << std::hexfloat << f;
    }
  }
  std::mt19937 rng(20240611);
  for (int i = 0; i < 2000000; ++i) {
    const float f = BitsFloat(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalfBits(f), RefFloatToHalf(f)) << std::hexfloat << f;
  }
}

TEST(HalfTest, KnownValues) {
  // Hand-computed binary16 encodings (and numpy's astype(float16) results).
  EXPECT_EQ(FloatToHalfBits(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalfBits(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalfBits(0.1f), 0x2e66);
  EXPECT_EQ(HalfBitsToFloat(0x2e66), 0.0999755859375f);  // docs/algorithms.md's example.
  EXPECT_EQ(FloatToHalfBits(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalfBits(65519.0f), 0x7bff);  // Below the tie: the largest half.
  EXPECT_EQ(FloatToHalfBits(65520.0f), 0x7c00);  // The tie rounds to even: inf.
  EXPECT_EQ(FloatToHalfBits(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalfBits(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToHalfBits(0x1p-24f), 0x0001);         // Smallest subnormal.
  EXPECT_EQ(FloatToHalfBits(0x1p-25f), 0x0000);         // Tie with 0: even.
  EXPECT_EQ(FloatToHalfBits(0x1.8p-24f), 0x0002);       // Tie 1.5: even 2.
  EXPECT_EQ(FloatToHalfBits(0x1.000002p-25f), 0x0001);  // Just above the tie.
  EXPECT_EQ(FloatToHalfBits(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalfBits(0x1.ff8p-15f), 0x03ff);       // Largest subnormal, 1023 · 2^-24.
  EXPECT_EQ(FloatToHalfBits(0x1.ffap-15f), 0x03ff);       // 1023.25 · 2^-24.
  EXPECT_EQ(FloatToHalfBits(0x1.ffcp-15f), 0x0400);       // 1023.5: tie, even = smallest normal.
  EXPECT_EQ(FloatToHalfBits(1.0f + 0x1p-11f), 0x3c00);    // Tie: even.
  EXPECT_EQ(FloatToHalfBits(1.0f + 0x1.8p-10f), 0x3c02);  // Tie: even (up).
  EXPECT_EQ(FloatToHalfBits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(FloatToHalfBits(std::numeric_limits<float>::quiet_NaN()), 0x7e00);
  EXPECT_EQ(FloatToHalfBits(BitsFloat(0x7f800001u)), 0x7c01);  // Payload lost: kept NaN.
  EXPECT_EQ(HalfBitsToFloat(0x3555), 0x1.554p-2f);
}

TEST(Bfloat16Test, DecodesEveryPattern) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float got = Bfloat16BitsToFloat(static_cast<uint16_t>(b));
    const uint32_t bits = b << 16;
    ASSERT_EQ(FloatBits(got), bits);
    ASSERT_EQ(Bfloat16BitsFinite(static_cast<uint16_t>(b)), std::isfinite(got)) << std::hex << b;
  }
}

TEST(Bfloat16Test, EveryPatternRoundTripsAndNaNStaysNaN) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = Bfloat16BitsToFloat(static_cast<uint16_t>(b));
    const uint16_t back = FloatToBfloat16Bits(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(Bfloat16BitsToFloat(back))) << std::hex << b;
      ASSERT_EQ(back & 0x8000, b & 0x8000);
    } else {
      ASSERT_EQ(back, b) << std::hex << b;
    }
  }
  // A NaN whose payload sits only in the dropped bits stays NaN.
  EXPECT_TRUE(std::isnan(Bfloat16BitsToFloat(FloatToBfloat16Bits(BitsFloat(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(Bfloat16BitsToFloat(FloatToBfloat16Bits(BitsFloat(0xff80ffffu)))));
}

TEST(Bfloat16Test, EncodesLikeTheReference) {
  const std::vector<uint32_t> lows = InterestingLowHalves();
  for (uint32_t high = 0; high < 0x10000; ++high) {
    for (uint32_t low : lows) {
      const float f = BitsFloat((high << 16) | low);
      if (std::isnan(f)) continue;
      ASSERT_EQ(FloatToBfloat16Bits(f), RefFloatToBfloat16(f)) << std::hexfloat << f;
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const float f = BitsFloat(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToBfloat16Bits(f), RefFloatToBfloat16(f)) << std::hexfloat << f;
  }
}

TEST(Bfloat16Test, KnownValues) {
  EXPECT_EQ(FloatToBfloat16Bits(1.0f), 0x3f80);
  // docs/algorithms.md#float16-and-bfloat16: 0.1f = 0x3dcccccd rounds up to
  // 0x3dcd = (1 + 77/128) · 2^-4 = 0.10009765625.
  EXPECT_EQ(FloatToBfloat16Bits(0.1f), 0x3dcd);
  EXPECT_EQ(Bfloat16BitsToFloat(0x3dcd), 0.10009765625f);
  EXPECT_EQ(FloatToBfloat16Bits(0x1.01p0f), 0x3f80);                          // Tie: even (down).
  EXPECT_EQ(FloatToBfloat16Bits(0x1.03p0f), 0x3f82);                          // Tie: even (up).
  EXPECT_EQ(FloatToBfloat16Bits(0x1.0101p0f), 0x3f81);                        // Above the tie.
  EXPECT_EQ(FloatToBfloat16Bits(std::numeric_limits<float>::max()), 0x7f80);  // Overflow.
  EXPECT_EQ(FloatToBfloat16Bits(0x1.fep127f), 0x7f7f);                        // Largest bfloat16.
  EXPECT_EQ(FloatToBfloat16Bits(-0x1.ff8p127f), 0xff80);                      // Tie to even: -inf.
  EXPECT_EQ(FloatToBfloat16Bits(0x1p-149f), 0x0000);  // Below half the spacing.
  EXPECT_EQ(FloatToBfloat16Bits(0x1p-133f), 0x0001);
  EXPECT_EQ(FloatToBfloat16Bits(std::numeric_limits<float>::quiet_NaN()), 0x7fc0);
}

}  // namespace
}  // namespace tally::compress
