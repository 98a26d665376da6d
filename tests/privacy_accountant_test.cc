// The privacy accountant (core/privacy/accountant.h): hand-computed values,
// published values of an independent implementation, and its properties.
// tests/privacy_reference_test.py checks more values against an mpmath
// integration of the definition of A_alpha.
#include <cmath>
#include <vector>

#include "core/privacy/accountant.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::privacy {
namespace {

using ::tally::testing::StatusIs;

TEST(PrivacyAccountantTest, FullBatchIsTheGaussianClosedForm) {
  // q = 1: RDP(alpha) = alpha / (2 z^2); alpha = 10, z = 2: 10 / 8.
  EXPECT_DOUBLE_EQ(SampledGaussianRdp(1.0, 2.0, 10), 1.25);
  EXPECT_DOUBLE_EQ(SampledGaussianRdp(1.0, 0.5, 2), 4.0);  // 2 / (2 * 0.25).
}

TEST(PrivacyAccountantTest, OrderTwoByHand) {
  // alpha = 2, q = 1/2, z = 1: A_2 = (1-q)^2 + 2 q (1-q) e^0 + q^2 e^((4-2)/2)
  // = 0.25 + 0.5 + 0.25 e, RDP(2) = log(A_2) / 1 = 0.35737401950878844.
  EXPECT_NEAR(SampledGaussianRdp(0.5, 1.0, 2), 0.35737401950878844, 1e-14);
  EXPECT_NEAR(SampledGaussianRdp(0.5, 1.0, 2), std::log(0.75 + 0.25 * std::exp(1.0)), 1e-14);
}

TEST(PrivacyAccountantTest, MatchesPublishedPoissonSampledGaussian) {
  // google/differential-privacy, python/dp_accounting/dp_accounting/rdp/
  // rdp_privacy_accountant_test.py, test_compute_rdp_poisson_sampled_gaussian:
  // q = 0.01, z = 2.5, 50 steps: RDP at orders 5, 50, 100 (rtol 1e-4 there).
  const GaussianSteps steps{0.01, 2.5, 50};
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<double> rdp, ComposedRdp({&steps, 1}));
  EXPECT_NEAR(rdp[5 - kMinOrder] / 2.18075656e-03, 1.0, 1e-6);
  EXPECT_NEAR(rdp[50 - kMinOrder] / 2.38460375e-02, 1.0, 1e-6);
  EXPECT_NEAR(rdp[100 - kMinOrder] / 1.67416308e02, 1.0, 1e-6);
}

TEST(PrivacyAccountantTest, ConversionMatchesPublishedPureDpExample) {
  // Same file, test_compute_epsilon_delta_pure_dp: RDP = 1.1 at orders
  // 2..32, delta = 1e-5 -> epsilon = 1.32783806176 at order 32.
  std::vector<int> orders;
  for (int a = 2; a <= 32; ++a) orders.push_back(a);
  const std::vector<double> rdp(orders.size(), 1.1);
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e, EpsilonFromRdp(orders, rdp, 1e-5));
  EXPECT_NEAR(e.epsilon, 1.32783806176, 1e-9);
  EXPECT_EQ(e.order, 32);
}

TEST(PrivacyAccountantTest, ZeroEpsilonRule) {
  // delta = 0.1: delta^2 + expm1(-r) > 0 iff r < -log(1 - 0.01) = 0.01005...
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder small, EpsilonFromRdp({2}, {0.005}, 0.1));
  EXPECT_EQ(small.epsilon, 0.0);
  // r = 0.02 at order 2: 0.02 + log(1/2) - log(0.2) = 0.936290731874155.
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder large, EpsilonFromRdp({2}, {0.02}, 0.1));
  EXPECT_NEAR(large.epsilon, 0.936290731874155, 1e-14);
  // Nothing sampled: nothing spent.
  const GaussianSteps none{0.0, 1.0, 1000};
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder zero, ComputeEpsilon({&none, 1}, 1e-5));
  EXPECT_EQ(zero.epsilon, 0.0);
}

TEST(PrivacyAccountantTest, NoNoiseIsInfinite) {
  const GaussianSteps steps{0.1, 0.0, 1};
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e, ComputeEpsilon({&steps, 1}, 1e-5));
  EXPECT_TRUE(std::isinf(e.epsilon));
}

TEST(PrivacyAccountantTest, MonotoneInStepsAndDecreasingInNoise) {
  double previous = 0;
  for (uint64_t t : {1, 10, 100, 1000, 10000}) {
    const GaussianSteps steps{0.01, 1.1, t};
    TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e, ComputeEpsilon({&steps, 1}, 1e-5));
    EXPECT_GT(e.epsilon, previous) << t;
    previous = e.epsilon;
  }
  previous = INFINITY;
  for (double z : {0.5, 0.8, 1.0, 1.5, 2.0, 4.0, 8.0}) {
    const GaussianSteps steps{0.05, z, 500};
    TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e, ComputeEpsilon({&steps, 1}, 1e-5));
    EXPECT_LT(e.epsilon, previous) << z;
    previous = e.epsilon;
  }
}

TEST(PrivacyAccountantTest, HeterogeneousStepsCompose) {
  // RDP adds: two kinds of steps equal the sum of their RDPs at every order.
  const std::vector<GaussianSteps> both = {{0.1, 1.0, 30}, {0.1, 4.0, 30}};
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<double> rdp, ComposedRdp(both));
  for (int a : {2, 17, 256}) {
    const double expected =
        30 * (SampledGaussianRdp(0.1, 1.0, a) + SampledGaussianRdp(0.1, 4.0, a));
    EXPECT_NEAR(rdp[a - kMinOrder], expected, 1e-12 * expected) << a;
  }
}

TEST(PrivacyAccountantTest, NoiseMultiplierForEpsilonIsTheSmallestThatFits) {
  TALLY_ASSERT_OK_AND_ASSIGN(double z, NoiseMultiplierForEpsilon(0.01, 1000, 1e-5, 2.0));
  const GaussianSteps at{0.01, z, 1000}, below{0.01, z * (1 - 1e-5), 1000};
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e_at, ComputeEpsilon({&at, 1}, 1e-5));
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e_below, ComputeEpsilon({&below, 1}, 1e-5));
  EXPECT_LE(e_at.epsilon, 2.0);
  EXPECT_GT(e_below.epsilon, 2.0);
}

TEST(PrivacyAccountantTest, RejectsBadArguments) {
  const GaussianSteps bad_q{1.5, 1.0, 1}, bad_z{0.5, -1.0, 1};
  EXPECT_THAT(ComposedRdp({&bad_q, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ComposedRdp({&bad_z, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(EpsilonFromRdp({2}, {1.0}, 0.0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(EpsilonFromRdp({2}, {1.0}, 1.0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(NoiseMultiplierForEpsilon(0.01, 10, 1e-5, 0.0),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally::privacy
