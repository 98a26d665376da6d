// compress/: the worked examples of docs/algorithms.md#int8, #qsgd and
// #sign (scaled sign with error feedback), #top-k's selections, the codec RNG
// against an independent SplitMix64 (a Python script run outside the
// project: Vigna's splitmix64.c transcribed with 64-bit masking), randk and
// spsa payloads built from it, and statistical checks of the unbiased codecs
// (QSGD, randk with rescale, spsa) over fixed seeds — deterministic, with
// tolerances of 5 standard errors computed from the variance formulas.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "compress/codec_internal.h"
#include "compress/codec_rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/compress_corpus.h"
#include "tests/status_matchers.h"

namespace tally::compress {
namespace {

using ::tally::testing::IsOk;
using testing::Bytes;
using testing::F32;
using testing::U16;
using testing::U64;

// From the outside Python SplitMix64 (seed 7 and 42, d = 70): z_j = −1 iff
// bit j mod 64 of output j / 64 is set.
const int kZ7[70] = {-1, -1, -1, 1,  -1, 1, -1, -1, -1, 1,  -1, -1, 1,  1,  1,  1,  1,  -1,
                     1,  1,  -1, -1, 1,  1, -1, 1,  1,  -1, -1, 1,  -1, 1,  1,  1,  -1, 1,
                     1,  -1, -1, -1, -1, 1, 1,  1,  1,  -1, -1, -1, -1, -1, 1,  -1, 1,  1,
                     -1, -1, -1, -1, 1,  1, 1,  -1, -1, 1,  1,  1,  -1, -1, -1, 1};
const int kZ42[70] = {-1, 1,  -1, 1,  -1, 1,  1,  -1, 1,  -1, -1, -1, 1,  -1, -1, 1,  -1, -1,
                      1,  -1, 1,  -1, -1, -1, -1, -1, -1, -1, 1,  -1, 1,  1,  1,  -1, -1, 1,
                      1,  -1, 1,  1,  1,  -1, 1,  1,  -1, -1, 1,  1,  -1, -1, -1, 1,  -1, 1,
                      -1, -1, -1, 1,  -1, -1, -1, -1, 1,  -1, -1, -1, 1,  1,  1,  1};

TEST(CodecRngTest, MatchesAnIndependentSplitMix64) {
  EXPECT_EQ(RngBits(0, 0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(RngBits(0, 1), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(RngBits(0, 2), 0x06c45d188009454fULL);
  EXPECT_EQ(RngBits(42, 0), 0xbdd732262feb6e95ULL);
  EXPECT_EQ(RngBits(42, 1), 0x28efe333b266f103ULL);
  EXPECT_EQ(RngBits(42, 2), 0x47526757130f9f52ULL);
  EXPECT_EQ(RngBits(~uint64_t{0}, 0), 0xe4d971771b652c20ULL);
  EXPECT_EQ(RngBits(~uint64_t{0}, 2), 0x382ff84cb27281e9ULL);
  EXPECT_EQ(RngUniform(42, 0), 12441394 * 0x1p-24f);
  EXPECT_EQ(RngUniform(42, 1), 2682851 * 0x1p-24f);
  EXPECT_EQ(RngUniform(42, 2), 4674151 * 0x1p-24f);
  EXPECT_EQ(RngUniform(42, 3), 5774561 * 0x1p-24f);
  std::vector<float> z(70);
  FillRademacher(7, 0, absl::MakeSpan(z));
  for (int j = 0; j < 70; ++j) EXPECT_EQ(z[j], kZ7[j]) << j;
  // Any window of the stream.
  std::vector<float> tail(9);
  FillRademacher(42, 61, absl::MakeSpan(tail));
  for (int j = 0; j < 9; ++j) EXPECT_EQ(tail[j], kZ42[61 + j]) << j;
}

TEST(CodecRngTest, UniformMoments) {
  constexpr int kN = 200000;
  double sum = 0, sq = 0;
  for (int j = 0; j < kN; ++j) {
    const double u = RngUniform(3, j);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sq += u * u;
  }
  // Standard errors: 0.29 / sqrt(kN) = 6.5e-4 for the mean.
  EXPECT_NEAR(sum / kN, 0.5, 0.004);
  EXPECT_NEAR(sq / kN, 1.0 / 3.0, 0.004);
}

// docs/algorithms.md#qsgd: v = (0.3, −0.4, 0, 1.2), ‖v‖ = 1.3, s = 4, uniforms
// (0.1, 0.9, 0.5, 0.3) → (sign, level) = (+,1), (−,1), (0,0), (+,4) →
// decoded (0.325, −0.325, 0, 1.3).
TEST(QsgdExampleTest, Section53) {
  CodecSpec spec = DefaultSpec(CodecId::kQsgd);
  spec.levels = 4;
  spec.block_size = 0;
  const std::vector<float> v = {0.3f, -0.4f, 0.0f, 1.2f};
  const std::vector<float> uniforms = {0.1f, 0.9f, 0.5f, 0.3f};
  std::string payload;
  ASSERT_THAT(internal::EncodeQsgdWithUniforms(spec, v, uniforms, &payload), IsOk());
  ASSERT_EQ(payload.size(), 6u);
  float norm;
  std::memcpy(&norm, payload.data(), 4);
  EXPECT_NEAR(norm, 1.3, 1e-6);
  // 4-bit codes (level << 1 | negative), first entry in the low nibble:
  // 2 = (+,1), 3 = (−,1), 0 = (0,0), 8 = (+,4).
  EXPECT_EQ(payload.substr(4), Bytes({0x32, 0x80}));
  std::vector<float> decoded(4);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(decoded)), IsOk());
  EXPECT_NEAR(decoded[0], 0.325, 1e-6);
  EXPECT_NEAR(decoded[1], -0.325, 1e-6);
  EXPECT_EQ(decoded[2], 0.0f);
  EXPECT_NEAR(decoded[3], 1.3, 1e-6);
}

// docs/algorithms.md#sign, γ = 1, the same gradient twice with error feedback
// (e ← p − Δ, computed here).
TEST(SignExampleTest, Section54WithErrorFeedback) {
  const CodecSpec spec = DefaultSpec(CodecId::kSign);
  const std::vector<float> g = {0.5f, -1.0f, 0.25f, 0.0f};
  std::vector<float> e(4, 0.0f), p(4), delta(4);
  std::string payload;
  for (size_t j = 0; j < 4; ++j) p[j] = g[j] + e[j];
  ASSERT_THAT(Encode(spec, p, &payload), IsOk());
  EXPECT_EQ(payload, F32({0.4375f}) + Bytes({0x0d}));  // Bits (1, 0, 1, 1).
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(delta)), IsOk());
  EXPECT_EQ(delta, (std::vector<float>{0.4375f, -0.4375f, 0.4375f, 0.4375f}));
  for (size_t j = 0; j < 4; ++j) e[j] = p[j] - delta[j];
  EXPECT_EQ(e, (std::vector<float>{0.0625f, -0.5625f, -0.1875f, -0.4375f}));

