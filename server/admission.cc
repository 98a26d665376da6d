#include "server/admission.h"

#include "absl/strings/str_cat.h"

namespace tally::server {

absl::Status Admission::CheckOpen(RejectReason* reason) const {
  if (!draining_) return absl::OkStatus();
  *reason = RejectReason::kDraining;
  return absl::UnavailableError(
      "the server is shutting down; retry later (a load balancer sends the retry elsewhere)");
}

absl::Status Admission::Admit(const std::string& client_id, absl::Time now, RejectReason* reason,
                              absl::Duration* retry_after) {
  *reason = RejectReason::kOverloaded;
  *retry_after = absl::Seconds(1);
  if (busy_.contains(client_id)) {
    return absl::ResourceExhaustedError(
        "another upload from this client is in progress (one at a time per client); retry when "
        "it has finished");
  }
  if (busy_.size() >= options_.max_concurrent_uploads) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many concurrent uploads (limits.max_concurrent_uploads ",
                     options_.max_concurrent_uploads, "); retry in a second"));
  }
  if (absl::Status token = TakeToken(client_id, now, retry_after); !token.ok()) {
    *reason = RejectReason::kRateLimited;
    return token;
  }
  busy_.insert(client_id);
  return absl::OkStatus();
}

void Admission::Release(const std::string& client_id) { busy_.erase(client_id); }

absl::Status Admission::TakeToken(const std::string& client_id, absl::Time now,
                                  absl::Duration* retry_after) {
  const uint32_t per_minute = options_.client_uploads_per_minute;
  if (per_minute == 0) return absl::OkStatus();
  // A new client starts with a full minute.
  auto it = buckets_.try_emplace(client_id, per_minute, absl::Minutes(1), now).first;
  const absl::Duration wait = it->second.Take(now);
  if (wait == absl::ZeroDuration()) return absl::OkStatus();
  *retry_after = wait;
  return absl::ResourceExhaustedError(absl::StrCat(
      "client '", client_id, "' exceeds limits.client_uploads_per_minute ", per_minute,
      "; retry in ", absl::ToInt64Milliseconds(wait) + 1, " ms"));
}

}  // namespace tally::server
