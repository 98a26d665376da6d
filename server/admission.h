// Admission: whether an upload may start now (docs/server.md, "Parts and
// seams"). Draining, one upload at a time per client,
// limits.max_concurrent_uploads and limits.client_uploads_per_minute (a token
// bucket per client). The last checks before an upload gets resources; what
// the round or schedule allows is the driver's (server/driver.h).
//
// Not thread-safe: the Coordinator calls it under its lock. Rejections come
// back as a status (RESOURCE_EXHAUSTED / UNAVAILABLE with a retry hint) and
// *reason; counting them is the caller's.
#ifndef TALLY_SERVER_ADMISSION_H_
#define TALLY_SERVER_ADMISSION_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/token_bucket.h"
#include "server/reject_reason.h"

namespace tally::server {

struct AdmissionOptions {
  uint32_t max_concurrent_uploads = 64;
  uint32_t client_uploads_per_minute = 0;  // 0: unlimited.
};

class Admission {
 public:
  explicit Admission(const AdmissionOptions& options) : options_(options) {}

  // Shutdown: every later upload is refused (UNAVAILABLE, reason draining).
  void BeginDrain() { draining_ = true; }
  bool draining() const { return draining_; }
  // UNAVAILABLE (draining) once BeginDrain ran.
  absl::Status CheckOpen(RejectReason* reason) const;

  // The client's upload may start: it has none running, fewer than
  // max_concurrent_uploads run, and its bucket has a token (taken last, so a
  // refused upload costs none). On success the client is busy until Release;
  // on refusal *reason (overloaded or rate_limited) and *retry_after say why
  // and when to retry.
  absl::Status Admit(const std::string& client_id, absl::Time now, RejectReason* reason,
                     absl::Duration* retry_after);
  // The client's upload ended (committed or aborted).
  void Release(const std::string& client_id);
  bool busy(const std::string& client_id) const { return busy_.contains(client_id); }
  size_t in_flight() const { return busy_.size(); }

 private:
  absl::Status TakeToken(const std::string& client_id, absl::Time now, absl::Duration* retry_after);

  const AdmissionOptions options_;
  bool draining_ = false;
  absl::flat_hash_set<std::string> busy_;
  absl::flat_hash_map<std::string, TokenBucket> buckets_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_ADMISSION_H_