  for (size_t j = 0; j < 4; ++j) p[j] = g[j] + e[j];
  EXPECT_EQ(p, (std::vector<float>{0.5625f, -1.5625f, 0.0625f, -0.4375f}));
  ASSERT_THAT(Encode(spec, p, &payload), IsOk());
  EXPECT_EQ(payload, F32({0.65625f}) + Bytes({0x05}));  // Bits (1, 0, 1, 0).
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(delta)), IsOk());
  for (size_t j = 0; j < 4; ++j) e[j] = p[j] - delta[j];
  EXPECT_EQ(e, (std::vector<float>{-0.09375f, -0.90625f, -0.59375f, 0.21875f}));
}

// docs/algorithms.md#top-k (the DGC example's selections, ratio 0.25 of
// d = 8 → k = 2).
TEST(TopKExampleTest, Section51Selections) {
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  spec.ratio = 0.25f;
  std::string payload;
  const std::vector<float> g = {0.1f, -0.5f, 0.05f, 0.2f, -0.05f, 0.3f, 0.0f, -0.1f};
  ASSERT_THAT(Encode(spec, g, &payload), IsOk());
  // Count 2; index 1; gap 5 − 1 − 1 = 3; values.
  EXPECT_EQ(payload, Bytes({2, 1, 3}) + F32({-0.5f, 0.3f}));
  const std::vector<float> v = {0.39f, 0.1f, 0.145f, 0.58f, -0.145f, -0.4f, 0.0f, -0.29f};
  ASSERT_THAT(Encode(spec, v, &payload), IsOk());
  EXPECT_EQ(payload, Bytes({2, 3, 1}) + F32({0.58f, -0.4f}));
  std::vector<float> acc(8, 1.0f);
  ASSERT_THAT(DecodeAccumulate(spec, payload, 0.5f, absl::MakeSpan(acc)), IsOk());
  EXPECT_EQ(acc, (std::vector<float>{1, 1, 1, 1 + 0.5f * 0.58f, 1, 1 + 0.5f * -0.4f, 1, 1}));
}

