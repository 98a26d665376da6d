#include "server/progress_meter.h"

namespace tally::server {

ProgressMeter::ProgressMeter(const Limits& limits, absl::Time start)
    : limits_(limits), last_progress_(start) {
  samples_.emplace_back(start, 0);
}

void ProgressMeter::Progress(absl::Time now, uint64_t bytes) {
  bytes_ += bytes;
  last_progress_ = now;
}

ProgressMeter::Verdict ProgressMeter::Check(absl::Time now) {
  if (now - last_progress_ >= limits_.idle) return Verdict::kIdle;
  if (limits_.min_bytes_per_second <= 0 || limits_.window == absl::InfiniteDuration()) {
    return Verdict::kOk;
  }
  if (now - samples_.back().first >= limits_.window / 4) samples_.emplace_back(now, bytes_);
  // Keep one sample at least `window` old: the start of the average.
  while (samples_.size() > 1 && now - samples_[1].first >= limits_.window) samples_.pop_front();
  const auto& [since, bytes_then] = samples_.front();
  const absl::Duration age = now - since;
  if (age < limits_.window) return Verdict::kOk;  // Not that old yet.
  const double rate = static_cast<double>(bytes_ - bytes_then) / absl::ToDoubleSeconds(age);
  if (rate >= limits_.min_bytes_per_second) return Verdict::kOk;
  measured_rate_ = rate;
  return Verdict::kTooSlow;
}

}  // namespace tally::server
