// privacy { } (server/privacy_config.h): defaults, the combinations that are
// refused and why, the epsilon a plan spends (against the q = 1 closed form
// evaluated here), --print_config's comment and the Join declaration.
#include "server/privacy_config.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

tally::v1::ServerConfig Config(const std::string& text) {
  absl::StatusOr<tally::v1::ServerConfig> config = ParseConfigText(text);
  EXPECT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  return *config;
}

// Central DP with z = 10 over 50 rounds of 10 clients, plus `privacy`
// fields, other top-level fields `rest` and the rounds { } fields `rounds`.
std::string Central(const std::string& privacy = "", const std::string& rest = "",
                    const std::string& rounds = "total_rounds: 50") {
  return "checkpoint_dir: '/tmp/x' rounds { clients_per_round: 10 " + rounds +
         " } privacy { mode: 'central' noise_multiplier: 10 " + privacy + " } " + rest;
}

// q = 1: T steps of z spend min_alpha T alpha / (2 z^2) + log1p(-1/alpha)
// - log(delta alpha) / (alpha - 1) over alpha = 2..256.
double ClosedFormEpsilon(uint64_t t, double z, double delta) {
  double best = INFINITY;
  for (int a = 2; a <= 256; ++a) {
    best =
        std::min(best, t * a / (2 * z * z) + std::log1p(-1.0 / a) - std::log(delta * a) / (a - 1));
  }
  return std::max(0.0, best);
}

void ExpectInvalid(const std::string& text, const std::string& field, const std::string& why) {
  EXPECT_THAT(ValidateConfig(Config(text)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(::testing::StartsWith(field), HasSubstr(why))))
      << text;
}

TEST(PrivacyConfigTest, OffByDefaultAndFieldsWithoutModeAreRefused) {
  EXPECT_THAT(ValidateConfig(DefaultConfig()), IsOk());
  EXPECT_FALSE(PrivacyParamsFromConfig(DefaultConfig()).central);
  EXPECT_EQ(PrivacyPlanComment(DefaultConfig()), "");
  ExpectInvalid("privacy { noise_multiplier: 1 }", "privacy.mode", "mode is off");
  ExpectInvalid("privacy { mode: 'local' }", "privacy.mode", "not off or central");
  EXPECT_THAT(ValidateConfig(Config("privacy { mode: 'off' }")), IsOk());
}

TEST(PrivacyConfigTest, DefaultsOfCentral) {
  const PrivacyParams p = PrivacyParamsFromConfig(Config(Central()));
  EXPECT_TRUE(p.central);
  EXPECT_EQ(p.clip_norm, 1.0);
  EXPECT_EQ(p.delta, 1e-5);
  EXPECT_EQ(p.sampling_rate, 1.0);
  EXPECT_EQ(p.expected_clients, 10u);      // rounds.clients_per_round.
  EXPECT_EQ(p.clipped_count_stddev, 0.5);  // m / 20.
  EXPECT_EQ(p.update_noise_multiplier, 10.0);
  EXPECT_THAT(ValidateConfig(Config(Central())), IsOk());
}

TEST(PrivacyConfigTest, PlanEpsilonIsTheClosedForm) {
  TALLY_ASSERT_OK_AND_ASSIGN(PlanEpsilon plan, EpsilonForPlan(Config(Central())));
  EXPECT_TRUE(plan.bounded);
  EXPECT_FALSE(plan.stopped_by_budget);
  EXPECT_EQ(plan.steps, 50u);
  EXPECT_NEAR(plan.epsilon, ClosedFormEpsilon(50, 10, 1e-5), 1e-12);
  EXPECT_THAT(PrivacyPlanComment(Config(Central())), HasSubstr("by the last round (50)"));
}

TEST(PrivacyConfigTest, BudgetStopsTheRunAtTheLastRoundThatFits) {
  // z = 10, delta = 1e-5, budget 2.0: the largest T with epsilon(T) <= 2,
  // found here by scanning the closed form.
  uint64_t expected = 0;
  while (ClosedFormEpsilon(expected + 1, 10, 1e-5) <= 2.0) ++expected;
  ASSERT_GT(expected, 1u);
  const std::string text = Central("target_epsilon: 2");
  for (const char* rounds : {"total_rounds: 50", "total_rounds: 0"}) {
    TALLY_ASSERT_OK_AND_ASSIGN(PlanEpsilon plan,
                               EpsilonForPlan(Config(Central("target_epsilon: 2", "", rounds))));
    EXPECT_TRUE(plan.stopped_by_budget);
    EXPECT_EQ(plan.steps, expected);
    EXPECT_NEAR(plan.epsilon, ClosedFormEpsilon(expected, 10, 1e-5), 1e-12);
  }
  EXPECT_THAT(PrivacyPlanComment(Config(text)),
              HasSubstr("stops the run after " + std::to_string(expected) + " rounds"));
  // A budget larger than the whole plan does not stop it.
  TALLY_ASSERT_OK_AND_ASSIGN(PlanEpsilon loose,
                             EpsilonForPlan(Config(Central("target_epsilon: 100"))));
  EXPECT_FALSE(loose.stopped_by_budget);
  EXPECT_EQ(loose.steps, 50u);
  // Forever without a budget: unbounded.
  TALLY_ASSERT_OK_AND_ASSIGN(PlanEpsilon forever,
                             EpsilonForPlan(Config(Central("", "", "total_rounds: 0"))));
  EXPECT_FALSE(forever.bounded);
}