TEST(TopKExampleTest, TiesGoToTheLowestIndexAndHalfValues) {
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  spec.k = 2;
  std::string payload;
  ASSERT_THAT(Encode(spec, std::vector<float>{0.5f, 1.0f, -1.0f, 1.0f}, &payload), IsOk());
  EXPECT_EQ(payload, Bytes({2, 1, 0}) + F32({1.0f, -1.0f}));
  spec.half_values = true;
  ASSERT_THAT(Encode(spec, std::vector<float>{0.0f, 3.0f, 0.0f, 0.1f}, &payload), IsOk());
  EXPECT_EQ(payload, Bytes({2, 1, 1}) + U16({0x4200, 0x2e66}));  // 3.0, 0.1 in binary16.
  // Indices >= 128 need two varint bytes: 300 = 0xac 0x02.
  std::vector<float> x(400, 0.0f);
  x[300] = 9.0f;
  x[399] = -8.0f;
  spec.half_values = false;
  ASSERT_THAT(Encode(spec, x, &payload), IsOk());
  EXPECT_EQ(payload, Bytes({2, 0xac, 0x02, 98}) + F32({9.0f, -8.0f}));
}

// randk, d = 20, k = 5, seed 5: the outside SplitMix64 selects 2, 3, 4, 11,
// 18 (RngBits(5, j) < floor(5 · 2^64 / 20)).
// docs/algorithms.md#int8: (0.3, −1.27, 0.004) in one block has scale
// s = 1.27 / 127 = 0.01 and q = (30, −127, round(0.4) = 0): 4 + 3 bytes,
// decoded (0.3, −1.27, 0).
TEST(Int8ExampleTest, OneBlockByHand) {
  CodecSpec spec = DefaultSpec(CodecId::kInt8);
  const std::vector<float> x = {0.3f, -1.27f, 0.004f};
  std::string payload;
  ASSERT_THAT(Encode(spec, x, &payload), IsOk());
  ASSERT_EQ(payload.size(), 7u);
  float scale;
  std::memcpy(&scale, payload.data(), 4);
  EXPECT_NEAR(scale, 0.01, 1e-9);
  EXPECT_EQ(payload.substr(4), Bytes({30, 0x81, 0}));  // −127 as a byte.
  std::vector<float> y(3);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
  EXPECT_THAT(y, ::testing::Pointwise(::testing::FloatNear(1e-6), {0.3f, -1.27f, 0.0f}));
}

