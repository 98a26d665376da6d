#include "server/sessions.h"

#include <openssl/rand.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "server/client_text.h"
#include "server/grpc_status.h"

namespace tally::server {
namespace {

// What a refusal by a session cap suggests as the wait before a retry:
// sessions end by Leave or by expiring, at no predictable time.
constexpr absl::Duration kCapRetryAfter = absl::Seconds(10);

std::string NewToken() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

uint32_t CountOf(const absl::flat_hash_map<std::string, uint32_t>& counts, const std::string& key) {
  auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

void AddCount(absl::flat_hash_map<std::string, uint32_t>& counts, const std::string& key,
              int delta) {
  uint32_t& count = counts[key];
  count += delta;
  if (count == 0) counts.erase(key);
}

std::string ShownPeer(const std::string& peer) { return peer.empty() ? "(in-process)" : peer; }

}  // namespace

std::string PeerAddress(absl::string_view grpc_peer) {
  std::string peer = absl::StrReplaceAll(grpc_peer, {{"%5B", "["}, {"%5D", "]"}});
  absl::string_view rest = peer;
  if (!absl::ConsumePrefix(&rest, "ipv4:") && !absl::ConsumePrefix(&rest, "ipv6:")) return peer;
  if (absl::ConsumePrefix(&rest, "[")) return std::string(rest.substr(0, rest.find(']')));
  return std::string(rest.substr(0, rest.rfind(':')));
}

SessionTable::SessionTable(const SessionLimits& limits, ServerMetrics* metrics)
    : limits_(limits),
      timeout_(absl::Milliseconds(limits.session_timeout_ms)),
      metrics_(metrics) {}

absl::Status SessionTable::Refuse(JoinRejectReason reason, absl::Status status) {
  metrics_->RejectedJoin(reason, status.message());
  return status;
}

absl::StatusOr<std::string> SessionTable::Join(absl::string_view client_id,
                                               const JoinCaller& caller, absl::Time now) {
  if (absl::Status valid = ValidateId("client_id", client_id); !valid.ok()) {
    return Refuse(JoinRejectReason::kInvalidId, valid);
  }
  TALLY_RETURN_IF_ERROR(TakeJoinToken(caller.peer, now));
  auto it = sessions_.find(client_id);
  const Session* replaced = it != sessions_.end() ? &it->second : nullptr;
  const bool live = replaced != nullptr && now - replaced->last_seen <= timeout_;
  if (live) TALLY_RETURN_IF_ERROR(CheckTakeover(client_id, *replaced, caller, now));
  TALLY_RETURN_IF_ERROR(CheckCaps(caller, replaced));
  if (replaced != nullptr) {
    Count(*replaced, -1);
  } else {
    it = sessions_.try_emplace(std::string(client_id)).first;
  }
  if (live) metrics_->sessions_replaced.Increment();
  Session& session = it->second;
  session = Session{NewToken(), now, caller.peer, caller.identity};
  Count(session, +1);
  metrics_->connected_clients.Set(static_cast<double>(sessions_.size()));
  return session.token;
}

absl::Status SessionTable::TakeJoinToken(const std::string& peer, absl::Time now) {
  const uint32_t per_minute = limits_.peer_joins_per_minute;
  auto it = join_buckets_.try_emplace(peer, per_minute, absl::Minutes(1), now).first;
  const absl::Duration wait = it->second.Take(now);
  if (wait == absl::ZeroDuration()) return absl::OkStatus();
  return Refuse(JoinRejectReason::kRateLimited,
                WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                                   "Join: peer ", ShownPeer(peer),
                                   " exceeds limits.peer_joins_per_minute = ", per_minute,
                                   "; retry in ", absl::ToInt64Milliseconds(wait) + 1, " ms")),
                               wait));
}