TEST(PrivacyConfigTest, RefusesWhatBreaksTheAnalysis) {
  ExpectInvalid(Central("", "strategy { rule: 'median' }"), "strategy.rule",
                "coordinate by coordinate");
  ExpectInvalid(Central("", "strategy { rule: 'average' }"), "strategy.rule", "num_samples");
  ExpectInvalid(Central("", "strategy { rule: 'krum' f: 1 }"), "strategy.rule", "not a sum");
  ExpectInvalid(Central("", "schedule { name: 'fedasync' }"), "schedule.name", "applied alone");
  ExpectInvalid(Central("", "schedule { name: 'fedfix' }"), "schedule.name", "fixed denominator");
  ExpectInvalid(Central("", "schedule { name: 'fedbuff' staleness { name: 'polynomial' } }"),
                "schedule.staleness", "constant");
  ExpectInvalid(Central("", "schedule { name: 'fedbuff' client_weights: 'sample_size' }"),
                "schedule.client_weights", "equal");
  ExpectInvalid(Central("", "relay { upstream: 'up:1' }"), "relay", "a relay forwards sums");
  ExpectInvalid(Central("sampling_rate: 0.5"), "privacy.sampling_rate", "Poisson");
  ExpectInvalid(Central("delta: 0"), "privacy.delta", "(0, 1)");
  ExpectInvalid(Central("clip_norm: -1"), "privacy.clip_norm", "> 0");
  ExpectInvalid("rounds { total_rounds: 5 } privacy { mode: 'central' noise_multiplier: 5000 }",
                "privacy.noise_multiplier", "sampler's range");
  ExpectInvalid(Central("target_epsilon: 0.001"), "privacy.target_epsilon", "single round");
  ExpectInvalid(
      "rounds { total_rounds: 5 } privacy { mode: 'central' noise_multiplier: 1 "
      "target_epsilon: 5 }",
      "privacy.target_epsilon", "checkpoint_dir");
  ExpectInvalid(Central("adaptive_clipping: true clipped_count_stddev: 4"),
                "privacy.clipped_count_stddev", "2 * clipped_count_stddev > noise_multiplier");
  ExpectInvalid(Central("adaptive_clipping: true target_quantile: 1"), "privacy.target_quantile",
                "(0, 1)");
}

TEST(PrivacyConfigTest, FedBuffWithConstantStalenessAndAdaptiveClipping) {
  const tally::v1::ServerConfig config =
      Config(Central("adaptive_clipping: true clipped_count_stddev: 10",
                     "schedule { name: 'fedbuff' buffer_size: 8 }"));
  EXPECT_THAT(ValidateConfig(config), IsOk());
  const PrivacyParams p = PrivacyParamsFromConfig(config);
  EXPECT_EQ(p.expected_clients, 8u);  // schedule.buffer_size.
  // z_Delta = (10^-2 - 20^-2)^(-1/2) = (0.0075)^(-1/2) = 11.547005383792516.
  EXPECT_NEAR(p.update_noise_multiplier, 11.547005383792516, 1e-12);
}

TEST(PrivacyConfigTest, LocalDpDeclaration) {
  tally::v1::LocalDpDeclaration d;
  EXPECT_THAT(ValidateLocalDpDeclaration(d), IsOk());
  EXPECT_EQ(LocalDpText(d), "");
  d.set_clip_norm(1.5);
  d.set_noise_multiplier(4);
  d.set_delta(1e-5);
  d.set_epsilon(3.25);
  EXPECT_THAT(ValidateLocalDpDeclaration(d), IsOk());
  EXPECT_EQ(LocalDpText(d), "local_dp{clip_norm=1.5 noise_multiplier=4 epsilon=3.25 delta=1e-05}");
  d.set_noise_multiplier(NAN);
  EXPECT_THAT(ValidateLocalDpDeclaration(d),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("local_dp.noise_multiplier")));
  d.set_noise_multiplier(1);
  d.set_delta(1);
  EXPECT_THAT(ValidateLocalDpDeclaration(d),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("local_dp.delta")));
}

}  // namespace
}  // namespace tally::server
