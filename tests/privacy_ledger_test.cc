// PrivacyLedger (core/privacy/ledger.h): charges add up to the accountant's
// composition, the budget check stops at the right step, runs merge, and the
// bytes round-trip and refuse damage.
#include <cmath>
#include <string>

#include "core/privacy/ledger.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::privacy {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

TEST(PrivacyLedgerTest, EmptyLedgerSpentNothing) {
  TALLY_ASSERT_OK_AND_ASSIGN(PrivacyLedger ledger, PrivacyLedger::Create(1e-5, 8.0));
  EXPECT_EQ(ledger.Spent().epsilon, 0.0);
  EXPECT_EQ(ledger.steps(), 0u);
}

TEST(PrivacyLedgerTest, FullBatchStepsMatchTheClosedForm) {
  // q = 1, z = 2, 8 steps: RDP(alpha) = 8 * alpha / 8 = alpha; epsilon =
  // min over alpha of alpha + log1p(-1/alpha) - log(delta alpha)/(alpha - 1),
  // evaluated here directly.
  TALLY_ASSERT_OK_AND_ASSIGN(PrivacyLedger ledger, PrivacyLedger::Create(1e-5, 0));
  for (int i = 0; i < 8; ++i) ASSERT_THAT(ledger.Charge(1.0, 2.0), IsOk());
  double best = INFINITY;
  for (int a = 2; a <= 256; ++a) {
    best = std::min(best, a + std::log1p(-1.0 / a) - std::log(1e-5 * a) / (a - 1));
  }
  EXPECT_NEAR(ledger.Spent().epsilon, best, 1e-12);
  EXPECT_EQ(ledger.steps(), 8u);
  EXPECT_EQ(ledger.runs().size(), 1u);
}

TEST(PrivacyLedgerTest, BudgetStopsAtTheRightStep) {
  // Budget = exactly what 5 steps spend: the 6th must not run.
  const GaussianSteps five{0.1, 1.2, 5};
  TALLY_ASSERT_OK_AND_ASSIGN(EpsilonAndOrder e5, ComputeEpsilon({&five, 1}, 1e-5));
  TALLY_ASSERT_OK_AND_ASSIGN(PrivacyLedger ledger, PrivacyLedger::Create(1e-5, e5.epsilon));
  for (int i = 0; i < 5; ++i) {
    TALLY_ASSERT_OK_AND_ASSIGN(bool can, ledger.CanCharge(0.1, 1.2));
    ASSERT_TRUE(can) << i;
    ASSERT_THAT(ledger.Charge(0.1, 1.2), IsOk());
  }
  TALLY_ASSERT_OK_AND_ASSIGN(bool can, ledger.CanCharge(0.1, 1.2));
  EXPECT_FALSE(can);
  EXPECT_DOUBLE_EQ(ledger.Spent().epsilon, e5.epsilon);
  // A step with more noise may still fit below the budget or not; a step
  // with no sampling never spends anything.
  TALLY_ASSERT_OK_AND_ASSIGN(bool free_step, ledger.CanCharge(0.0, 1.2));
  EXPECT_TRUE(free_step);
}

TEST(PrivacyLedgerTest, RoundTripsAndMergesRuns) {
  TALLY_ASSERT_OK_AND_ASSIGN(PrivacyLedger ledger, PrivacyLedger::Create(1e-6, 4.0));
  for (int i = 0; i < 3; ++i) ASSERT_THAT(ledger.Charge(0.1, 1.0), IsOk());
  for (int i = 0; i < 2; ++i) ASSERT_THAT(ledger.Charge(0.1, 2.0), IsOk());
  ASSERT_THAT(ledger.Charge(0.1, 1.0), IsOk());
  EXPECT_EQ(ledger.runs().size(), 3u);
  const std::string bytes = ledger.Serialize();
  EXPECT_EQ(bytes.size(), 4 + 8 + 8 + 4 + 3 * 24u);
  TALLY_ASSERT_OK_AND_ASSIGN(PrivacyLedger back, PrivacyLedger::Parse(bytes));
  EXPECT_EQ(back.steps(), 6u);
  EXPECT_EQ(back.delta(), 1e-6);
  EXPECT_EQ(back.target_epsilon(), 4.0);
  EXPECT_EQ(back.Spent().epsilon, ledger.Spent().epsilon);
  EXPECT_EQ(back.Serialize(), bytes);
}

TEST(PrivacyLedgerTest, RefusesDamagedBytes) {
  TALLY_ASSERT_OK_AND_ASSIGN(PrivacyLedger ledger, PrivacyLedger::Create(1e-5, 1.0));
  ASSERT_THAT(ledger.Charge(0.5, 1.0), IsOk());
  const std::string bytes = ledger.Serialize();
  EXPECT_THAT(PrivacyLedger::Parse("XXXX"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PrivacyLedger::Parse(bytes.substr(0, bytes.size() - 1)),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(PrivacyLedger::Parse(bytes + "x"), StatusIs(absl::StatusCode::kInvalidArgument));
  std::string bad_q = bytes;
  bad_q[4 + 8 + 8 + 4 + 7] = 0x40;  // The run's q becomes 0.5 * 2^(...) > 1.
  EXPECT_THAT(PrivacyLedger::Parse(bad_q), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PrivacyLedger::Create(0, 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ledger.Charge(1.5, 1.0), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally::privacy
