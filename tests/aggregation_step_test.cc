// aggregators/step/aggregation_step: the one combine -> optimizer -> finite
// check step of the server, the simulator and `tally aggregate`. Expected
// values are hand computations or docs/algorithms.md's worked examples.
#include "aggregators/step/aggregation_step.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::aggregators {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

AggregationStepOptions Robust(const std::string& rule, size_t f, std::vector<std::string> pre) {
  AggregationStepOptions options;
  options.rule.name = rule;
  options.rule.f = f;
  for (const std::string& name : pre) {
    RuleOptions step;
    step.name = name;
    step.f = f;
    options.pre_steps.push_back(step);
  }
  return options;
}

// Example R-1 of docs/algorithms.md: four honest rows and (10, -10).
std::vector<float> R1() { return {1, 1, 1.2f, 0.8f, 0.8f, 1.1f, 1.1f, 1.3f, 10, -10}; }

TEST(AggregationStepTest, KrumAfterNnmSelectsTheHonestMeanAndCreditsItsFourRows) {
  TALLY_ASSERT_OK_AND_ASSIGN(auto step, AggregationStep::Create(Robust("krum", 1, {"nnm"})));
  EXPECT_TRUE(step->robust());
  std::vector<float> batch = R1(), delta(2);
  std::vector<double> influence;
  ASSERT_THAT(step->CombineRows(absl::MakeSpan(batch), 5, {}, absl::MakeSpan(delta), &influence),
              IsOk());
  EXPECT_THAT(delta, Pointwise(FloatNear(1e-6), {1.025f, 1.05f}));
  EXPECT_THAT(influence, ElementsAre(1, 1, 1, 1, 0));
}

TEST(AggregationStepTest, RowsMergedByAPreStepAreNotAttributedAndLoseTheirWeights) {
  // Bucketing with buckets of 2 merges the rows: no influence per client.
  AggregationStepOptions options = Robust("average", 0, {"bucketing"});
  options.pre_steps[0].settings = BucketingOptions{2};
  TALLY_ASSERT_OK_AND_ASSIGN(auto step, AggregationStep::Create(options));
  std::vector<float> batch = {1, 3, 5, 7}, delta(1);
  std::vector<double> influence = {9};
  // Weights (3, 1, 0, 0) would give 2; merged rows are averaged uniformly:
  // the mean of bucket means is the plain mean, 4.
  ASSERT_THAT(
      step->CombineRows(absl::MakeSpan(batch), 4, {3, 1, 0, 0}, absl::MakeSpan(delta), &influence),
      IsOk());
  EXPECT_FLOAT_EQ(delta[0], 4.0f);
  EXPECT_TRUE(influence.empty());
}

TEST(AggregationStepTest, ApplyRunsTheOptimizerAndRefusesANonFiniteModel) {
  AggregationStepOptions options;
  options.optimizer.name = "sgd";
  options.optimizer.learning_rate = 0.5;
  TALLY_ASSERT_OK_AND_ASSIGN(auto step, AggregationStep::Create(options));
  EXPECT_FALSE(step->robust());
  EXPECT_EQ(step->rule_name(), "mean");
  const std::vector<float> current = {1, 2};
  std::vector<float> next = {2, -4};  // The aggregate on entry: w + 0.5 g = (2, 0).
  ASSERT_THAT(step->Apply(current, absl::MakeSpan(next)), IsOk());
  EXPECT_THAT(next, ElementsAre(2.0f, 0.0f));
  next = {std::numeric_limits<float>::infinity(), 0};
  EXPECT_THAT(step->Apply(current, absl::MakeSpan(next)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(step->CombineRows(absl::MakeSpan(next), 1, {}, absl::MakeSpan(next), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(AggregationStepTest, TheLinearMeanTakesNoPreSteps) {
  EXPECT_THAT(AggregationStep::Create(Robust("mean", 0, {"nnm"})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AggregationStep::Create(Robust("krumm", 0, {})),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// 0.5 * (1, 3) + 2 * (0.25, -1) + (-1) * (0.5, 0.5) = (0.5, -1), and
// 0.1 * x for x = 0.3: the coefficient is round(0.1 * 2^32) / 2^32 and the
// product rounds once at 2^-40, so the result is within 2^-33 of 0.03.
TEST(ExactCombinationTest, SumsExactlyInAnyOrderIntoAnAliasedOutput) {
  TALLY_ASSERT_OK_AND_ASSIGN(ExactCombination combination, ExactCombination::Create({0.5, 2, -1}));
  std::vector<float> a = {1, 3}, b = {0.25f, -1}, c = {0.5f, 0.5f};
  std::vector<float> out(2);
  combination.Combine({a.data(), b.data(), c.data()}, 2, out.data());
  EXPECT_THAT(out, ElementsAre(0.5f, -1.0f));
  combination.Combine({a.data(), b.data(), c.data()}, 2, a.data());  // Into row 0.
  EXPECT_THAT(a, ElementsAre(0.5f, -1.0f));

  // Order independence, bit for bit, on values whose float sums do depend
  // on the order: 1e8 + 1 - 1e8.
  TALLY_ASSERT_OK_AND_ASSIGN(ExactCombination ones, ExactCombination::Create({1, 1, 1}));
  std::vector<float> x = {1e8f}, y = {1}, z = {-1e8f}, s1(1), s2(1);
  ones.Combine({x.data(), y.data(), z.data()}, 1, s1.data());
  ones.Combine({z.data(), x.data(), y.data()}, 1, s2.data());
  EXPECT_EQ(s1[0], 1.0f);
  EXPECT_EQ(s2[0], 1.0f);

  TALLY_ASSERT_OK_AND_ASSIGN(ExactCombination tenth, ExactCombination::Create({0.1}));
  std::vector<float> v = {0.3f}, w(1);
  tenth.Combine({v.data()}, 1, w.data());
  EXPECT_NEAR(w[0], 0.1 * static_cast<double>(0.3f), std::ldexp(1.0, -33));
}

TEST(ExactCombinationTest, RefusesCoefficientsOutsideTheExactRange) {
  EXPECT_THAT(ExactCombination::Create({1, 2e6}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ExactCombination::Create({std::nan("")}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ExactCombination::Create({-1048576.0}), IsOk());
}

}  // namespace
}  // namespace tally::aggregators