absl::Status SessionTable::CheckTakeover(absl::string_view client_id, const Session& session,
                                         const JoinCaller& caller, absl::Time now) {
  if (!caller.token.empty() && caller.token == session.token) return absl::OkStatus();
  if (!caller.identity.empty()) return absl::OkStatus();
  const absl::Duration idle = now - session.last_seen;
  const absl::Duration left = timeout_ - idle;
  std::string message = absl::StrCat(
      "Join: client ", ClientText(client_id), " already has a live session (last seen ",
      absl::ToInt64Milliseconds(idle), " ms ago): another process uses this ",
      "client_id, or this one restarted without leaving. ");
  absl::StrAppend(&message,
                  "Give each process its own client_id; a process that still holds the session "
                  "re-joins with its token; otherwise the session expires after ",
                  absl::ToInt64Milliseconds(left), " ms more without calls ",
                  "(limits.session_timeout_ms = ", limits_.session_timeout_ms, ")");
  return Refuse(JoinRejectReason::kIdInUse,
                WithRetryAfter(absl::AlreadyExistsError(message), left));
}

absl::Status SessionTable::CheckCaps(const JoinCaller& caller, const Session* replaced) {
  const auto refuse = [&](JoinRejectReason reason, absl::string_view what) {
    return Refuse(reason, WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                                             "Join: ", what,
                                             "; retry later (a session ends "
                                             "with Leave or after limits.session_timeout_ms = ",
                                             limits_.session_timeout_ms, " ms idle)")),
                                         kCapRetryAfter));
  };
  if (replaced == nullptr && sessions_.size() >= limits_.max_sessions) {
    return refuse(JoinRejectReason::kMaxSessions,
                  absl::StrCat("the server holds limits.max_sessions = ", limits_.max_sessions,
                               " sessions"));
  }
  if ((replaced == nullptr || replaced->peer != caller.peer) &&
      CountOf(per_peer_, caller.peer) >= limits_.max_sessions_per_peer) {
    return refuse(
        JoinRejectReason::kMaxSessionsPerPeer,
        absl::StrCat("peer ", ShownPeer(caller.peer), " holds limits.max_sessions_per_peer = ",
                     limits_.max_sessions_per_peer, " sessions"));
  }
  if (!caller.identity.empty() && (replaced == nullptr || replaced->identity != caller.identity) &&
      CountOf(per_identity_, caller.identity) >= limits_.max_sessions_per_identity) {
    return refuse(JoinRejectReason::kMaxSessionsPerIdentity,
                  absl::StrCat("identity ", ClientText(caller.identity),
                               " holds limits.max_sessions_per_identity = ",
                               limits_.max_sessions_per_identity, " sessions"));
  }
  return absl::OkStatus();
}

void SessionTable::Count(const Session& session, int delta) {
  AddCount(per_peer_, session.peer, delta);
  if (!session.identity.empty()) AddCount(per_identity_, session.identity, delta);
}

absl::Status SessionTable::Check(absl::string_view client_id, absl::string_view token,
                                 absl::Time now) {
  auto it = sessions_.find(client_id);
  // An expired session is gone even before Expired() has reported it.
  if (it == sessions_.end() || it->second.token != token || now - it->second.last_seen > timeout_) {
    TALLY_RETURN_IF_ERROR(ValidateId("client_id", client_id));
    return absl::UnauthenticatedError(absl::StrCat("no session for client ", ClientText(client_id),
                                                   " with this token; call Join"));
  }
  it->second.last_seen = now;
  return absl::OkStatus();
}

void SessionTable::Erase(absl::string_view client_id) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return;
  Count(it->second, -1);
  sessions_.erase(it);
  metrics_->connected_clients.Set(static_cast<double>(sessions_.size()));
}

std::vector<std::string> SessionTable::Expired(absl::Time now) {
  std::vector<std::string> expired;
  for (const auto& [client, session] : sessions_) {
    if (now - session.last_seen > timeout_) expired.push_back(client);
  }
  absl::erase_if(join_buckets_, [now](auto& entry) { return entry.second.Full(now); });
  return expired;
}

}  // namespace tally::server
