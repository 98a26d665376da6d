// ServerMetrics: every Prometheus metric tally-server exports, registered once
// in a caller-provided Registry; the handles are cached here so hot paths
// never look anything up. prometheus-cpp metrics are thread-safe.
#ifndef TALLY_SERVER_METRICS_H_
#define TALLY_SERVER_METRICS_H_

#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "compress/codec.h"
#include "core/sync.h"
#include "server/reject_reason.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace tally::server {

const char* RejectReasonName(RejectReason reason);

// Why a Join was refused (server/sessions.h): the `reason` label of
// tally_joins_rejected_total.
enum class JoinRejectReason {
  kInvalidId,              // client_id not 1..128 bytes of [A-Za-z0-9._:@-].
  kIdInUse,                // The id has a live session the caller does not hold.
  kMaxSessions,            // limits.max_sessions.
  kMaxSessionsPerPeer,     // limits.max_sessions_per_peer.
  kMaxSessionsPerIdentity, // limits.max_sessions_per_identity.
  kRateLimited,            // limits.peer_joins_per_minute.
  kInvalidLocalDp,         // A malformed JoinRequest.local_dp (server/privacy_config.h).
  kAttributes,             // Malformed JoinRequest.attributes (docs/workflow.md). Keep last.
};
const char* JoinRejectReasonName(JoinRejectReason reason);

class ServerMetrics {
 public:
  explicit ServerMetrics(prometheus::Registry& registry);

  // Counts a rejected update and logs it (INFO): the reason, the client id
  // (whatever the client sent, through ClientText: server/client_text.h)
  // and why. Every rejection goes through here, so each leaves
  // one log line. Thread-safe.
  void RejectedUpdate(RejectReason reason, absl::string_view client_id, absl::string_view why);
  // Counts a refused Join and logs why (DEBUG: a flood of Joins must not
  // become a flood of log lines; the counter is what to alert on).
  void RejectedJoin(JoinRejectReason reason, absl::string_view why);

  // A robust rule's judgement of one client's update (Rule::influence, in
  // [0, 1]): counts the update, adds its influence, and counts a rejection
  // below kRejectedInfluence. Labelled by client; beyond
  // kMaxLabelledClients distinct clients, new ones share client="_other" so
  // the series stay bounded. Thread-safe.
  static constexpr double kRejectedInfluence = 0.5;
  static constexpr size_t kMaxLabelledClients = 1000;
  void RuleInfluence(const std::string& client, double influence);

  // An accepted update in `codec`: its payload bytes and the float32 bytes
  // it stands for (4 per parameter). Thread-safe.
  void UpdateCodecBytes(compress::CodecId codec, uint64_t payload_bytes, uint64_t dense_bytes);
  // A model segment sent by PullModel (a full model, or a delta), likewise.
  void DownloadCodecBytes(compress::CodecId codec, bool delta, uint64_t payload_bytes,
                          uint64_t dense_bytes);

  prometheus::Counter& updates_received;  // Uploads whose header arrived.
  prometheus::Counter& updates_accepted;
  prometheus::Counter& updates_duplicate;  // Retries acknowledged as duplicates.
  prometheus::Counter& update_bytes_received;
  prometheus::Counter& model_bytes_sent;
  prometheus::Counter& relay_batches_forwarded;  // Relay mode.
  prometheus::Counter& relay_batches_lost;
  prometheus::Counter& rounds_completed;
  prometheus::Counter& rounds_failed;
  prometheus::Histogram& round_duration;
  prometheus::Histogram& aggregation_duration;
  prometheus::Histogram& push_duration;
  prometheus::Histogram& rule_duration;
  prometheus::Counter& rule_failures;
  prometheus::Histogram& update_staleness;
  prometheus::Gauge& checkpoint_version;           // Newest version written.
  prometheus::Gauge& checkpoint_restored_version;  // Restored at start; 0 = none.
  prometheus::Gauge& checkpoint_restored_clients;
  prometheus::Counter& checkpoint_failures;
  prometheus::Gauge& model_version;
  prometheus::Gauge& connected_clients;
  prometheus::Counter& sessions_replaced;  // Re-joins and takeovers of a live session.
  prometheus::Gauge& uploads_in_flight;
  prometheus::Gauge& current_round;
  // Leases and over-selection (docs/rounds.md).
  prometheus::Counter& task_leases_expired;
  prometheus::Counter& tasks_overselected;  // TRAIN tasks beyond clients_per_round.
  // Model downloads (docs/availability.md). The family (by reason) is
  // declared first: it is initialised before the two series.
  prometheus::Family<prometheus::Counter>& downloads_cut_family;
  prometheus::Counter& downloads_cut_stalled;
  prometheus::Counter& downloads_cut_pinned;
  prometheus::Gauge& pinned_model_versions;  // Old versions PullModel streams hold.
  prometheus::Gauge& pinned_model_bytes;
  prometheus::Gauge& watch_streams;
  prometheus::Counter& watch_streams_refused;
  // Central DP (docs/privacy.md): the ledger after each published step.
  prometheus::Gauge& privacy_epsilon;
  prometheus::Gauge& privacy_steps;
  prometheus::Gauge& privacy_clip_norm;
  // Joins declaring local DP (JoinRequest.local_dp, validated).
  prometheus::Counter& local_dp_joins;

  uint64_t RejectedTotal() const;

 private:
  struct ClientRuleCounters {
    prometheus::Counter* updates;
    prometheus::Counter* influence;
    prometheus::Counter* rejected;
  };
  ClientRuleCounters& CountersFor(const std::string& client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Counter>& rejected_family_;
  prometheus::Family<prometheus::Counter>& rule_updates_family_;
  prometheus::Family<prometheus::Counter>& rule_influence_family_;
  prometheus::Family<prometheus::Counter>& rule_rejected_family_;
  prometheus::Family<prometheus::Counter>& model_payload_family_;
  prometheus::Family<prometheus::Counter>& model_dense_family_;
  // Payload bytes and the float32 bytes they stand for, per codec.
  class CodecBytes {
   public:
    // Series of `payload` and `dense` labelled codec=<name> plus `labels`.
    CodecBytes(prometheus::Family<prometheus::Counter>& payload,
               prometheus::Family<prometheus::Counter>& dense,
               const std::map<std::string, std::string>& labels = {});
    void Add(compress::CodecId codec, uint64_t payload_bytes, uint64_t dense_bytes);

   private:
    static constexpr int kMaxCodecId = 9;  // Indexed by CodecId (1..kMaxCodecId).
    prometheus::Counter* payload_[kMaxCodecId + 1] = {};
    prometheus::Counter* dense_[kMaxCodecId + 1] = {};
  };
  CodecBytes upload_bytes_;
  CodecBytes download_full_bytes_;
  CodecBytes download_delta_bytes_;
  tally::Mutex mu_;
  absl::flat_hash_map<std::string, ClientRuleCounters> client_counters_ ABSL_GUARDED_BY(mu_);
  prometheus::Counter* rejected_[static_cast<int>(RejectReason::kInternal) + 1];
  prometheus::Counter* joins_rejected_[static_cast<int>(JoinRejectReason::kAttributes) + 1];
};

}  // namespace tally::server

#endif  // TALLY_SERVER_METRICS_H_