TEST(RandKExampleTest, SelectionFromTheSharedSeed) {
  CodecSpec spec = DefaultSpec(CodecId::kRandK);
  spec.k = 5;
  spec.seed = 5;
  std::vector<float> x(20);
  for (int j = 0; j < 20; ++j) x[j] = static_cast<float>(j + 1);
  std::string payload;
  ASSERT_THAT(Encode(spec, x, &payload), IsOk());
  EXPECT_EQ(payload, Bytes({5}) + F32({3, 4, 5, 12, 19}));
  std::vector<float> y(20);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
  std::vector<float> want(20, 0.0f);
  want[2] = 12;  // Rescaled by d / k = 4.
  want[3] = 16;
  want[4] = 20;
  want[11] = 48;
  want[18] = 76;
  EXPECT_EQ(y, want);
  spec.rescale = false;
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
  EXPECT_EQ(y[18], 19.0f);
  for (int j = 0; j < 20; ++j) {
    EXPECT_EQ(RandkSelected(5, 5, 20, j), j == 2 || j == 3 || j == 4 || j == 11 || j == 18) << j;
  }
}

TEST(SpsaExampleTest, PairsDecodeToSeededPerturbations) {
  CodecSpec spec = DefaultSpec(CodecId::kSpsa);
  spec.k = 2;
  std::string payload;
  ASSERT_THAT(EncodeSpsaPairs(spec, {{7, 0.5f}, {42, -0.25f}}, &payload), IsOk());
  EXPECT_EQ(payload, U64(7) + F32({0.5f}) + U64(42) + F32({-0.25f}));
  std::vector<float> y(70), acc(70, 1.0f);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
  ASSERT_THAT(DecodeAccumulate(spec, payload, 2.0f, absl::MakeSpan(acc)), IsOk());
  for (int j = 0; j < 70; ++j) {
    EXPECT_EQ(y[j], 0.5f * kZ7[j] - 0.25f * kZ42[j]) << j;
    EXPECT_EQ(acc[j], 1.0f + 2.0f * (0.5f * kZ7[j] - 0.25f * kZ42[j])) << j;
  }
  spec.zstd = true;
  ASSERT_THAT(EncodeSpsaPairs(spec, {{7, 0.5f}}, &payload), IsOk());
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
  EXPECT_EQ(y[69], 0.5f);
  spec.zstd = false;
  EXPECT_FALSE(EncodeSpsaPairs(spec, {{1, 1.0f}, {2, 1.0f}, {3, 1.0f}}, &payload).ok());
  EXPECT_FALSE(EncodeSpsaPairs(spec, {{1, std::nanf("")}}, &payload).ok());
}

// Mean over seeds of Decode(Encode(x)) for an unbiased codec: every
// coordinate within 5 standard errors of x_j, the standard error from the
// codec's per-entry variance `variance(j)`.
template <typename Variance>
void ExpectUnbiased(CodecSpec spec, const std::vector<float>& x, int trials, Variance variance) {
  const size_t d = x.size();
  std::vector<double> mean(d, 0.0);
  std::vector<float> y(d);
  std::string payload;
  for (int t = 0; t < trials; ++t) {
    spec.seed = 1000 + t;
    ASSERT_THAT(Encode(spec, x, &payload), IsOk());
    ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
    for (size_t j = 0; j < d; ++j) mean[j] += y[j];
  }
  for (size_t j = 0; j < d; ++j) {
    mean[j] /= trials;
    const double se = std::sqrt(variance(j) / trials);
    EXPECT_LE(std::fabs(mean[j] - x[j]), 5 * se + 1e-6 * std::fabs(x[j])) << "j = " << j;
  }
}

std::vector<float> TestVector(size_t d) {
  std::vector<float> x(d);
  for (size_t j = 0; j < d; ++j) {
    x[j] = static_cast<float>(std::sin(1.7 * j + 0.3) * (1 + j % 5));
  }
  return x;
}

