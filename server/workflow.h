// Workflow: the server's state for federated evaluation, client metrics,
// per-round config, sampling and the run history (docs/workflow.md), behind
// calls the round driver and the RPC handlers make at fixed points:
//
//   Join            -> OnJoin (attributes checked: INVALID_ARGUMENT)
//   Leave / expiry  -> OnLeave
//   GetTask         -> EvaluationTask (an EVALUATE task for this client?),
//                      else SetTaskConfig on the TRAIN task
//   round opening   -> SelectForRound (RANDOM / POISSON / filter)
//   update header   -> CheckMetrics (INVALID_ARGUMENT before any byte)
//   update committed-> AddFitMetrics
//   round/version   -> OnRoundCompleted (fit metrics, history record,
//     published        evaluation started if due)
//   ReportEvaluation-> Report
//   timer / GetTask -> Poll (closes an evaluation at its deadline)
//   Admin           -> FillStatus, History
//
// It knows the clients that joined and have not left (their attributes,
// in join order), samples evaluations from them and keeps one evaluation
// open at a time (a due evaluation waits for the open one to close).
// Thread-safe: one mutex, never held while calling out (no callbacks).
#ifndef TALLY_SERVER_WORKFLOW_H_
#define TALLY_SERVER_WORKFLOW_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/client_sampler.h"
#include "core/clock.h"
#include "core/config_schedule.h"
#include "core/evaluation_round.h"
#include "core/metrics_aggregator.h"
#include "core/run_history.h"
#include "core/sync.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {

// What a completed round (or asynchronous model version) was.
struct RoundOutcome {
  uint64_t round = 0;
  uint64_t model_version = 0;  // The version it produced.
  uint32_t participants = 0;
  uint64_t bytes_received = 0;
  uint64_t num_examples = 0;
  std::map<std::string, std::string> decisions;  // From the rule, if any.
};

class Workflow {
 public:
  // Validated config; opens history.path (errors name it). `clock` not
  // owned, outlives this.
  static absl::StatusOr<std::unique_ptr<Workflow>> Create(const tally::v1::ServerConfig& config,
                                                          Clock* clock);

  absl::Status OnJoin(const std::string& client_id, const tally::v1::JoinRequest& request);
  void OnLeave(const std::string& client_id);

  // TRAIN selection among `waiting` (ids in arrival order) for `round`.
  std::vector<std::string> SelectForRound(uint64_t round,
                                          const std::vector<std::string>& waiting) const;

  // The round's config into a TRAIN task.
  void SetTrainConfig(uint64_t round, tally::v1::Task* task) const;
  // True (and `task` filled as EVALUATE) when `client_id` has an open
  // evaluation to take part in. `round` is the round now open (its config
  // goes with the task).
  bool EvaluationTask(const std::string& client_id, uint64_t round, tally::v1::Task* task);

  // An update's metrics, checked (INVALID_ARGUMENT "metrics: ...").
  absl::StatusOr<std::map<std::string, double>> CheckMetrics(
      const tally::v1::UpdateHeader& header) const;
  // A committed update's metrics, weighted by its num_samples.
  void AddFitMetrics(uint64_t num_samples, const std::map<std::string, double>& metrics);

  // Aggregates the round's fit metrics, appends its history record, and
  // starts an evaluation of outcome.model_version if one is due. Returns
  // the fit metrics (for the round's log line).
  std::map<std::string, double> OnRoundCompleted(const RoundOutcome& outcome);

  // Takes a report; the report that completes the evaluation closes it
  // (its result is then what the next Poll returns).
  absl::StatusOr<tally::v1::EvaluationAck> Report(const std::string& client_id,
                                                  const tally::v1::EvaluationReport& report);
  // Closes the open evaluation if complete (all reported or left, or its
  // deadline passed), writing its history record; returns the result of
  // every evaluation closed since the last call (for the log).
  std::vector<EvaluationResult> Poll();
  // The first history write error since the last call (OK if none): the
  // run goes on without the record in the file; log it.
  absl::Status TakeHistoryError();
  // An evaluation open or waiting to start (the end of a run waits for it).
  bool EvaluationPending() const;

  void FillStatus(tally::v1::ServerStatus* status) const;
  tally::v1::RunHistory History(const tally::v1::GetHistoryRequest& request) const;

 private:
  Workflow(const tally::v1::ServerConfig& config, Clock* clock, std::unique_ptr<RunHistory> history);
  void StartEvaluationLocked(uint64_t round, uint64_t version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishEvaluationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendLocked(const HistoryRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const tally::v1::EvaluationConfig evaluation_config_;
  const uint64_t total_rounds_;
  const std::map<std::string, ConfigScheduleSpec> schedules_;
  const SamplingOptions train_sampling_;
  const SamplingOptions evaluation_sampling_;
  const absl::Duration evaluation_timeout_;
  const size_t max_metric_names_;
  Clock* const clock_;
  const std::unique_ptr<RunHistory> history_;

  mutable tally::Mutex mu_;
  // Joined clients in join order, with their attributes.
  std::vector<std::pair<std::string, ClientAttributes>> clients_ ABSL_GUARDED_BY(mu_);
  MetricsAggregator fit_metrics_ ABSL_GUARDED_BY(mu_);
  MetricsAggregator evaluation_metrics_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<EvaluationRound> evaluation_ ABSL_GUARDED_BY(mu_);
  uint64_t evaluation_round_ ABSL_GUARDED_BY(mu_) = 0;  // Of the open one.
  // A due evaluation (round, version) waiting for the open one to close.
  std::optional<std::pair<uint64_t, uint64_t>> queued_ ABSL_GUARDED_BY(mu_);
  uint64_t next_evaluation_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t evaluations_completed_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, double> latest_fit_ ABSL_GUARDED_BY(mu_);
  uint64_t latest_fit_round_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, double> latest_evaluation_ ABSL_GUARDED_BY(mu_);
  uint64_t latest_evaluation_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<EvaluationResult> closed_ ABSL_GUARDED_BY(mu_);  // Since the last Poll.
  absl::Status history_error_ ABSL_GUARDED_BY(mu_);
};

// "accuracy=0.875 loss=0.35" (names sorted) for log lines; "" when empty.
std::string MetricsText(const std::map<std::string, double>& metrics);
// An evaluation's log line, e.g. "evaluation 2 of version 4 (round 3): 2 of
// 3 clients, 1200 examples, closed at its timeout: accuracy=0.6".
std::string EvaluationText(const EvaluationResult& result);

}  // namespace tally::server

#endif  // TALLY_SERVER_WORKFLOW_H_
