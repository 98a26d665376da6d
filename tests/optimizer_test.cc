// Server optimizers against the worked examples of
// docs/algorithms.md#server-optimizers
// (numbers from its independent reference script ref_compress.py).
#include "aggregators/optimizers/optimizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::aggregators {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

struct Step {
  float m, v, w;  // Expected state and model after the step.
};

// Applies deltas 0.5 then -0.2 to w0 = 1 and checks (m, v, w) after each.
void ExpectTrajectory(OptimizerOptions options, const Step (&expected)[2], double tol) {
  auto made = CreateOptimizer(options);
  ASSERT_THAT(made, IsOk());
  Optimizer& opt = **made;
  std::vector<float> w = {1.0f};
  const float deltas[2] = {0.5f, -0.2f};
  for (int k = 0; k < 2; ++k) {
    std::vector<float> inout = {deltas[k]};
    opt.Apply(w, absl::MakeSpan(inout));
    w = inout;
    auto state = opt.MutableState();
    ASSERT_EQ(state.size(), 2u);
    EXPECT_NEAR((*state[0].second)[0], expected[k].m, tol * std::abs(expected[k].m)) << k;
    EXPECT_NEAR((*state[1].second)[0], expected[k].v, tol * std::abs(expected[k].v)) << k;
    EXPECT_NEAR(w[0], expected[k].w, tol * std::abs(expected[k].w)) << k;
  }
}

OptimizerOptions Reddi(const char* name) {
  OptimizerOptions o;
  o.name = name;
  o.learning_rate = 0.1;
  o.tau = 1e-3;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  return o;
}

TEST(OptimizerTest, FedAdagradMatchesTheWorkedExample) {
  ExpectTrajectory(Reddi("fedadagrad"),
                   {{0.05f, 0.250001f, 1.00998002f}, {0.025f, 0.290001f, 1.01461379f}}, 2e-6);
}

TEST(OptimizerTest, FedAdamMatchesTheWorkedExample) {
  ExpectTrajectory(Reddi("fedadam"),
                   {{0.05f, 0.00250099f, 1.09802019f}, {0.025f, 0.0028759801f, 1.14378413f}}, 2e-6);
}

TEST(OptimizerTest, FedYogiMatchesTheWorkedExample) {
  ExpectTrajectory(Reddi("fedyogi"),
                   {{0.05f, 0.002501f, 1.09802f}, {0.025f, 0.002901f, 1.14358977f}}, 2e-6);
}

TEST(OptimizerTest, FedAvgMMatchesTheWorkedExample) {
  OptimizerOptions o;
  o.name = "fedavgm";
  o.momentum = 0.9;
  TALLY_ASSERT_OK_AND_ASSIGN(auto opt, CreateOptimizer(o));
  std::vector<float> w = {1.0f};
  std::vector<float> d1 = {0.5f};
  opt->Apply(w, absl::MakeSpan(d1));
  EXPECT_FLOAT_EQ(d1[0], 1.5f);  // v = 0.5.
  std::vector<float> d2 = {-0.2f};
  opt->Apply(d1, absl::MakeSpan(d2));
  EXPECT_FLOAT_EQ(d2[0], 1.75f);  // v = 0.9 * 0.5 - 0.2 = 0.25.
  EXPECT_FLOAT_EQ((*opt->MutableState()[0].second)[0], 0.25f);
}

// DiLoCo: outer gradient 0.2 then 0.1, i.e. tally deltas -0.2 then -0.1;
// (b, step, theta) = (0.2, 0.38, 0.734), (0.28, 0.352, 0.4876).
TEST(OptimizerTest, NesterovOuterStepMatchesTheWorkedExample) {
  OptimizerOptions o;
  o.name = "nesterov";  // Defaults: lr 0.7, momentum 0.9.
  TALLY_ASSERT_OK_AND_ASSIGN(auto opt, CreateOptimizer(o));
  std::vector<float> theta = {1.0f};
  std::vector<float> d1 = {-0.2f};
  opt->Apply(theta, absl::MakeSpan(d1));
  EXPECT_NEAR(d1[0], 0.734f, 1e-6);
  EXPECT_NEAR((*opt->MutableState()[0].second)[0], 0.2f, 1e-7);
  std::vector<float> d2 = {-0.1f};
  opt->Apply(d1, absl::MakeSpan(d2));
  EXPECT_NEAR(d2[0], 0.4876f, 1e-6);
  EXPECT_NEAR((*opt->MutableState()[0].second)[0], 0.28f, 1e-7);
}

TEST(OptimizerTest, DefaultsAndValidation) {
  EXPECT_EQ(DefaultLearningRate("fedadam"), 0.1);
  EXPECT_EQ(DefaultLearningRate("nesterov"), 0.7);
  EXPECT_EQ(DefaultLearningRate("sgd"), 1.0);
  OptimizerOptions o;
  o.name = "fedadam";
  o.beta2 = 1.5;
  EXPECT_THAT(CreateOptimizer(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.beta2 = -1;
  o.tau = 0;
  EXPECT_THAT(CreateOptimizer(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.name = "lamb";
  o.tau = -1;
  EXPECT_THAT(CreateOptimizer(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.name = "sgd";
  TALLY_ASSERT_OK_AND_ASSIGN(auto sgd, CreateOptimizer(o));
  EXPECT_TRUE(sgd->MutableState().empty());
}

// The server applies optimizers block by block (Prepare, then ApplyRange in
// any order): the result and the state must equal one whole Apply.
TEST(OptimizerTest, BlockwiseApplyRangeEqualsWholeApply) {
  for (const std::string& name : OptimizerNames()) {
    OptimizerOptions options;
    options.name = name;
    options.learning_rate = DefaultLearningRate(name);
    auto whole = CreateOptimizer(options);
    auto blocks = CreateOptimizer(options);
    ASSERT_THAT(whole, IsOk());
    ASSERT_THAT(blocks, IsOk());
    std::vector<float> w(10), a(10), b(10);
    for (int i = 0; i < 10; ++i) w[i] = 0.1f * static_cast<float>(i);
    for (int step = 0; step < 3; ++step) {
      std::vector<float> delta(10);
      for (int i = 0; i < 10; ++i) delta[i] = 0.3f * static_cast<float>(i - 4 + step);
      a = delta;
      b = delta;
      (*whole)->Apply(w, absl::MakeSpan(a));
      (*blocks)->Prepare(10);
      (*blocks)->ApplyRange(w.data() + 6, b.data() + 6, 6, 4);  // Later block first.
      (*blocks)->ApplyRange(w.data(), b.data(), 0, 6);
      EXPECT_EQ(a, b) << name << " step " << step;
      w = a;
    }
    auto sa = (*whole)->MutableState();
    auto sb = (*blocks)->MutableState();
    ASSERT_EQ(sa.size(), sb.size()) << name;
    for (size_t k = 0; k < sa.size(); ++k) EXPECT_EQ(*sa[k].second, *sb[k].second) << name;
  }
}

}  // namespace
}  // namespace tally::aggregators
