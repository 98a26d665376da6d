#include "aggregators/rules/striped_accumulator.h"

#include <algorithm>

namespace tally::aggregators {

StripedAccumulator::StripedAccumulator(size_t size, size_t stripe_lanes)
    : stripe_lanes_((std::max<size_t>(stripe_lanes, 1) + kExactBlockLanes - 1) /
                    kExactBlockLanes * kExactBlockLanes),
      stripes_((size + stripe_lanes_ - 1) / stripe_lanes_),
      sum_(size),
      stripe_mu_(new tally::Mutex[stripes_ + 1]),
      stripe_epoch_(new uint64_t[stripes_ + 1]()) {}

template <typename Fn>
void StripedAccumulator::ForEachStripe(uint64_t offset, size_t count, Fn fn) {
  size_t done = 0;
  while (done < count) {
    const uint64_t pos = offset + done;
    const size_t stripe = pos / stripe_lanes_;
    const size_t n = std::min<size_t>(count - done, (stripe + 1) * stripe_lanes_ - pos);
    tally::MutexLock lock(&stripe_mu_[stripe]);
    if (Stale(stripe)) {
      const size_t begin = stripe * stripe_lanes_;
      sum_.Clear(begin, std::min(sum_.size(), begin + stripe_lanes_) - begin);
      stripe_epoch_[stripe] = epoch_;
    }
    fn(pos, done, n);
    done += n;
  }
}

void StripedAccumulator::AddBytes(uint64_t offset, const char* bytes, size_t count,
                                  int64_t weight) {
  ForEachStripe(offset, count, [&](uint64_t pos, size_t done, size_t n) {
    sum_.AddBytes(pos, bytes + 4 * done, n, weight);
  });
}

void StripedAccumulator::Add(uint64_t offset, const float* x, size_t count, int64_t weight) {
  ForEachStripe(offset, count, [&](uint64_t pos, size_t done, size_t n) {
    sum_.Add(pos, x + done, n, weight);
  });
}

void StripedAccumulator::Extract(double divisor, absl::Span<float> out) const {
  for (size_t stripe = 0; stripe < stripes_; ++stripe) {
    const size_t begin = stripe * stripe_lanes_;
    const absl::Span<float> part =
        out.subspan(begin, std::min(sum_.size(), begin + stripe_lanes_) - begin);
    if (Stale(stripe)) {
      std::fill(part.begin(), part.end(), 0.0f);
    } else {
      sum_.Extract(begin, divisor, part);
    }
  }
}

std::vector<ExactLane> StripedAccumulator::Lanes() const {
  std::vector<ExactLane> lanes = sum_.Lanes();
  for (size_t stripe = 0; stripe < stripes_; ++stripe) {
    if (!Stale(stripe)) continue;
    const size_t begin = stripe * stripe_lanes_;
    std::fill(lanes.begin() + begin,
              lanes.begin() + std::min(sum_.size(), begin + stripe_lanes_), ExactLane{0});
  }
  return lanes;
}

}  // namespace tally::aggregators
