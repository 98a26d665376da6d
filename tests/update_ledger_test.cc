// server/update_ledger and server/journal_pool: the coordinator's id ledger
// and its undo-journal budget, each on its own.
#include "server/update_ledger.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/journal_pool.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(UpdateLedgerTest, AcceptedIdsAreDuplicatesUntilSixtyFourNewerOnesPushThemOut) {
  UpdateLedger ledger;
  EXPECT_FALSE(ledger.IsDuplicate("a", "u0"));
  for (int i = 0; i < 64; ++i) ledger.Accepted("a", absl::StrCat("u", i));
  EXPECT_TRUE(ledger.IsDuplicate("a", "u0"));
  EXPECT_FALSE(ledger.IsDuplicate("b", "u0"));  // Per client.
  ledger.Accepted("a", "u64");
  EXPECT_FALSE(ledger.IsDuplicate("a", "u0"));  // The 65th forgets the oldest.
  EXPECT_TRUE(ledger.IsDuplicate("a", "u1"));
  EXPECT_TRUE(ledger.AppliedIds().empty());  // Accepted is not applied.
}

TEST(UpdateLedgerTest, AppliedIdsGoToCheckpointsAndComeBackAsAcceptedAndApplied) {
  UpdateLedger ledger;
  ledger.Accepted("a", "u1");
  ledger.Applied("a", "u1");
  ledger.Applied("a", "u2");
  EXPECT_THAT(ledger.AppliedIds(), ElementsAre(Pair("a", ElementsAre("u1", "u2"))));
  UpdateLedger restored;
  restored.Restore(ledger.AppliedIds());
  EXPECT_TRUE(restored.IsDuplicate("a", "u2"));
  EXPECT_THAT(restored.AppliedIds(), ElementsAre(Pair("a", ElementsAre("u1", "u2"))));
}

// Budget 100 bytes: 60 fit in memory, another 60 do not (a file); released
// memory is reused, and idle buffers never push memory over the budget.
TEST(JournalPoolTest, InMemoryWithinTheBudgetThenFilesAndBuffersAreReused) {
  JournalPool pool(100, ::testing::TempDir());
  TALLY_ASSERT_OK_AND_ASSIGN(auto first, pool.Open(60));
  EXPECT_TRUE(first->in_memory());
  TALLY_ASSERT_OK_AND_ASSIGN(auto second, pool.Open(60));
  EXPECT_FALSE(second->in_memory());
  EXPECT_EQ(pool.reserved_bytes(), 60u);
  pool.Release(std::move(second), 60);  // A file: nothing reserved changes.
  EXPECT_EQ(pool.reserved_bytes(), 60u);
  pool.Release(std::move(first), 60);
  EXPECT_EQ(pool.reserved_bytes(), 0u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto third, pool.Open(50));  // Fits the idle 60-byte buffer.
  EXPECT_TRUE(third->in_memory());
  EXPECT_EQ(pool.reserved_bytes(), 50u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto fourth, pool.Open(50));  // 50 + 50 <= 100.
  EXPECT_TRUE(fourth->in_memory());
  TALLY_ASSERT_OK_AND_ASSIGN(auto fifth, pool.Open(1));  // 101 > 100.
  EXPECT_FALSE(fifth->in_memory());
}

}  // namespace
}  // namespace tally::server
