#include "server/journal_pool.h"

#include <algorithm>
#include <utility>

#include "core/status_macros.h"

namespace tally::server {

uint64_t JournalPool::IdleBytes() const {
  uint64_t idle = 0;
  for (const std::string& buffer : idle_) idle += buffer.capacity();
  return idle;
}

absl::StatusOr<std::unique_ptr<UndoJournal>> JournalPool::OpenFile(absl::Time now) {
  idle_files_.erase(std::remove_if(idle_files_.begin(), idle_files_.end(),
                                   [&](const std::unique_ptr<UndoJournal>& file) {
                                     return now - file->created_ >= max_file_age_;
                                   }),
                    idle_files_.end());
  if (!idle_files_.empty()) {  // The most recently released: its pages are the warmest.
    std::unique_ptr<UndoJournal> journal = std::move(idle_files_.back());
    idle_files_.pop_back();
    TALLY_RETURN_IF_ERROR(journal->Rewind());
    return journal;
  }
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<UndoJournal> journal, UndoJournal::Open(spool_dir_));
  journal->created_ = now;
  return journal;
}

absl::StatusOr<std::unique_ptr<UndoJournal>> JournalPool::Open(uint64_t bytes, absl::Time now) {
  if (reserved_ + bytes > budget_) return OpenFile(now);
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

void JournalPool::Release(std::unique_ptr<UndoJournal> journal, uint64_t bytes, absl::Time now) {
  if (journal == nullptr) return;
  if (!journal->in_memory()) {
    if (now - journal->created_ < max_file_age_ && idle_files_.size() < max_idle_files_) {
      idle_files_.push_back(std::move(journal));
    }
    return;
  }
  reserved_ -= bytes;
  std::string buffer = journal->TakeBuffer();
  if (IdleBytes() + buffer.capacity() <= budget_) idle_.push_back(std::move(buffer));
}

}  // namespace tally::server
