// Clock: injected time source. The server uses RealClock; tests and the
// simulator use ManualClock so that schedules are deterministic.
// Implementations are thread-safe.
#ifndef TALLY_CORE_CLOCK_H_
#define TALLY_CORE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/sync.h"

namespace tally {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // Process-wide instance; never destroyed.
  static Clock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

// Time moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}
  absl::Time Now() const override {
    tally::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    tally::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable tally::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally

#endif  // TALLY_CORE_CLOCK_H_
