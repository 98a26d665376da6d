// WorkflowRun: the server's workflow (server/workflow.h, docs/workflow.md)
// with what the server adds around it: its Prometheus series and its log
// lines. The Coordinator calls it at the wiring points (tasks, commits, a
// published version, the worker's tick, the end of a run), the RPC edge for
// Join, ReportEvaluation, GetStatus and GetHistory.
//
// Thread-safe (the Workflow's one mutex; prometheus series are). The
// Coordinator may call it under its own lock: nothing here calls out.
#ifndef TALLY_SERVER_WORKFLOW_RUN_H_
#define TALLY_SERVER_WORKFLOW_RUN_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/clock.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/coordinator_types.h"
#include "server/workflow.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {

class WorkflowRun {
 public:
  // Opens history.path (an unwritable path refuses the start, naming it).
  static absl::StatusOr<std::unique_ptr<WorkflowRun>> Create(
      const tally::v1::ServerConfig& config, Clock* clock, prometheus::Registry& registry);

  Workflow& workflow() { return *workflow_; }
  const Workflow& workflow() const { return *workflow_; }

  // An EVALUATE task for `client_id` (round: the one now open)?
  bool EvaluationTask(const std::string& client_id, uint64_t round, TaskInfo* info);
  // A round or asynchronous version was published: its record, the fit
  // metrics gauges; returns the metrics' text for the round's log line.
  std::string RoundCompleted(const RoundOutcome& outcome);
  // The worker's tick: closes an evaluation at its deadline, logs what
  // closed and any history write error, updates the series.
  void Poll();
  // ReportEvaluation after the session check, counted by result.
  absl::StatusOr<tally::v1::EvaluationAck> Report(const std::string& client_id,
                                                  const tally::v1::EvaluationReport& report);
  // Counts a report refused before Report (its session).
  void CountRejectedReport(const absl::Status& status);
  // rounds.selection RANDOM or POISSON: a round gathers waiting clients,
  // then samples them once (docs/workflow.md#sampling).
  bool samples() const { return samples_; }
  // rounds.filter set or sampling: TRAIN tasks go through SelectForRound.
  bool selects() const { return samples_ || filtered_; }
  // How many waiting clients a sampled round gathers (or half its timeout).
  uint32_t min_available() const { return min_available_; }
  // POISSON: a round's size is its selection's.
  bool poisson() const { return poisson_; }
  // The end of the run waits while this is true (an evaluation open or due).
  bool HoldsEnd() const { return workflow_->EvaluationPending(); }

 private:
  WorkflowRun(const tally::v1::ServerConfig& config, std::unique_ptr<Workflow> workflow,
              prometheus::Registry& registry);
  void SetGauges(prometheus::Family<prometheus::Gauge>& family,
                 const std::map<std::string, double>& metrics);
  void CountDropped();

  const std::unique_ptr<Workflow> workflow_;
  const bool samples_;
  const bool filtered_;
  const uint32_t min_available_;
  const bool poisson_;
  prometheus::Family<prometheus::Gauge>& fit_metric_;
  prometheus::Family<prometheus::Gauge>& evaluation_metric_;
  prometheus::Counter& names_dropped_;
  prometheus::Counter& evaluations_completed_;
  prometheus::Counter& evaluations_timed_out_;
  prometheus::Family<prometheus::Counter>& reports_;
  prometheus::Counter& reports_accepted_;
  prometheus::Family<prometheus::Counter>& reports_rejected_;
  std::atomic<uint64_t> dropped_seen_{0};  // metric_names_dropped already counted.
};

// The `reason` label of tally_evaluation_reports_rejected_total for a
// refused report's status: not_asked, duplicate, stale, invalid, unauthenticated.
const char* EvaluationRejectReason(const absl::Status& status);

}  // namespace tally::server

#endif  // TALLY_SERVER_WORKFLOW_RUN_H_
