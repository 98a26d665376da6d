// UndoJournal: the bytes of one in-flight update, kept so that its partial
// contribution can be subtracted from the round's running sum if the upload
// never completes (client died, stream truncated, NaN in a later chunk, round
// closed under it).
//
// The weighted mean is accumulated chunk by chunk as bytes arrive, so the
// sum is O(model) however many clients upload at once, but excluding a
// half-received update exactly needs the half it sent. A journal keeps it
// either in memory (a buffer from a budget-bounded pool: one memcpy per byte)
// or, once the budget is spent, in an unlinked temporary file (page cache,
// outside the process's RSS, but ~5x the CPU per byte in measurements). So
// memory stays O(model + budget) for any number of concurrent uploads. A
// journal is read only if its upload aborts. server/journal_pool.h hands
// them out within the budget.
//
// Thread-compatible: one upload uses it at a time.
#ifndef TALLY_SERVER_UNDO_JOURNAL_H_
#define TALLY_SERVER_UNDO_JOURNAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace tally::server {

class UndoJournal {
 public:
  // Creates an anonymous file in `dir` (O_TMPFILE, or mkstemp + unlink).
  static absl::StatusOr<std::unique_ptr<UndoJournal>> Open(const std::string& dir);
  // A journal that appends to `buffer` (cleared; its capacity is kept).
  static std::unique_ptr<UndoJournal> InMemory(std::string buffer);
  ~UndoJournal();
  UndoJournal(const UndoJournal&) = delete;
  UndoJournal& operator=(const UndoJournal&) = delete;

  // Empties the journal (a file keeps its pages: overwriting them is what
  // makes reusing it cheap).
  absl::Status Rewind();

  absl::Status Append(const char* data, size_t size);
  // Appends the pieces in order (one writev for a file journal).
  absl::Status AppendPieces(absl::Span<const absl::string_view> pieces);
  uint64_t size() const { return size_; }
  bool in_memory() const { return fd_ < 0; }
  // The in-memory buffer, for reuse (empty for a file journal).
  std::string TakeBuffer() { return std::move(buffer_); }

  // Calls fn(byte_offset, data, size) over everything appended, in order, in
  // blocks of at most 1 MiB (a multiple of 4 bytes).
  absl::Status Replay(const std::function<void(uint64_t, const char*, size_t)>& fn) const;

 private:
  friend class JournalPool;
  explicit UndoJournal(int fd) : fd_(fd) {}
  int fd_;  // -1: in memory.
  std::string buffer_;
  uint64_t size_ = 0;
  absl::Time created_;  // JournalPool: when its file was created.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_UNDO_JOURNAL_H_
