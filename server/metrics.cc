#include "server/metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/build_info.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "server/client_text.h"
#include "server/log.h"

namespace tally::server {
namespace {

// A message (whose client text came through ClientText) with any byte
// outside printable ASCII as \xNN: one log line whatever it holds.
std::string Printable(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// A counter family whose series are added per label value.
prometheus::Family<prometheus::Counter>& MakeCounterFamily(prometheus::Registry& registry,
                                                           const std::string& name,
                                                           const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

prometheus::Counter& MakeCounter(prometheus::Registry& registry, const std::string& name,
                                 const std::string& help) {
  return MakeCounterFamily(registry, name, help).Add({});
}

prometheus::Gauge& MakeGauge(prometheus::Registry& registry, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Histogram& MakeHistogram(prometheus::Registry& registry, const std::string& name,
                                     const std::string& help) {
  // 1 ms .. ~10 min, roughly x2.5 per bucket.
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
      1,     2.5,    5,     10,   25,    60,   120, 300,  600};
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add({}, kBuckets);
}

}  // namespace

const char* RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kUnauthenticated:
      return "unauthenticated";
    case RejectReason::kForbidden:
      return "forbidden";
    case RejectReason::kMalformed:
      return "malformed";
    case RejectReason::kLayoutMismatch:
      return "layout_mismatch";
    case RejectReason::kLength:
      return "length";
    case RejectReason::kChunkOrder:
      return "chunk_order";
    case RejectReason::kNonFinite:
      return "non_finite";
    case RejectReason::kValueRange:
      return "value_range";
    case RejectReason::kStale:
      return "stale";
    case RejectReason::kNotSelected:
      return "not_selected";
    case RejectReason::kFinished:
      return "finished";
    case RejectReason::kCancelled:
      return "cancelled";
    case RejectReason::kOverloaded:
      return "overloaded";
    case RejectReason::kRateLimited:
      return "rate_limited";
    case RejectReason::kDraining:
      return "draining";
    case RejectReason::kStalled:
      return "stalled";
    case RejectReason::kTooSlow:
      return "too_slow";
    case RejectReason::kLeaseExpired:
      return "lease_expired";
    case RejectReason::kSurplus:
      return "surplus";
    case RejectReason::kMetrics:
      return "metrics";
    case RejectReason::kInternal:
      return "internal";
  }
  return "unknown";
}

const char* JoinRejectReasonName(JoinRejectReason reason) {
  switch (reason) {
    case JoinRejectReason::kInvalidId:
      return "invalid_id";
    case JoinRejectReason::kIdInUse:
      return "id_in_use";
    case JoinRejectReason::kMaxSessions:
      return "max_sessions";
    case JoinRejectReason::kMaxSessionsPerPeer:
      return "max_sessions_per_peer";
    case JoinRejectReason::kMaxSessionsPerIdentity:
      return "max_sessions_per_identity";
    case JoinRejectReason::kRateLimited:
      return "rate_limited";
    case JoinRejectReason::kInvalidLocalDp:
      return "invalid_local_dp";
    case JoinRejectReason::kAttributes:
      return "attributes";
  }
  return "unknown";
}

ServerMetrics::ServerMetrics(prometheus::Registry& registry)
    : updates_received(MakeCounter(registry, "tally_updates_received_total",
                                   "Update uploads whose header was received.")),
      updates_accepted(
          MakeCounter(registry, "tally_updates_accepted_total", "Updates accepted into a round.")),
      updates_duplicate(MakeCounter(registry, "tally_updates_duplicate_total",
                                    "Retried updates acknowledged as duplicates.")),
      update_bytes_received(MakeCounter(registry, "tally_update_bytes_received_total",
                                        "Update payload bytes received.")),
      model_bytes_sent(MakeCounter(registry, "tally_model_bytes_sent_total",
                                   "Model payload bytes sent by PullModel.")),
      relay_batches_forwarded(
          MakeCounter(registry, "tally_relay_batches_forwarded_total",
                      "Relay mode: rounds whose combined update the upstream accepted.")),
      relay_batches_lost(MakeCounter(registry, "tally_relay_batches_lost_total",
                                     "Relay mode: combined updates the upstream did not take.")),
      rounds_completed(MakeCounter(registry, "tally_rounds_completed_total",
                                   "Rounds aggregated into a new model version.")),
      rounds_failed(MakeCounter(registry, "tally_rounds_failed_total",
                                "Rounds closed with fewer than min_clients updates.")),
      round_duration(MakeHistogram(registry, "tally_round_duration_seconds",
                                   "Time from a round's first task to its new model.")),
      aggregation_duration(MakeHistogram(registry, "tally_aggregation_duration_seconds",
                                         "Time to apply a round's aggregate and publish.")),
      push_duration(MakeHistogram(registry, "tally_push_update_duration_seconds",
                                  "Server-side duration of accepted PushUpdate calls.")),
      rule_duration(MakeHistogram(registry, "tally_rule_duration_seconds",
                                  "Time a robust strategy (pre-steps + rule) takes per round.")),
      rule_failures(MakeCounter(registry, "tally_rule_failures_total",
                                "Rounds failed because the robust rule refused the batch "
                                "(e.g. too few updates for f).")),
      update_staleness(prometheus::BuildHistogram()
                           .Name("tally_update_staleness")
                           .Help("Asynchronous schedules: model versions published between an "
                                 "update's base version and its arrival (server-computed).")
                           .Register(registry)
                           .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 2, 4, 8, 16, 32,
                                                                            64, 128, 256})),
      checkpoint_version(MakeGauge(registry, "tally_checkpoint_version",
                                   "Newest model version written to the checkpoint.")),
      checkpoint_restored_version(
          MakeGauge(registry, "tally_checkpoint_restored_version",
                    "Model version restored from a checkpoint at start (0 = none).")),
      checkpoint_restored_clients(
          MakeGauge(registry, "tally_checkpoint_restored_clients",
                    "Clients whose records (applied update ids, schedule state) the restored "
                    "checkpoint held.")),
      checkpoint_failures(MakeCounter(registry, "tally_checkpoint_failures_total",
                                      "Checkpoint writes that failed (logged).")),
      model_version(MakeGauge(registry, "tally_model_version", "Current global model version.")),
      connected_clients(
          MakeGauge(registry, "tally_connected_clients", "Clients with a live session.")),
      sessions_replaced(MakeCounter(registry, "tally_sessions_replaced_total",
                                    "Joins that replaced a live session of the same client id "
                                    "(a re-join with its token, or an authenticated takeover).")),
      uploads_in_flight(
          MakeGauge(registry, "tally_uploads_in_flight", "PushUpdate streams being received.")),
      current_round(MakeGauge(registry, "tally_round", "Current (open) round number.")),
      task_leases_expired(MakeCounter(registry, "tally_task_leases_expired_total",
                                      "TRAIN tasks whose client started no upload within "
                                      "rounds.task_lease_ms; the slot went back to the pool.")),
      tasks_overselected(MakeCounter(registry, "tally_tasks_overselected_total",
                                     "TRAIN tasks handed out beyond clients_per_round "
                                     "(rounds.over_selection).")),
      downloads_cut_family(MakeCounterFamily(
          registry, "tally_model_downloads_cut_total",
          "PullModel streams the server cut, by reason: stalled (no progress within "
          "limits.download_stall_timeout_ms) or pinned (beyond the pinned-version bound).")),
      downloads_cut_stalled(downloads_cut_family.Add({{"reason", "stalled"}})),
      downloads_cut_pinned(downloads_cut_family.Add({{"reason", "pinned"}})),
      pinned_model_versions(MakeGauge(registry, "tally_model_pinned_versions",
                                      "Old model versions PullModel streams keep in memory.")),
      pinned_model_bytes(MakeGauge(registry, "tally_model_pinned_bytes",
                                   "Bytes of the old model versions PullModel streams keep.")),
      watch_streams(MakeGauge(registry, "tally_watch_streams", "WatchModel streams open.")),
      watch_streams_refused(MakeCounter(registry, "tally_watch_streams_refused_total",
                                        "WatchModel streams refused beyond "
                                        "limits.max_watch_streams.")),
      privacy_epsilon(MakeGauge(registry, "tally_privacy_epsilon",
                                "Central DP: epsilon spent so far (at privacy.delta).")),
      privacy_steps(MakeGauge(registry, "tally_privacy_steps",
                              "Central DP: noised steps charged to the privacy ledger.")),
      privacy_clip_norm(MakeGauge(registry, "tally_privacy_clip_norm",
                                  "Central DP: the clip norm C of the next step.")),
      local_dp_joins(MakeCounter(registry, "tally_joins_local_dp_total",
                                 "Joins that declared local DP (a valid JoinRequest.local_dp).")),
      rejected_family_(MakeCounterFamily(registry, "tally_updates_rejected_total",
                                         "Updates rejected, by reason.")),
      rule_updates_family_(MakeCounterFamily(registry, "tally_rule_client_updates_total",
                                             "A client's updates judged by the robust rule.")),
      rule_influence_family_(
          MakeCounterFamily(registry, "tally_rule_client_influence_total",
                            "Sum of the rule's influence (0 = rejected, 1 = full) "
                            "over a client's updates.")),
      rule_rejected_family_(
          MakeCounterFamily(registry, "tally_rule_client_rejections_total",
                            "A client's updates the rule rejected or down-weighted "
                            "below half influence.")),
      model_payload_family_(MakeCounterFamily(
          registry, "tally_model_payload_bytes_total",
          "Model bytes PullModel sent, by codec and kind (full model or delta).")),
      model_dense_family_(MakeCounterFamily(
          registry, "tally_model_dense_bytes_total",
          "Float32 bytes the models PullModel sent stand for (4 per parameter and segment), by "
          "codec and kind; over tally_model_payload_bytes_total it is the compression ratio.")),
      upload_bytes_(MakeCounterFamily(registry, "tally_update_payload_bytes_total",
                                      "Payload bytes of accepted updates on the wire, by codec."),
                    MakeCounterFamily(registry, "tally_update_dense_bytes_total",
                                      "Float32 bytes the accepted updates stand for (4 per "
                                      "parameter), by codec; over tally_update_payload_bytes_total "
                                      "it is the compression ratio.")),
      download_full_bytes_(model_payload_family_, model_dense_family_, {{"kind", "full"}}),
      download_delta_bytes_(model_payload_family_, model_dense_family_, {{"kind", "delta"}}) {
  for (int i = 0; i <= static_cast<int>(RejectReason::kInternal); ++i) {
    rejected_[i] =
        &rejected_family_.Add({{"reason", RejectReasonName(static_cast<RejectReason>(i))}});
  }
  auto& joins_rejected = MakeCounterFamily(registry, "tally_joins_rejected_total",
                                           "Joins refused, by reason (server/sessions.h).");
  for (int i = 0; i <= static_cast<int>(JoinRejectReason::kAttributes); ++i) {
    joins_rejected_[i] = &joins_rejected.Add(
        {{"reason", JoinRejectReasonName(static_cast<JoinRejectReason>(i))}});
  }
  // The build, as Prometheus exporters report theirs: one series, value 1.
  const BuildInfo& build = GetBuildInfo();
  prometheus::BuildGauge()
      .Name("tally_build_info")
      .Help("tally-server's version, git commit and build type (labels); always 1.")
      .Register(registry)
      .Add({{"version", build.version},
            {"commit", build.commit},
            {"build_type", build.build_type}})
      .Set(1);
}

