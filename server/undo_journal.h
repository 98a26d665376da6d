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
// journal is read only if its upload aborts. JournalPool below hands them
// out within the budget.
//
// Thread-compatible: one upload uses it at a time.
#ifndef TALLY_SERVER_UNDO_JOURNAL_H_
#define TALLY_SERVER_UNDO_JOURNAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
  uint64_t reserved_ = 0;  // JournalPool: memory budget it holds.
  absl::Time created_;     // JournalPool: when its file was created.
};

// JournalPool: the undo journals of in-flight uploads within a memory
// budget (limits.undo_memory_bytes): in memory while the journals in use
// fit in it (buffers kept for reuse within it), in a file in the spool
// directory beyond. A released file is kept open, at most `max_idle_files`
// of them, and the next upload rewrites it from the start: writing over
// pages already in the page cache costs ~2.5x less CPU than filling a new
// file (page allocation and zeroing, ext4 block reservation; 4.0 against
// 1.6 GB/s in 1 MiB writes, measured on ext4), which was ~25% of the
// server's CPU at 10 concurrent 40 MB uploads. A file is closed once it is
// `max_file_age` old, before the kernel's dirty-page writeback would write
// its pages to disk (vm.dirty_expire_centisecs, 30 s by default): closed
// unlinked files drop their pages unwritten.
//
// Thread-compatible (the coordinator calls it under its lock).
class JournalPool {
 public:
  JournalPool(uint64_t memory_bytes, std::string spool_dir, size_t max_idle_files,
              absl::Duration max_file_age)
      : memory_bytes_(memory_bytes),
        spool_dir_(std::move(spool_dir)),
        max_idle_files_(max_idle_files),
        max_file_age_(max_file_age) {}

  // A journal for an upload of `bytes` bytes, at `now`.
  absl::StatusOr<std::unique_ptr<UndoJournal>> Acquire(uint64_t bytes, absl::Time now);
  // Takes back a journal from Acquire (null: nothing).
  void Release(std::unique_ptr<UndoJournal> journal, absl::Time now);

  uint64_t memory_in_use() const { return in_use_; }
  size_t idle_files() const { return idle_files_.size(); }

 private:
  uint64_t IdleBufferBytes() const;

  const uint64_t memory_bytes_;
  const std::string spool_dir_;
  const size_t max_idle_files_;
  const absl::Duration max_file_age_;
  uint64_t in_use_ = 0;
  std::vector<std::string> idle_buffers_;
  std::vector<std::unique_ptr<UndoJournal>> idle_files_;  // In release order.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_UNDO_JOURNAL_H_
