#include "client/retry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "client/proto_convert.h"
#include "tally/client.h"
#include "tally/v1/tally.pb.h"

namespace tally {
namespace client_internal {

absl::Duration BackoffCeiling(const BackoffPolicy& policy, int retry) {
  if (policy.initial_backoff <= absl::ZeroDuration()) return absl::ZeroDuration();
  const absl::Duration cap = std::max(policy.max_backoff, absl::ZeroDuration());
  // Computed in double seconds: pow() saturates to +inf instead of wrapping.
  const double seconds = absl::ToDoubleSeconds(policy.initial_backoff) *
                         std::pow(std::max(policy.multiplier, 1.0), std::max(retry, 0));
  if (!(seconds < absl::ToDoubleSeconds(cap))) return cap;
  return absl::Seconds(seconds);
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
}

std::optional<absl::Duration> RetryDelay(const absl::Status& status, int failures,
                                         const BackoffPolicy& policy, RandomSource& random) {
  if (status.code() == absl::StatusCode::kResourceExhausted) return RetryAfter(status);
  if (!IsRetryable(status.code())) return std::nullopt;
  return random.FullJitter(BackoffCeiling(policy, failures - 1));
}

RandomSource::RandomSource(uint64_t seed) {
  if (seed == 0) {
    std::random_device device;
    seed = (uint64_t{device()} << 32) ^ device();
  }
  engine_.seed(seed);
}

uint64_t RandomSource::Next() {
  tally::MutexLock lock(&mu_);
  return engine_();
}

absl::Duration RandomSource::FullJitter(absl::Duration ceiling) {
  if (ceiling <= absl::ZeroDuration()) return absl::ZeroDuration();
  ceiling = std::min(ceiling, absl::Hours(1));
  const uint64_t span_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(ceiling));
  // Modulo bias is below 2^-22 for spans up to an hour: irrelevant for jitter.
  return absl::Nanoseconds(static_cast<int64_t>(Next() % (span_ns + 1)));
}

std::string RandomSource::UpdateId() {
  const uint64_t hi = Next();
  const uint64_t lo = Next();
  return absl::StrFormat("%016x%016x", hi, lo);
}

}  // namespace client_internal
}  // namespace tally

namespace tally {

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  auto payload = status.GetPayload(client_internal::kRetryInfoTypeUrl);
  if (!payload.has_value()) return std::nullopt;
  v1::RetryInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return absl::Seconds(info.retry_delay().seconds()) +
         absl::Nanoseconds(info.retry_delay().nanos());
}

}  // namespace tally
