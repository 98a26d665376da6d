// TokenBucket: a rate limit of `capacity` events per `period` with bursts of
// up to `capacity`. The bucket starts full and refills evenly (capacity
// tokens per period); an event takes one token. Time is passed in, so the
// caller's injected clock drives it.
//
// Not thread-safe: the owner guards it (the server keeps one per client or
// per peer under its own mutex).
#ifndef TALLY_CORE_TOKEN_BUCKET_H_
#define TALLY_CORE_TOKEN_BUCKET_H_

#include <algorithm>

#include "absl/time/time.h"

namespace tally {

class TokenBucket {
 public:
  // capacity >= 1, period > 0.
  TokenBucket(double capacity, absl::Duration period, absl::Time now)
      : capacity_(capacity),
        per_second_(capacity / absl::ToDoubleSeconds(period)),
        tokens_(capacity),
        refilled_(now) {}

  // Takes a token and returns zero if one is available at `now`; otherwise
  // takes nothing and returns the wait until one is.
  absl::Duration Take(absl::Time now) {
    Refill(now);
    if (tokens_ >= 1) {
      tokens_ -= 1;
      return absl::ZeroDuration();
    }
    return absl::Seconds((1 - tokens_) / per_second_);
  }

  // Whether the bucket is full at `now` (forgetting it changes nothing).
  bool Full(absl::Time now) {
    Refill(now);
    return tokens_ >= capacity_;
  }

 private:
  void Refill(absl::Time now) {
    if (now > refilled_) {
      tokens_ = std::min(capacity_, tokens_ + absl::ToDoubleSeconds(now - refilled_) * per_second_);
      refilled_ = now;
    }
  }

  double capacity_;
  double per_second_;
  double tokens_;
  absl::Time refilled_;
};

}  // namespace tally

#endif  // TALLY_CORE_TOKEN_BUCKET_H_
