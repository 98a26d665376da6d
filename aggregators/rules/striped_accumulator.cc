#include "aggregators/rules/striped_accumulator.h"

#include <algorithm>

#include "core/vector_ops.h"

namespace tally::aggregators {

StripedAccumulator::StripedAccumulator(size_t size, size_t stripe_floats)
    : stripe_floats_(std::max<size_t>(stripe_floats, 1)),
      sum_(size, 0.0f),
      stripe_mu_(new tally::Mutex[(size + stripe_floats_ - 1) / stripe_floats_ + 1]) {}

StripedAccumulator::StripedAccumulator(std::vector<float> storage, size_t size,
                                       size_t stripe_floats)
    : stripe_floats_(std::max<size_t>(stripe_floats, 1)),
      sum_(std::move(storage)),
      stripe_mu_(new tally::Mutex[(size + stripe_floats_ - 1) / stripe_floats_ + 1]) {
  sum_.resize(size);
  std::fill(sum_.begin(), sum_.end(), 0.0f);
}

template <typename Fn>
void StripedAccumulator::ForEachStripe(uint64_t offset, size_t count, Fn fn) {
  size_t done = 0;
  while (done < count) {
    const uint64_t pos = offset + done;
    const size_t stripe = pos / stripe_floats_;
    const size_t n = std::min<size_t>(count - done, (stripe + 1) * stripe_floats_ - pos);
    tally::MutexLock lock(&stripe_mu_[stripe]);
    fn(pos, done, n);
    done += n;
  }
}

void StripedAccumulator::AddBytes(uint64_t offset, const char* bytes, size_t count,
                                  float weight) {
  ForEachStripe(offset, count, [&](uint64_t pos, size_t done, size_t n) {
    AxpyBytes(weight, bytes + 4 * done, sum_.data() + pos, n);
  });
}

void StripedAccumulator::Add(uint64_t offset, const float* x, size_t count, float weight) {
  ForEachStripe(offset, count, [&](uint64_t pos, size_t done, size_t n) {
    Axpy(weight, x + done, sum_.data() + pos, n);
  });
}

void StripedAccumulator::WithAllStripes(absl::FunctionRef<void(absl::Span<float>)> fn) {
  const size_t stripes = (sum_.size() + stripe_floats_ - 1) / stripe_floats_;
  for (size_t s = 0; s < stripes; ++s) stripe_mu_[s].Lock();
  fn(absl::MakeSpan(sum_));
  for (size_t s = stripes; s > 0; --s) stripe_mu_[s - 1].Unlock();
}

}  // namespace tally::aggregators
