// Why an update was rejected (no dependencies: the admission, sinks and
// drivers report it; server/metrics.h counts it).
#ifndef TALLY_SERVER_REJECT_REASON_H_
#define TALLY_SERVER_REJECT_REASON_H_

namespace tally::server {

// Why an update was rejected: the `reason` label of
// tally_updates_rejected_total. Low cardinality by construction.
enum class RejectReason {
  kUnauthenticated,  // Unknown client/session, or no identity when auth is on.
  kForbidden,        // Authenticated as another client.
  kMalformed,        // Missing header, bad ids, bad codec, bad sample count.
  kLayoutMismatch,   // layout_hash or num_params differ from the model's.
  kLength,           // Declared/actual payload length wrong (incl. truncated).
  kChunkOrder,       // Chunk offset not where the previous one ended.
  kNonFinite,        // NaN or Inf in the payload.
  kValueRange,       // A finite value above limits.max_abs_value.
  kStale,            // Round closed / base version not current / max_staleness.
  kNotSelected,      // Round full or client already contributed.
  kFinished,         // total_rounds reached.
  kCancelled,        // Client went away mid-upload.
  kOverloaded,       // Too many concurrent uploads.
  kRateLimited,      // The client's upload rate.
  kDraining,         // The server is shutting down.
  kStalled,          // No message within limits.upload_idle_timeout_ms.
  kTooSlow,          // Below limits.min_upload_bytes_per_second over the window.
  kLeaseExpired,     // The task's lease expired and its slot went to another client.
  kSurplus,          // The round closed with enough updates (over-selection).
  kInternal,         // Server-side failure (spool I/O). Keep last.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_REJECT_REASON_H_
