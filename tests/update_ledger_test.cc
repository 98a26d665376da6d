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

using ::tally::testing::IsOk;
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
  const absl::Time now = absl::FromUnixSeconds(1000);
  JournalPool pool(100, ::testing::TempDir());
  TALLY_ASSERT_OK_AND_ASSIGN(auto first, pool.Open(60, now));
  EXPECT_TRUE(first->in_memory());
  TALLY_ASSERT_OK_AND_ASSIGN(auto second, pool.Open(60, now));
  EXPECT_FALSE(second->in_memory());
  EXPECT_EQ(pool.reserved_bytes(), 60u);
  pool.Release(std::move(second), 60, now);  // A file: nothing reserved changes.
  EXPECT_EQ(pool.reserved_bytes(), 60u);
  pool.Release(std::move(first), 60, now);
  EXPECT_EQ(pool.reserved_bytes(), 0u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto third, pool.Open(50, now));  // Fits the idle 60-byte buffer.
  EXPECT_TRUE(third->in_memory());
  EXPECT_EQ(pool.reserved_bytes(), 50u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto fourth, pool.Open(50, now));  // 50 + 50 <= 100.
  EXPECT_TRUE(fourth->in_memory());
  TALLY_ASSERT_OK_AND_ASSIGN(auto fifth, pool.Open(1, now));  // 101 > 100.
  EXPECT_FALSE(fifth->in_memory());
}

// A released file is the next spilled upload's, rewound: it replays only
// what the new upload appended, not the longer content before it.
TEST(JournalPoolTest, ReusedFileReplaysOnlyTheNewUpload) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  JournalPool pool(0, ::testing::TempDir(), /*max_idle_files=*/1, absl::Seconds(20));
  TALLY_ASSERT_OK_AND_ASSIGN(auto first, pool.Open(8000, now));
  ASSERT_FALSE(first->in_memory());
  ASSERT_THAT(first->Append(std::string(8000, 'a').data(), 8000), IsOk());
  pool.Release(std::move(first), 8000, now);
  ASSERT_EQ(pool.idle_files(), 1u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto second, pool.Open(12, now + absl::Seconds(1)));
  EXPECT_EQ(pool.idle_files(), 0u);
  EXPECT_EQ(second->size(), 0u);
  ASSERT_THAT(second->Append("0123456789ab", 12), IsOk());
  std::string replayed;
  ASSERT_THAT(second->Replay([&](uint64_t, const char* block, size_t size) {
    replayed.append(block, size);
  }),
              IsOk());
  EXPECT_EQ(replayed, "0123456789ab");
}

// Files are kept at most max_idle_files at a time, and never past
// max_file_age (from their creation), released or idle.
TEST(JournalPoolTest, IdleFilesAreCappedAndRetireWithAge) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  JournalPool pool(0, ::testing::TempDir(), /*max_idle_files=*/1, absl::Seconds(20));
  TALLY_ASSERT_OK_AND_ASSIGN(auto a, pool.Open(4, t0));
  TALLY_ASSERT_OK_AND_ASSIGN(auto b, pool.Open(4, t0));
  pool.Release(std::move(a), 4, t0);
  pool.Release(std::move(b), 4, t0);
  EXPECT_EQ(pool.idle_files(), 1u);  // The cap.
  // 25 s later the idle file is too old: a new one is created.
  TALLY_ASSERT_OK_AND_ASSIGN(auto c, pool.Open(4, t0 + absl::Seconds(25)));
  EXPECT_EQ(pool.idle_files(), 0u);
  // Released 19 s after its creation, c is kept; d (c again) released 21 s
  // after it is closed.
  pool.Release(std::move(c), 4, t0 + absl::Seconds(44));
  EXPECT_EQ(pool.idle_files(), 1u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto d, pool.Open(4, t0 + absl::Seconds(44)));
  pool.Release(std::move(d), 4, t0 + absl::Seconds(46));
  EXPECT_EQ(pool.idle_files(), 0u);
}

}  // namespace
}  // namespace tally::server
