// The noise sampler (core/privacy/discrete_gaussian.h, random_source.h):
// the exact Bernoulli(exp(-gamma)) coin, the discrete Laplace and Gaussian
// against their probability mass functions (computed here from the
// definition), symmetry, and the seeded test stream. Every statistical
// check uses a fixed seed (so the test is deterministic) and a 6-sigma bound.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/privacy/discrete_gaussian.h"
#include "core/privacy/random_source.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::privacy {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

// 6 standard deviations of a frequency of probability p over n trials.
double FrequencyBound(double p, int n) { return 6 * std::sqrt(p * (1 - p) / n); }

TEST(PrivacySamplerTest, BernoulliExpHasProbabilityExpMinusGamma) {
  SeededTestRandom random("bernoulli");
  constexpr int kTrials = 200000;
  const std::vector<std::pair<uint64_t, uint64_t>> gammas = {{1, 2}, {1, 1},   {3, 2},
                                                             {5, 3}, {7, 100}, {1000, 999}};
  for (const auto& [n, d] : gammas) {
    int ones = 0;
    for (int i = 0; i < kTrials; ++i) ones += BernoulliExp(random, n, d);
    const double p = std::exp(-static_cast<double>(n) / d);
    EXPECT_NEAR(static_cast<double>(ones) / kTrials, p, FrequencyBound(p, kTrials))
        << n << "/" << d;
  }
  // gamma = 0: always 1, exactly.
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(BernoulliExp(random, 0, 7));
}

TEST(PrivacySamplerTest, DiscreteLaplaceMatchesItsPmf) {
  // P[X = x] = (1 - e^(-1/t)) / (1 + e^(-1/t)) * e^(-|x|/t).
  SeededTestRandom random("laplace");
  constexpr int kTrials = 200000;
  constexpr uint64_t t = 3;
  std::vector<int> counts(7, 0);  // x = -3 .. 3.
  for (int i = 0; i < kTrials; ++i) {
    const int64_t x = SampleDiscreteLaplace(random, t);
    if (x >= -3 && x <= 3) ++counts[x + 3];
  }
  const double r = std::exp(-1.0 / t);
  for (int x = -3; x <= 3; ++x) {
    const double p = (1 - r) / (1 + r) * std::pow(r, std::abs(x));
    EXPECT_NEAR(static_cast<double>(counts[x + 3]) / kTrials, p, FrequencyBound(p, kTrials)) << x;
  }
}

TEST(PrivacySamplerTest, DiscreteGaussianMatchesItsPmf) {
  // sigma = 2: P[X = x] = exp(-x^2 / 8) / sum_y exp(-y^2 / 8).
  SeededTestRandom random("gaussian-pmf");
  constexpr int kTrials = 200000;
  std::vector<int64_t> samples(kTrials);
  ASSERT_THAT(SampleDiscreteGaussian(random, 2, absl::MakeSpan(samples)), IsOk());
  double norm = 0, variance = 0;
  for (int y = -60; y <= 60; ++y) {
    norm += std::exp(-y * y / 8.0);
    variance += y * y * std::exp(-y * y / 8.0);
  }
  variance /= norm;
  std::vector<int> counts(11, 0);
  double sum_sq = 0;
  for (int64_t x : samples) {
    if (x >= -5 && x <= 5) ++counts[x + 5];
    sum_sq += static_cast<double>(x * x);
  }
  for (int x = -5; x <= 5; ++x) {
    const double p = std::exp(-x * x / 8.0) / norm;
    EXPECT_NEAR(static_cast<double>(counts[x + 5]) / kTrials, p, FrequencyBound(p, kTrials)) << x;
  }
  // Sample variance: sd about variance * sqrt(2 / n) (fourth moment of a
  // near-Gaussian).
  EXPECT_NEAR(sum_sq / kTrials, variance, 6 * variance * std::sqrt(2.0 / kTrials));
}

TEST(PrivacySamplerTest, LargeSigmaMeanVarianceAndSymmetry) {
  // sigma = 0.5 * 2^40 + 12345 lanes (noise z * C = 0.5 in value units):
  // the discrete Gaussian's variance equals sigma^2 to far below the
  // sampling error at this scale (CKS 2020, Corollary 9).
  SeededTestRandom random("gaussian-large");
  constexpr int kTrials = 20000;
  const uint64_t sigma = (uint64_t{1} << 39) + 12345;
  std::vector<int64_t> samples(kTrials);
  ASSERT_THAT(SampleDiscreteGaussian(random, sigma, absl::MakeSpan(samples)), IsOk());
  double sum = 0, sum_sq = 0;
  int positive = 0, negative = 0;
  for (int64_t x : samples) {
    const double v = static_cast<double>(x) / static_cast<double>(sigma);
    sum += v;
    sum_sq += v * v;
    positive += x > 0;
    negative += x < 0;
  }
  EXPECT_NEAR(sum / kTrials, 0.0, 6 / std::sqrt(kTrials));
  EXPECT_NEAR(sum_sq / kTrials, 1.0, 6 * std::sqrt(2.0 / kTrials));
  EXPECT_LE(std::abs(positive - negative), 6 * std::sqrt(positive + negative));
}

TEST(PrivacySamplerTest, SeededStreamIsDeterministicAndSecureIsNot) {
  SeededTestRandom a("seed-1"), b("seed-1"), c("seed-2");
  std::vector<int64_t> xa(64), xb(64), xc(64);
  ASSERT_THAT(SampleDiscreteGaussian(a, 1000, absl::MakeSpan(xa)), IsOk());
  ASSERT_THAT(SampleDiscreteGaussian(b, 1000, absl::MakeSpan(xb)), IsOk());
  ASSERT_THAT(SampleDiscreteGaussian(c, 1000, absl::MakeSpan(xc)), IsOk());
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
  EXPECT_TRUE(a.insecure_test_seed());

  SecureRandom s;
  EXPECT_FALSE(s.insecure_test_seed());
  uint8_t first[32], second[32];
  s.Fill(first, sizeof(first));
  s.Fill(second, sizeof(second));
  EXPECT_NE(std::vector<uint8_t>(first, first + 32), std::vector<uint8_t>(second, second + 32));
}

TEST(PrivacySamplerTest, TestSeedOnlyFromTheEnvironment) {
  ::unsetenv(kInsecureTestSeedEnv);
  EXPECT_FALSE(NoiseRandomFromEnvironment()->insecure_test_seed());
  ::setenv(kInsecureTestSeedEnv, "", 1);
  EXPECT_FALSE(NoiseRandomFromEnvironment()->insecure_test_seed());
  ::setenv(kInsecureTestSeedEnv, "42", 1);
  EXPECT_TRUE(NoiseRandomFromEnvironment()->insecure_test_seed());
  ::unsetenv(kInsecureTestSeedEnv);
}

TEST(PrivacySamplerTest, UniformBelowIsUniform) {
  SeededTestRandom random("uniform");
  constexpr int kTrials = 120000;
  std::vector<int> counts(6, 0);
  for (int i = 0; i < kTrials; ++i) ++counts[random.UniformBelow(6)];
  for (int c : counts) {
    EXPECT_NEAR(static_cast<double>(c) / kTrials, 1.0 / 6, FrequencyBound(1.0 / 6, kTrials));
  }
}

TEST(PrivacySamplerTest, RejectsSigmaOutOfRange) {
  SeededTestRandom random("range");
  std::vector<int64_t> out(1);
  EXPECT_THAT(SampleDiscreteGaussian(random, 0, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SampleDiscreteGaussian(random, kMaxDiscreteSigma + 1, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally::privacy
