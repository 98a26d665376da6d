// server/undo_journal: what an upload appended comes back exactly, from
// memory or from a temporary file.
#include "server/undo_journal.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

TEST(UndoJournalTest, ReplaysExactlyWhatWasAppended) {
  TALLY_ASSERT_OK_AND_ASSIGN(auto journal, server::UndoJournal::Open(::testing::TempDir()));
  std::vector<float> data(700000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i) * 0.5f;
  const char* bytes = reinterpret_cast<const char*>(data.data());
  ASSERT_THAT(journal->Append(bytes, 1000 * 4), IsOk());
  ASSERT_THAT(journal->Append(bytes + 4000, (data.size() - 1000) * 4), IsOk());
  EXPECT_EQ(journal->size(), data.size() * 4);
  std::vector<float> replayed(data.size(), -1.0f);
  uint64_t seen = 0;
  ASSERT_THAT(journal->Replay([&](uint64_t offset, const char* block, size_t size) {
    EXPECT_EQ(offset, seen);
    EXPECT_EQ(size % 4, 0u);
    std::memcpy(reinterpret_cast<char*>(replayed.data()) + offset, block, size);
    seen += size;
  }),
              IsOk());
  EXPECT_EQ(replayed, data);
}

TEST(UndoJournalTest, InMemoryJournalReplaysInBlocksAndKeepsItsBuffer) {
  std::string buffer;
  buffer.reserve(3 << 20);
  auto journal = server::UndoJournal::InMemory(std::move(buffer));
  EXPECT_TRUE(journal->in_memory());
  std::string data(2500000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31);
  ASSERT_THAT(journal->Append(data.data(), 1000), IsOk());
  ASSERT_THAT(journal->Append(data.data() + 1000, data.size() - 1000), IsOk());
  std::string replayed;
  ASSERT_THAT(journal->Replay([&](uint64_t offset, const char* block, size_t size) {
    EXPECT_EQ(offset, replayed.size());
    EXPECT_LE(size, 1u << 20);
    replayed.append(block, size);
  }),
              IsOk());
  EXPECT_EQ(replayed, data);
  EXPECT_GE(journal->TakeBuffer().capacity(), data.size());
}

TEST(UndoJournalTest, FileJournalAppendsManyPiecesInOrder) {
  TALLY_ASSERT_OK_AND_ASSIGN(auto journal, server::UndoJournal::Open(::testing::TempDir()));
  EXPECT_FALSE(journal->in_memory());
  std::string data(300 * 1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13 + 1);
  std::vector<absl::string_view> pieces;  // 300 pieces: more than one writev batch.
  for (size_t i = 0; i < data.size(); i += 1000)
    pieces.push_back(absl::string_view(data).substr(i, 1000));
  ASSERT_THAT(journal->Append(data.data(), 0), IsOk());
  ASSERT_THAT(journal->AppendPieces(pieces), IsOk());
  EXPECT_EQ(journal->size(), data.size());
  std::string replayed;
  ASSERT_THAT(journal->Replay(
                  [&](uint64_t, const char* block, size_t size) { replayed.append(block, size); }),
              IsOk());
  EXPECT_EQ(replayed, data);
}

TEST(UndoJournalTest, UnwritableDirectoryIsAnError) {
  EXPECT_THAT(server::UndoJournal::Open("/nonexistent/dir"), StatusIs(absl::StatusCode::kInternal));
}

std::string Replayed(const server::UndoJournal& journal) {
  std::string replayed;
  EXPECT_THAT(journal.Replay(
                  [&](uint64_t, const char* block, size_t size) { replayed.append(block, size); }),
              IsOk());
  return replayed;
}

// Budget 1000 bytes: uploads of 600 and 400 fit in memory, a third of 100
// does not (1100 > 1000) and goes to a file; releasing frees the budget.
TEST(JournalPoolTest, MemoryWithinTheBudgetFilesBeyond) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  server::JournalPool pool(1000, ::testing::TempDir(), /*max_idle_files=*/2, absl::Seconds(20));
  TALLY_ASSERT_OK_AND_ASSIGN(auto a, pool.Acquire(600, now));
  TALLY_ASSERT_OK_AND_ASSIGN(auto b, pool.Acquire(400, now));
  TALLY_ASSERT_OK_AND_ASSIGN(auto c, pool.Acquire(100, now));
  EXPECT_TRUE(a->in_memory());
  EXPECT_TRUE(b->in_memory());
  EXPECT_FALSE(c->in_memory());
  EXPECT_EQ(pool.memory_in_use(), 1000u);
  pool.Release(std::move(a), now);
  EXPECT_EQ(pool.memory_in_use(), 400u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto d, pool.Acquire(500, now));
  EXPECT_TRUE(d->in_memory());
  pool.Release(std::move(b), now);
  pool.Release(std::move(c), now);
  pool.Release(std::move(d), now);
  EXPECT_EQ(pool.memory_in_use(), 0u);
  EXPECT_EQ(pool.idle_files(), 1u);
}

// A released file is the next spilled upload's, rewound: it replays only
// what the new upload appended, not the longer content before it.
TEST(JournalPoolTest, ReusedFileReplaysOnlyTheNewUpload) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  server::JournalPool pool(0, ::testing::TempDir(), /*max_idle_files=*/1, absl::Seconds(20));
  TALLY_ASSERT_OK_AND_ASSIGN(auto first, pool.Acquire(8000, now));
  ASSERT_FALSE(first->in_memory());
  ASSERT_THAT(first->Append(std::string(8000, 'a').data(), 8000), IsOk());
  pool.Release(std::move(first), now);
  ASSERT_EQ(pool.idle_files(), 1u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto second, pool.Acquire(12, now + absl::Seconds(1)));
  EXPECT_EQ(pool.idle_files(), 0u);
  EXPECT_EQ(second->size(), 0u);
  ASSERT_THAT(second->Append("0123456789ab", 12), IsOk());
  EXPECT_EQ(Replayed(*second), "0123456789ab");
}

// Files are kept at most max_idle_files at a time, and never past
// max_file_age (from their creation), released or idle.
TEST(JournalPoolTest, IdleFilesAreCappedAndRetireWithAge) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  server::JournalPool pool(0, ::testing::TempDir(), /*max_idle_files=*/1, absl::Seconds(20));
  TALLY_ASSERT_OK_AND_ASSIGN(auto a, pool.Acquire(4, t0));
  TALLY_ASSERT_OK_AND_ASSIGN(auto b, pool.Acquire(4, t0));
  pool.Release(std::move(a), t0);
  pool.Release(std::move(b), t0);
  EXPECT_EQ(pool.idle_files(), 1u);  // The cap.
  // 25 s later the idle file is too old: a new one is created.
  TALLY_ASSERT_OK_AND_ASSIGN(auto c, pool.Acquire(4, t0 + absl::Seconds(25)));
  EXPECT_EQ(pool.idle_files(), 0u);
  // Released 25 s after its creation (45 s after t0), c is kept; released
  // past its age, a file is closed.
  pool.Release(std::move(c), t0 + absl::Seconds(44));
  EXPECT_EQ(pool.idle_files(), 1u);
  TALLY_ASSERT_OK_AND_ASSIGN(auto d, pool.Acquire(4, t0 + absl::Seconds(44)));
  pool.Release(std::move(d), t0 + absl::Seconds(46));
  EXPECT_EQ(pool.idle_files(), 0u);
}

}  // namespace
}  // namespace tally