ServerMetrics::CodecBytes::CodecBytes(prometheus::Family<prometheus::Counter>& payload,
                                      prometheus::Family<prometheus::Counter>& dense,
                                      const std::map<std::string, std::string>& labels) {
  for (const compress::CodecInfo& info : compress::AllCodecs()) {
    const int id = static_cast<int>(info.id);
    if (id > kMaxCodecId) continue;
    std::map<std::string, std::string> series = labels;
    series["codec"] = info.name;
    payload_[id] = &payload.Add(series);
    dense_[id] = &dense.Add(series);
  }
}

void ServerMetrics::CodecBytes::Add(compress::CodecId codec, uint64_t payload_bytes,
                                    uint64_t dense_bytes) {
  const int id = static_cast<int>(codec);
  if (id > kMaxCodecId || payload_[id] == nullptr) return;
  payload_[id]->Increment(static_cast<double>(payload_bytes));
  dense_[id]->Increment(static_cast<double>(dense_bytes));
}

void ServerMetrics::UpdateCodecBytes(compress::CodecId codec, uint64_t payload_bytes,
                                     uint64_t dense_bytes) {
  upload_bytes_.Add(codec, payload_bytes, dense_bytes);
}

void ServerMetrics::DownloadCodecBytes(compress::CodecId codec, bool delta, uint64_t payload_bytes,
                                       uint64_t dense_bytes) {
  (delta ? download_delta_bytes_ : download_full_bytes_).Add(codec, payload_bytes, dense_bytes);
}

