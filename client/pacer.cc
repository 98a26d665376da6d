#include "client/pacer.h"

#include <algorithm>

namespace tally::client_internal {

absl::Time BandwidthPacer::Reserve(size_t bytes, absl::Time now) {
  if (!limited()) return now;
  const absl::Duration airtime =
      absl::Seconds(static_cast<double>(bytes) / static_cast<double>(bytes_per_second_));
  tally::MutexLock lock(&mu_);
  const absl::Time start = std::max(now, next_free_);
  next_free_ = start + airtime;
  return start;
}

void BandwidthPacer::Pace(size_t bytes) {
  if (!limited()) return;
  const absl::Time now = absl::Now();
  const absl::Time start = Reserve(bytes, now);
  if (start > now) absl::SleepFor(start - now);
}

void BandwidthPacer::PaceReceived(size_t bytes) {
  if (!limited()) return;
  const absl::Time now = absl::Now();
  const absl::Time end =
      Reserve(bytes, now) +
      absl::Seconds(static_cast<double>(bytes) / static_cast<double>(bytes_per_second_));
  if (end > now) absl::SleepFor(end - now);
}

size_t BandwidthPacer::ChunkBytes(size_t chunk_bytes) const {
  if (!limited()) return chunk_bytes;
  constexpr size_t kMinChunk = 4096;
  size_t paced = std::max<size_t>(kMinChunk, bytes_per_second_ / 10);
  paced -= paced % sizeof(float);
  return std::min(chunk_bytes, paced);
}

}  // namespace tally::client_internal
