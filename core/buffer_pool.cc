#include "core/buffer_pool.h"

#include <utility>

namespace tally {

std::vector<float> BufferPool::Take() {
  {
    tally::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      std::vector<float> buffer = std::move(idle_.back());
      idle_.pop_back();
      return buffer;
    }
    ++allocations_;
  }
  return std::vector<float>(size_);  // Outside the lock: zeroing is O(size).
}

void BufferPool::Give(std::vector<float> buffer) {
  if (buffer.size() != size_) return;  // Not one of ours (or moved from): drop it.
  tally::MutexLock lock(&mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(buffer));
}

uint64_t BufferPool::allocations() const {
  tally::MutexLock lock(&mu_);
  return allocations_;
}

size_t BufferPool::idle() const {
  tally::MutexLock lock(&mu_);
  return idle_.size();
}

}  // namespace tally
