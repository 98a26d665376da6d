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

}  // namespace
}  // namespace tally
