// BandwidthPacer: keeps one client's transfers (update pushes and model
// pulls) at or under ClientOptions::max_bandwidth_bytes_per_s on average, for
// devices on metered or shared links.
//
// A transfer asks for each chunk before sending it (or after receiving it);
// the pacer hands out the link in order: a chunk of n bytes starts when the
// bytes reserved before it have had their n_before / rate seconds, or at
// once if the link has been idle; a received chunk is done n / rate later. No credit builds up while idle, so a burst
// is at most one chunk; ChunkBytes() keeps a chunk to about a tenth of a
// second of the budget. Transfers running at the same time share the budget.
//
// Internal to client/. Thread-safe: reservations are serialized by a mutex;
// the sleeping happens outside it.
#ifndef TALLY_CLIENT_PACER_H_
#define TALLY_CLIENT_PACER_H_

#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "core/sync.h"

namespace tally::client_internal {

class BandwidthPacer {
 public:
  // bytes_per_second == 0: unlimited (every call returns at once).
  explicit BandwidthPacer(uint64_t bytes_per_second) : bytes_per_second_(bytes_per_second) {}

  BandwidthPacer(const BandwidthPacer&) = delete;
  BandwidthPacer& operator=(const BandwidthPacer&) = delete;

  bool limited() const { return bytes_per_second_ > 0; }

  // Reserves `bytes` of the link at `now` and returns when they may start.
  absl::Time Reserve(size_t bytes, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  // Before sending `bytes`: Reserve(bytes, absl::Now()), then sleeps until
  // the start.
  void Pace(size_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  // After receiving `bytes`: reserves them and sleeps until the end of their
  // airtime, so a download of N bytes lasts at least N / rate.
  void PaceReceived(size_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  // The chunk size to use for a transfer: `chunk_bytes` unless limited,
  // else at most rate / 10 (rounded down to whole floats, at least 4 KiB).
  size_t ChunkBytes(size_t chunk_bytes) const;

 private:
  const uint64_t bytes_per_second_;
  tally::Mutex mu_;
  absl::Time next_free_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace tally::client_internal

#endif  // TALLY_CLIENT_PACER_H_
