// BufferPool: recycles model-sized float buffers, so that a server applying a
// stream of updates does not allocate (and zero) a model-sized vector per
// update. Buffers come back from wherever they were last used: an upload, a
// published model snapshot whose last reader let go (ModelStore::
// set_recycler), an aggregate.
//
// Take() returns a buffer of exactly `size` floats whose contents are
// unspecified (the caller overwrites it). Give() keeps at most `max_idle`
// buffers of the pool's size and frees the rest, so idle memory is bounded.
//
// Thread-safe.
#ifndef TALLY_CORE_BUFFER_POOL_H_
#define TALLY_CORE_BUFFER_POOL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/sync.h"

namespace tally {

class BufferPool {
 public:
  BufferPool(size_t size, size_t max_idle) : size_(size), max_idle_(max_idle) {}

  std::vector<float> Take() ABSL_LOCKS_EXCLUDED(mu_);
  void Give(std::vector<float> buffer) ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const { return size_; }
  // Buffers allocated because none was idle (for tests and benchmarks).
  uint64_t allocations() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t idle() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t size_;
  const size_t max_idle_;
  mutable tally::Mutex mu_;
  std::vector<std::vector<float>> idle_ ABSL_GUARDED_BY(mu_);
  uint64_t allocations_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally

#endif  // TALLY_CORE_BUFFER_POOL_H_
