// The DP mechanism's pure functions (core/privacy/mechanism.h): clipping,
// the noise scale on the exact sum's grid, the noisy sum's standard
// deviation after the fixed-denominator division, local DP, and adaptive
// clipping's formulas, against hand computations.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/exact_sum.h"
#include "core/privacy/mechanism.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::privacy {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

constexpr double kTwo40 = 1099511627776.0;

double Norm(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

TEST(PrivacyMechanismTest, ClipsToTheNorm) {
  std::vector<float> x = {3, 4};  // ||x|| = 5; C = 1: scale 0.2 -> (0.6, 0.8).
  const ClipResult r = ClipToNorm(absl::MakeSpan(x), 1.0);
  EXPECT_EQ(r.norm, 5.0);
  EXPECT_TRUE(r.clipped);
  // float(0.6) and float(0.8) are both rounded up: 0.6f^2 + 0.8f^2 =
  // 1.0000000477 > 1, so the scale steps down once by 2^-23.
  ASSERT_GT(0.6f * 0.6 + 0.8f * 0.8, 1.0);
  EXPECT_EQ(r.scale, 0.2 * (1 - 0x1p-23));
  EXPECT_EQ(x[0], static_cast<float>(3 * (0.2 * (1 - 0x1p-23))));
  EXPECT_EQ(x[1], static_cast<float>(4 * (0.2 * (1 - 0x1p-23))));
  EXPECT_LE(Norm(x), 1.0);

  std::vector<float> small = {0.3f, 0.4f};
  const ClipResult s = ClipToNorm(absl::MakeSpan(small), 1.0);
  EXPECT_FALSE(s.clipped);
  EXPECT_EQ(s.scale, 1.0);
  EXPECT_EQ(small, (std::vector<float>{0.3f, 0.4f}));
}

TEST(PrivacyMechanismTest, ClippedNormNeverExceedsTheBound) {
  // Many directions whose float32 rounding could land above C.
  for (int k = 1; k < 200; ++k) {
    std::vector<float> x(97);
    for (size_t j = 0; j < x.size(); ++j) x[j] = std::sin(0.37f * k * (j + 1)) * (k + 0.5f);
    ClipToNorm(absl::MakeSpan(x), 0.1 * k);
    EXPECT_LE(Norm(x), 0.1 * k) << k;
  }
}

TEST(PrivacyMechanismTest, NoiseScaleOnTheGrid) {
  // d = 4: Delta = C 2^40 + sqrt(4) / 2 = 2^40 + 1 for C = 1;
  // z = 1.1: ceil(1.1 * 1099511627777) = ceil(1209462790554.7) = 1209462790555.
  EXPECT_EQ(SumSensitivityLanes(1.0, 4), kTwo40 + 1);
  TALLY_ASSERT_OK_AND_ASSIGN(uint64_t sigma, NoiseSigmaLanes(1.1, 1.0, 4));
  EXPECT_EQ(sigma, 1209462790555u);
  EXPECT_THAT(NoiseSigmaLanes(0.0, 1.0, 4), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(NoiseSigmaLanes(2000.0, 1.0, 4), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PrivacyMechanismTest, AddIntegersIsExactAndWidens) {
  ExactSum sum(2 * kExactBlockLanes + 3);
  const float one = 1.0f;
  sum.Add(5, &one, 1, 3);  // Lane 5: 3 * 2^40.
  const std::vector<int64_t> values = {-7, int64_t{1} << 61, int64_t{1} << 61};
  sum.AddIntegers(4, values.data(), 3);
  sum.AddIntegers(5, values.data() + 1, 2);  // Crosses 2^62 in lane 5 and 6: widens.
  EXPECT_EQ(static_cast<__int128>(sum.Lane(4)), -7);
  EXPECT_EQ(static_cast<__int128>(sum.Lane(5)), 3 * (__int128{1} << 40) + (__int128{1} << 62));
  EXPECT_EQ(static_cast<__int128>(sum.Lane(6)), __int128{1} << 62);
  EXPECT_EQ(sum.wide_blocks(), 1u);
  // Across a block boundary, narrow blocks stay narrow.
  std::vector<int64_t> ones(10, 1);
  sum.AddIntegers(2 * kExactBlockLanes - 5, ones.data(), 8);
  EXPECT_EQ(static_cast<__int128>(sum.Lane(2 * kExactBlockLanes + 2)), 1);
  EXPECT_EQ(sum.wide_blocks(), 1u);
}

TEST(PrivacyMechanismTest, NoisyMeanHasStdZCOverM) {
  // The sink's path: m = 10 clipped updates of value 0 summed with weight 1,
  // noise z = 1.5 at C = 0.2 on the lanes, extracted with divisor m: each
  // coordinate's standard deviation is z * Delta_lanes * 2^-40 / m
  // = 1.5 * (0.2 + sqrt(d) 2^-41) / 10 = 0.03 (the grid term is 2e-10).
  SeededTestRandom random("noisy-mean");
  constexpr size_t d = 20000;
  constexpr double z = 1.5, c = 0.2, m = 10;
  ExactSum sum(d);
  TALLY_ASSERT_OK_AND_ASSIGN(uint64_t sigma, NoiseSigmaLanes(z, c, d));
  ASSERT_THAT(AddNoiseToSum(random, sigma, sum), IsOk());
  std::vector<float> mean(d);
  sum.Extract(0, m, absl::MakeSpan(mean));
  double s1 = 0, s2 = 0;
  for (float v : mean) {
    s1 += v;
    s2 += static_cast<double>(v) * v;
  }
  const double expected_sd = z * c / m;
  EXPECT_NEAR(s1 / d, 0.0, 6 * expected_sd / std::sqrt(d));
  // sd of the sample standard deviation: about sd / sqrt(2 d).
  EXPECT_NEAR(std::sqrt(s2 / d), expected_sd, 6 * expected_sd / std::sqrt(2.0 * d));
}

TEST(PrivacyMechanismTest, LocalDpClipsThenAddsNoise) {
  SeededTestRandom random("local-dp");
  constexpr size_t d = 20000;
  std::vector<float> x(d, 0.0f);
  x[0] = 30.0f;  // ||x|| = 30 > C = 2: clipped to (2, 0, ...).
  TALLY_ASSERT_OK_AND_ASSIGN(ClipResult r, ApplyLocalDp(random, 2.0, 0.25, absl::MakeSpan(x)));
  EXPECT_TRUE(r.clipped);
  EXPECT_EQ(r.norm, 30.0);
  // Noise sd: z (C + sqrt(d) 2^-41) = 0.5 (+ 3e-11); x[0] = 2 + noise.
  double s2 = 0;
  for (size_t j = 1; j < d; ++j) s2 += static_cast<double>(x[j]) * x[j];
  EXPECT_NEAR(std::sqrt(s2 / (d - 1)), 0.5, 6 * 0.5 / std::sqrt(2.0 * (d - 1)));
  EXPECT_NEAR(x[0], 2.0, 6 * 0.5);
  std::vector<float> bad = {NAN};
  EXPECT_THAT(ApplyLocalDp(random, 1.0, 1.0, absl::MakeSpan(bad)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PrivacyMechanismTest, LocalDpEpsilonIsTheGaussianAtHalfTheMultiplier) {
  // z = 4 -> effective z / 2 = 2, q = 1: RDP(alpha) = alpha / 8; epsilon =
  // min_alpha alpha/8 + log1p(-1/alpha) - log(delta alpha)/(alpha - 1), here
  // evaluated directly.
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e, LocalDpEpsilon(4.0, 1e-5));
  double best = INFINITY;
  for (int a = 2; a <= 256; ++a) {
    best = std::min(best, a / 8.0 + std::log1p(-1.0 / a) - std::log(1e-5 * a) / (a - 1));
  }
  EXPECT_NEAR(e.epsilon, best, 1e-12);
  EXPECT_THAT(LocalDpEpsilon(0.0, 1e-5), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PrivacyMechanismTest, AdaptiveClippingFormulas) {
  // z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2): z = 1, sigma_b = 5:
  // (1 - 1/100)^(-1/2) = 1.005037815259212.
  TALLY_ASSERT_OK_AND_ASSIGN(double z_delta, UpdateNoiseMultiplier(1.0, 5.0));
  EXPECT_NEAR(z_delta, 1.005037815259212, 1e-15);
  EXPECT_THAT(UpdateNoiseMultiplier(1.0, 0.5), StatusIs(absl::StatusCode::kInvalidArgument));
  // C <- C exp(-eta (b - gamma)): C = 1, b = 0.7, gamma = 0.5, eta = 0.2: e^-0.04.
  EXPECT_NEAR(NextClipNorm(1.0, 0.7, 0.5, 0.2), 0.9607894391523232, 1e-15);
  EXPECT_NEAR(NextClipNorm(2.0, 0.5, 0.5, 0.2), 2.0, 1e-15);
}

TEST(PrivacyMechanismTest, NoisyUnclippedFraction) {
  SeededTestRandom random("count");
  // sigma_b tiny (one grid unit, 2^-17 of a count): 7 of 10 unclipped, m = 10:
  // (2*7 - 10) / 2 / 10 + 1/2 = 0.7.
  TALLY_ASSERT_OK_AND_ASSIGN(double b, NoisyUnclippedFraction(random, 7, 10, 10.0, 1e-9));
  EXPECT_NEAR(b, 0.7, 1e-3);
  // sigma_b = 2, m = 20: sd of b~ is sigma_b / m = 0.1.
  constexpr int kTrials = 5000;
  double s1 = 0, s2 = 0;
  for (int i = 0; i < kTrials; ++i) {
    TALLY_ASSERT_OK_AND_ASSIGN(double v, NoisyUnclippedFraction(random, 5, 20, 20.0, 2.0));
    s1 += v - 0.25;  // Noise-free: (10 - 20) / 2 / 20 + 1/2 = 0.25.
    s2 += (v - 0.25) * (v - 0.25);
  }
  EXPECT_NEAR(s1 / kTrials, 0.0, 6 * 0.1 / std::sqrt(kTrials));
  EXPECT_NEAR(std::sqrt(s2 / kTrials), 0.1, 6 * 0.1 / std::sqrt(2.0 * kTrials));
  EXPECT_THAT(NoisyUnclippedFraction(random, 11, 10, 10.0, 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally::privacy
