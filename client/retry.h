// Retry policy of the client SDK: which failures are transient, how long to
// back off before the next attempt (exponential, capped, full jitter), and the
// seeded random source used for jitter and update ids.
//
// Internal to client/ (not installed); kept in its own header so the backoff
// schedule can be unit-tested without a server.
#ifndef TALLY_CLIENT_RETRY_H_
#define TALLY_CLIENT_RETRY_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/sync.h"

namespace tally {
namespace client_internal {

struct BackoffPolicy {
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
};

// The ceiling of the wait before retry number `retry` (0 = the wait after the
// first failed attempt): initial_backoff * multiplier^retry, capped at
// max_backoff. Never negative, never overflows for any `retry` >= 0.
absl::Duration BackoffCeiling(const BackoffPolicy& policy, int retry);

// True for the codes the SDK retries: UNAVAILABLE and DEADLINE_EXCEEDED.
bool IsRetryable(absl::StatusCode code);

class RandomSource;

// How long to wait before retrying after `status` failed the `failures`-th
// time (1 = the first failure), or nullopt if it is not retried: the
// server's hint for RESOURCE_EXHAUSTED with a RetryInfo (tally::RetryAfter),
// else full jitter under BackoffCeiling(policy, failures - 1) for the
// retryable codes.
std::optional<absl::Duration> RetryDelay(const absl::Status& status, int failures,
                                         const BackoffPolicy& policy, RandomSource& random);

// Seeded pseudo-random source for jitter and update ids. The same seed gives
// the same sequence of draws, so runs are reproducible.
//
// Thread-safe: draws are serialized by an internal mutex.
class RandomSource {
 public:
  // seed == 0 draws a seed from std::random_device.
  explicit RandomSource(uint64_t seed);

  RandomSource(const RandomSource&) = delete;
  RandomSource& operator=(const RandomSource&) = delete;

  // Full jitter: a duration uniform in [0, ceiling] (nanosecond resolution).
  // A non-positive ceiling gives zero; an infinite one is clamped to one hour
  // so that a caller never sleeps forever.
  absl::Duration FullJitter(absl::Duration ceiling);

  // A fresh update id: 128 random bits as 32 lowercase hex digits.
  std::string UpdateId();

 private:
  uint64_t Next();

  tally::Mutex mu_;
  std::mt19937_64 engine_ ABSL_GUARDED_BY(mu_);
};

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_RETRY_H_