void ServerMetrics::RejectedUpdate(RejectReason reason, absl::string_view client_id,
                                   absl::string_view why) {
  rejected_[static_cast<int>(reason)]->Increment();
  LogInfo(absl::StrCat("rejected update from client ", ClientText(client_id), " (",
                       RejectReasonName(reason), "): ", Printable(why)));
}

void ServerMetrics::RejectedJoin(JoinRejectReason reason, absl::string_view why) {
  joins_rejected_[static_cast<int>(reason)]->Increment();
  LogDebug(absl::StrCat("refused Join (", JoinRejectReasonName(reason), "): ", Printable(why)));
}

ServerMetrics::ClientRuleCounters& ServerMetrics::CountersFor(const std::string& client) {
  auto it = client_counters_.find(client);
  if (it != client_counters_.end()) return it->second;
  const std::string label = client_counters_.size() < kMaxLabelledClients ? client : "_other";
  if (label != client) {
    auto other = client_counters_.find(label);
    if (other != client_counters_.end()) return other->second;
  }
  const prometheus::Labels labels = {{"client", label}};
  ClientRuleCounters counters{&rule_updates_family_.Add(labels),
                              &rule_influence_family_.Add(labels),
                              &rule_rejected_family_.Add(labels)};
  return client_counters_.emplace(label, counters).first->second;
}

void ServerMetrics::RuleInfluence(const std::string& client, double influence) {
  tally::MutexLock lock(&mu_);
  ClientRuleCounters& counters = CountersFor(client);
  counters.updates->Increment();
  counters.influence->Increment(std::clamp(influence, 0.0, 1.0));
  if (influence < kRejectedInfluence) counters.rejected->Increment();
}

uint64_t ServerMetrics::RejectedTotal() const {
  double total = 0;
  for (const prometheus::Counter* c : rejected_) total += c->Value();
  return static_cast<uint64_t>(total);
}

}  // namespace tally::server
