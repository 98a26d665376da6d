// SessionTable: the Aggregator's sessions (the token of each client id's
// session and when it was last seen), and the rules for opening one.
//
// Join, in this order:
//   1. The client id must be valid (server/client_text.h): INVALID_ARGUMENT.
//   2. Each peer address may Join limits.peer_joins_per_minute times a
//      minute (a token bucket of that size, refilled evenly; re-joins
//      count): RESOURCE_EXHAUSTED with the wait until the next token.
//   3. One session per client id. While an id's session is live (seen within
//      limits.session_timeout_ms) a Join for that id is refused with
//      ALREADY_EXISTS, unless the caller presents that session's token (a
//      re-join) or, with client authentication on, is authenticated as an
//      identity that may act as the id (a takeover). Either way the session
//      gets a new token and the old one stops working. An expired session
//      is simply replaced.
//   4. At most limits.max_sessions sessions, limits.max_sessions_per_peer
//      opened from one peer address and, with client authentication on,
//      limits.max_sessions_per_identity opened under one identity (a
//      wildcard identity such as "relay-*" counts once for all its ids):
//      RESOURCE_EXHAUSTED naming the limit, with a retry hint.
// Refusals are counted in tally_joins_rejected_total{reason}; re-joins and
// takeovers of a live session in tally_sessions_replaced_total.
//
// Not thread-safe: the Coordinator owns it and guards it with its mutex.
#ifndef TALLY_SERVER_SESSIONS_H_
#define TALLY_SERVER_SESSIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/token_bucket.h"
#include "server/metrics.h"

namespace tally::server {

// Who calls Join, besides the client id it names.
struct JoinCaller {
  // The token of the caller's current session, if it has one (a re-join).
  std::string token;
  // The caller's address without the port (PeerAddress); empty: unknown
  // (in-process callers), which is one peer like any other.
  std::string peer;
  // With client authentication on: the identity that allowed the caller to
  // act as the client id (server/auth.h). Empty: authentication is off.
  std::string identity;
};

// The address part of a gRPC peer string: "ipv4:10.0.0.7:5123" ->
// "10.0.0.7", "ipv6:[::1]:5123" (or %5B::1%5D) -> "::1"; other forms
// ("unix:/path") are kept whole.
std::string PeerAddress(absl::string_view grpc_peer);

// The session limits (limits.* of the config, defaulted and validated).
struct SessionLimits {
  uint32_t session_timeout_ms = 300000;
  uint32_t max_sessions = 10000;
  uint32_t max_sessions_per_peer = 10000;
  uint32_t max_sessions_per_identity = 10000;
  uint32_t peer_joins_per_minute = 6000;
};

class SessionTable {
 public:
  // `limits` is defaulted and validated; `metrics` is not owned.
  SessionTable(const SessionLimits& limits, ServerMetrics* metrics);

  // Opens (or, per rule 3, replaces) the session of `client_id`; returns its
  // new token.
  absl::StatusOr<std::string> Join(absl::string_view client_id, const JoinCaller& caller,
                                   absl::Time now);
  // OK (and the session is seen at `now`) if `token` is the token of
  // `client_id`'s session and it has not expired; else UNAUTHENTICATED
  // (INVALID_ARGUMENT for an invalid client id).
  absl::Status Check(absl::string_view client_id, absl::string_view token, absl::Time now);
  // Forgets the session of `client_id`, if any.
  void Erase(absl::string_view client_id);
  // The ids whose sessions have been idle longer than the timeout at `now`
  // (the caller erases them). Also forgets the peers' join buckets that are
  // full again, so that they do not pile up.
  std::vector<std::string> Expired(absl::Time now);

  size_t size() const { return sessions_.size(); }

 private:
  struct Session {
    std::string token;
    absl::Time last_seen;
    std::string peer;
    std::string identity;
  };

  // Rule 2: takes a token from the peer's bucket.
  absl::Status TakeJoinToken(const std::string& peer, absl::Time now);
  // Rule 3 for a live `session`.
  absl::Status CheckTakeover(absl::string_view client_id, const Session& session,
                             const JoinCaller& caller, absl::Time now);
  // Rule 4 for a session opened by `caller`; `replaced`: the session it
  // replaces (whose peer and identity no longer count), or null.
  absl::Status CheckCaps(const JoinCaller& caller, const Session* replaced);
  // Adds `delta` to the counts of the session's peer and identity.
  void Count(const Session& session, int delta);
  absl::Status Refuse(JoinRejectReason reason, absl::Status status);

  const SessionLimits limits_;
  const absl::Duration timeout_;
  ServerMetrics* const metrics_;
  absl::flat_hash_map<std::string, Session> sessions_;
  absl::flat_hash_map<std::string, uint32_t> per_peer_;         // Sessions by peer address.
  absl::flat_hash_map<std::string, uint32_t> per_identity_;     // By identity (auth on).
  absl::flat_hash_map<std::string, TokenBucket> join_buckets_;  // By peer address.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_SESSIONS_H_