TEST(QsgdStatisticsTest, UnbiasedAndWithinTheVarianceBound) {
  CodecSpec spec = DefaultSpec(CodecId::kQsgd);
  spec.levels = 4;
  spec.block_size = 0;
  const std::vector<float> x = TestVector(64);
  double norm2 = 0.0;
  for (float v : x) norm2 += double{v} * v;
  const double step = std::sqrt(norm2) / spec.levels;
  // Var x̂_j = step² · p(1 − p) with p = frac(|x_j| / step).
  ExpectUnbiased(spec, x, 4000, [&](size_t j) {
    const double r = std::fabs(x[j]) / step;
    const double p = r - std::floor(r);
    return step * step * std::max(p * (1 - p), 1e-4);
  });
  // E‖Q(v) − v‖² <= min(d/s², √d/s) · ‖v‖² (= 2‖v‖² here).
  double mse = 0.0;
  std::vector<float> y(x.size());
  std::string payload;
  constexpr int kTrials = 500;
  for (int t = 0; t < kTrials; ++t) {
    spec.seed = t;
    ASSERT_THAT(Encode(spec, x, &payload), IsOk());
    ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
    for (size_t j = 0; j < x.size(); ++j) mse += std::pow(double{y[j]} - x[j], 2);
  }
  EXPECT_LE(mse / kTrials, std::min(64.0 / 16.0, 8.0 / 4.0) * norm2);
}

TEST(QsgdStatisticsTest, DifferentSeedsRoundDifferently) {
  CodecSpec spec = DefaultSpec(CodecId::kQsgd);
  const std::vector<float> x = TestVector(1000);
  std::string a, b;
  spec.seed = 1;
  ASSERT_THAT(Encode(spec, x, &a), IsOk());
  spec.seed = 2;
  ASSERT_THAT(Encode(spec, x, &b), IsOk());
  EXPECT_NE(a, b);
  EXPECT_EQ(a.substr(0, 8), b.substr(0, 8));  // Same bucket norms.
}

TEST(RandKStatisticsTest, RescaledIsUnbiasedAndCountsAverageK) {
  CodecSpec spec = DefaultSpec(CodecId::kRandK);
  spec.k = 16;
  const std::vector<float> x = TestVector(64);
  // x̂_j = 4 x_j with probability 1/4: variance 3 x_j².
  ExpectUnbiased(spec, x, 4000, [&](size_t j) { return 3.0 * x[j] * x[j]; });
  // The count is Binomial(64, 1/4): mean 16, sd sqrt(12) ≈ 3.46 per draw.
  double total = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    for (uint64_t j = 0; j < 64; ++j) total += RandkSelected(seed, 16, 64, j) ? 1 : 0;
  }
  EXPECT_NEAR(total / 2000, 16.0, 5 * std::sqrt(12.0 / 2000));
}

TEST(SpsaStatisticsTest, ProjectionIsUnbiasedWithTheStatedError) {
  CodecSpec spec = DefaultSpec(CodecId::kSpsa);
  spec.k = 1;
  const std::vector<float> x = TestVector(32);
  double norm2 = 0.0;
  for (float v : x) norm2 += double{v} * v;
  // x̂_j = (z·x) z_j: variance ‖x‖² − x_j².
  ExpectUnbiased(spec, x, 4000, [&](size_t j) { return norm2 - double{x[j]} * x[j]; });
  // E‖x̂ − x‖² = (d − 1)/k · ‖x‖². Per draw ‖x̂ − x‖² = (d − 2)(z·x)² + ‖x‖²
  // and Var (z·x)² = 2‖x‖⁴ − 2Σx_j⁴ <= 2‖x‖⁴: within 5 standard errors.
  double mse = 0.0;
  std::vector<float> y(x.size());
  std::string payload;
  for (int t = 0; t < 2000; ++t) {
    spec.seed = 77 + t;
    ASSERT_THAT(Encode(spec, x, &payload), IsOk());
    ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
    for (size_t j = 0; j < x.size(); ++j) mse += std::pow(double{y[j]} - x[j], 2);
  }
  EXPECT_NEAR(mse / 2000, 31.0 * norm2, 5 * 30.0 * std::sqrt(2.0 / 2000) * norm2);
}

}  // namespace
}  // namespace tally::compress
