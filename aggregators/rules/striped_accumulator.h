// StripedAccumulator: the running weighted sum  sum[j] += w * x[j]  that
// linear rules (the weighted mean of FedAvg) fold update chunks into as they
// arrive, so memory is O(d) whatever the number of clients.
//
// The vector is split into stripes of `stripe_floats` elements, each with its
// own lock, so chunks of different uploads landing in different stripes are
// added in parallel and chunks landing in the same stripe are serialised.
// Add/Subtract are thread-safe; Release() must not race with them.
#ifndef TALLY_AGGREGATORS_RULES_STRIPED_ACCUMULATOR_H_
#define TALLY_AGGREGATORS_RULES_STRIPED_ACCUMULATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "core/sync.h"

namespace tally::aggregators {

class StripedAccumulator {
 public:
  static constexpr size_t kDefaultStripeFloats = size_t{1} << 16;  // 256 KiB.

  explicit StripedAccumulator(size_t size, size_t stripe_floats = kDefaultStripeFloats);
  // Reuses `storage` (resized and zero-filled): recycling a model-sized
  // buffer avoids a page fault per 4 KiB of every round's fresh allocation.
  StripedAccumulator(std::vector<float> storage, size_t size,
                     size_t stripe_floats = kDefaultStripeFloats);

  size_t size() const { return sum_.size(); }

  // sum[offset + i] += weight * x[i] for i < count, where x is `count`
  // little-endian float32 values at `bytes` (any alignment). Requires
  // offset + count <= size() (checked by the caller).
  void AddBytes(uint64_t offset, const char* bytes, size_t count, float weight);
  void Add(uint64_t offset, const float* x, size_t count, float weight);
  // Calls fn(sum) with every stripe locked (in order, as Add locks them):
  // for updates that touch the whole vector at once (a decoded codec).
  void WithAllStripes(absl::FunctionRef<void(absl::Span<float>)> fn);

  // The current sum; valid only while no Add runs.
  const std::vector<float>& sum() const { return sum_; }
  // Moves the sum out; the accumulator is empty afterwards.
  std::vector<float> Release() { return std::move(sum_); }

 private:
  template <typename Fn>
  void ForEachStripe(uint64_t offset, size_t count, Fn fn);

  const size_t stripe_floats_;
  std::vector<float> sum_;
  std::unique_ptr<tally::Mutex[]> stripe_mu_;
};

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_STRIPED_ACCUMULATOR_H_
