// JournalPool: hands out the undo journals of in-flight uploads
// (server/undo_journal.h) within a memory budget (limits.undo_memory_bytes).
// An upload whose journal fits in what is left of the budget gets an
// in-memory journal, reusing an idle buffer when one is large enough; beyond
// the budget it gets a file journal in the spool directory. Idle buffers are
// kept for reuse as long as idle plus reserved bytes stay within the budget,
// so memory for journals never exceeds it.
//
// Thread-compatible: the coordinator keeps it under its mutex.
#ifndef TALLY_SERVER_JOURNAL_POOL_H_
#define TALLY_SERVER_JOURNAL_POOL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/undo_journal.h"

namespace tally::server {

class JournalPool {
 public:
  JournalPool(uint64_t budget_bytes, std::string spool_dir)
      : budget_(budget_bytes), spool_dir_(std::move(spool_dir)) {}

  // A journal for an upload of `bytes` bytes (an error only if a file
  // journal cannot be created).
  absl::StatusOr<std::unique_ptr<UndoJournal>> Open(uint64_t bytes);
  // Gives back a journal Open(bytes) returned; its memory may be reused.
  void Release(std::unique_ptr<UndoJournal> journal, uint64_t bytes);

  uint64_t reserved_bytes() const { return reserved_; }

 private:
  uint64_t IdleBytes() const;

  const uint64_t budget_;
  const std::string spool_dir_;
  uint64_t reserved_ = 0;          // Held by in-memory journals in use.
  std::vector<std::string> idle_;  // Buffers of released in-memory journals.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_JOURNAL_POOL_H_
