#include "server/journal_pool.h"

#include <utility>

namespace tally::server {

uint64_t JournalPool::IdleBytes() const {
  uint64_t idle = 0;
  for (const std::string& buffer : idle_) idle += buffer.capacity();
  return idle;
}

absl::StatusOr<std::unique_ptr<UndoJournal>> JournalPool::Open(uint64_t bytes) {
  if (reserved_ + bytes > budget_) return UndoJournal::Open(spool_dir_);
  reserved_ += bytes;
  std::string buffer;
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (it->capacity() >= bytes) {
      buffer = std::move(*it);
      idle_.erase(it);
      break;
    }
  }
  if (buffer.capacity() < bytes) {
    // A new buffer: first shed idle ones so that reserved plus idle memory
    // stays within the budget.
    uint64_t idle = IdleBytes();
    while (!idle_.empty() && idle + reserved_ > budget_) {
      idle -= idle_.back().capacity();
      idle_.pop_back();
    }
    buffer = std::string();
    buffer.reserve(bytes);
  }
  return UndoJournal::InMemory(std::move(buffer));
}

void JournalPool::Release(std::unique_ptr<UndoJournal> journal, uint64_t bytes) {
  if (journal == nullptr || !journal->in_memory()) return;
  reserved_ -= bytes;
  std::string buffer = journal->TakeBuffer();
  if (IdleBytes() + buffer.capacity() <= budget_) idle_.push_back(std::move(buffer));
}

}  // namespace tally::server
