// ProgressMeter: whether a stream still makes progress, judged from the
// times at which its bytes went through. Two tests (docs/availability.md):
//   idle:     nothing went through for `idle`;
//   too slow: fewer than min_bytes_per_second on average over the last
//             `window` (judged once the stream is that old), so that a
//             client trickling a few bytes just before each idle timeout is
//             cut too.
// The average is over a sliding window sampled by Check(): the bytes since
// the newest sample at least `window` old, divided by its age (between
// `window` and 1.25 x `window` when Check() runs at least every window / 4).
//
// Pure bookkeeping on explicit times (no clock, no threads): not
// thread-safe; the owner serialises Progress() and Check().
#ifndef TALLY_SERVER_PROGRESS_METER_H_
#define TALLY_SERVER_PROGRESS_METER_H_

#include <cstdint>
#include <deque>
#include <utility>

#include "absl/time/time.h"

namespace tally::server {

class ProgressMeter {
 public:
  struct Limits {
    absl::Duration idle = absl::InfiniteDuration();
    double min_bytes_per_second = 0;  // 0: no rate test.
    absl::Duration window = absl::InfiniteDuration();
  };
  enum class Verdict { kOk, kIdle, kTooSlow };

  ProgressMeter(const Limits& limits, absl::Time start);

  // `bytes` more went through at `now` (0: a message without payload, which
  // still counts against the idle test).
  void Progress(absl::Time now, uint64_t bytes);
  // The verdict at `now`; samples the byte count for the rate test.
  Verdict Check(absl::Time now);

  uint64_t bytes() const { return bytes_; }
  absl::Time last_progress() const { return last_progress_; }
  // The average rate the last kTooSlow verdict measured, in bytes/s.
  double measured_rate() const { return measured_rate_; }

 private:
  const Limits limits_;
  uint64_t bytes_ = 0;
  absl::Time last_progress_;
  double measured_rate_ = 0;
  // (time, bytes_ then), oldest first; the first is the newest sample at
  // least `window` old once the stream is that old.
  std::deque<std::pair<absl::Time, uint64_t>> samples_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_PROGRESS_METER_H_
