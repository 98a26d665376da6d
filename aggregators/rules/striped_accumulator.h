// StripedAccumulator: the running exact sum  S[j] += w * q(x[j])  (an
// ExactSum, core/exact_sum.h) that a synchronous round folds update chunks
// into as they arrive, so memory is O(d) whatever the number of clients, and
// a failed upload is subtracted exactly (the same chunks with weight -w).
//
// The vector is split into stripes of `stripe_lanes` coordinates (rounded up
// to whole blocks of kExactBlockLanes), each with
// its own lock, so chunks of different uploads landing in different stripes
// are added in parallel and chunks landing in the same stripe are serialised.
// Because the lane arithmetic is exact, the result does not depend on which
// upload got a stripe first. Reset() is O(stripes): a stripe is zeroed by the
// first Add that touches it afterwards, so reusing the accumulator for the
// next round costs no pass over the model on the round's critical path.
// Add/AddBytes are thread-safe; Extract, Lanes and Reset must not race with
// them.
#ifndef TALLY_AGGREGATORS_RULES_STRIPED_ACCUMULATOR_H_
#define TALLY_AGGREGATORS_RULES_STRIPED_ACCUMULATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "core/exact_sum.h"
#include "core/sync.h"

namespace tally::aggregators {

class StripedAccumulator {
 public:
  static constexpr size_t kDefaultStripeLanes = size_t{1} << 14;  // 128 KiB of 64-bit lanes.

  explicit StripedAccumulator(size_t size, size_t stripe_lanes = kDefaultStripeLanes);

  size_t size() const { return sum_.size(); }

  // S[offset + i] += weight * q(x[i]) for i < count, where x is `count`
  // little-endian float32 values at `bytes` (any alignment), validated by
  // the caller (finite, |x| <= kMaxExactAbsValue). A negative weight
  // subtracts. Requires offset + count <= size() (checked by the caller).
  void AddBytes(uint64_t offset, const char* bytes, size_t count, int64_t weight);
  void Add(uint64_t offset, const float* x, size_t count, int64_t weight);

  // Starts a new sum (every lane 0) for another round.
  void Reset() { ++epoch_; }
  // out[j] = S[j] * 2^-kExactFractionBits / divisor (ExactSum::Extract);
  // out.size() == size().
  void Extract(double divisor, absl::Span<float> out) const;
  // The lanes S[j] (for tests).
  std::vector<ExactLane> Lanes() const;

 private:
  template <typename Fn>
  void ForEachStripe(uint64_t offset, size_t count, Fn fn);

  bool Stale(size_t stripe) const { return stripe_epoch_[stripe] != epoch_; }

  const size_t stripe_lanes_;
  const size_t stripes_;
  ExactSum sum_;
  std::unique_ptr<tally::Mutex[]> stripe_mu_;
  // The epoch whose sum each stripe holds (under its lock); a stripe of an
  // older epoch reads as zero.
  std::unique_ptr<uint64_t[]> stripe_epoch_;
  uint64_t epoch_ = 0;
};

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_STRIPED_ACCUMULATOR_H_
