#include "server/workflow_run.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/client_text.h"
#include "server/log.h"
#include "server/workflow_config.h"

namespace tally::server {

const char* EvaluationRejectReason(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kFailedPrecondition:
      return "not_asked";
    case absl::StatusCode::kAlreadyExists:
      return "duplicate";
    case absl::StatusCode::kAborted:
      return "stale";
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return "unauthenticated";
    default:
      return "invalid";
  }
}

absl::StatusOr<std::unique_ptr<WorkflowRun>> WorkflowRun::Create(
    const tally::v1::ServerConfig& config, Clock* clock, prometheus::Registry& registry) {
  absl::StatusOr<std::unique_ptr<Workflow>> workflow = Workflow::Create(config, clock);
  if (!workflow.ok()) return workflow.status();
  return std::unique_ptr<WorkflowRun>(new WorkflowRun(config, *std::move(workflow), registry));
}

WorkflowRun::WorkflowRun(const tally::v1::ServerConfig& config,
                         std::unique_ptr<Workflow> workflow, prometheus::Registry& registry)
    : workflow_(std::move(workflow)),
      samples_(config.rounds().selection() != tally::v1::RoundConfig::FIRST_COME &&
               config.relay().upstream().empty()),
      filtered_(!config.rounds().filter().empty()),
      min_available_(MinAvailableClients(config.rounds())),
      poisson_(config.rounds().selection() == tally::v1::RoundConfig::POISSON),
      fit_metric_(prometheus::BuildGauge()
                      .Name("tally_fit_metric")
                      .Help("The last completed round's fit metric (clients' values weighted "
                            "by num_samples), by name")
                      .Register(registry)),
      evaluation_metric_(prometheus::BuildGauge()
                             .Name("tally_evaluation_metric")
                             .Help("The last closed federated evaluation's metric, by name")
                             .Register(registry)),
      names_dropped_(prometheus::BuildCounter()
                         .Name("tally_metric_names_dropped_total")
                         .Help("Client metric names dropped beyond limits.max_metric_names")
                         .Register(registry)
                         .Add({})),
      evaluations_completed_(prometheus::BuildCounter()
                                 .Name("tally_evaluations_completed_total")
                                 .Help("Federated evaluations closed")
                                 .Register(registry)
                                 .Add({})),
      evaluations_timed_out_(prometheus::BuildCounter()
                                 .Name("tally_evaluations_timed_out_total")
                                 .Help("Federated evaluations closed at their timeout")
                                 .Register(registry)
                                 .Add({})),
      reports_(prometheus::BuildCounter()
                   .Name("tally_evaluation_reports_total")
                   .Help("ReportEvaluation calls accepted")
                   .Register(registry)),
      reports_accepted_(reports_.Add({})),
      reports_rejected_(prometheus::BuildCounter()
                            .Name("tally_evaluation_reports_rejected_total")
                            .Help("ReportEvaluation calls refused, by reason")
                            .Register(registry)) {
  for (const char* reason : {"not_asked", "duplicate", "stale", "invalid", "unauthenticated"}) {
    reports_rejected_.Add({{"reason", reason}});
  }
}

bool WorkflowRun::EvaluationTask(const std::string& client_id, uint64_t round, TaskInfo* info) {
  auto task = std::make_shared<tally::v1::Task>();
  if (!workflow_->EvaluationTask(client_id, round, task.get())) return false;
  info->kind = TaskInfo::Kind::kEvaluate;
  info->round = task->round();
  info->model_version = task->model_version();
  info->evaluate = std::move(task);
  return true;
}

std::string WorkflowRun::RoundCompleted(const RoundOutcome& outcome) {
  const std::map<std::string, double> fit = workflow_->OnRoundCompleted(outcome);
  SetGauges(fit_metric_, fit);
  CountDropped();
  return MetricsText(fit);
}

void WorkflowRun::Poll() {
  for (const EvaluationResult& result : workflow_->Poll()) {
    LogInfo(EvaluationText(result));
    evaluations_completed_.Increment();
    if (result.timed_out) evaluations_timed_out_.Increment();
    if (result.reported > 0) SetGauges(evaluation_metric_, result.metrics);
  }
  if (absl::Status error = workflow_->TakeHistoryError(); !error.ok()) {
    LogError(absl::StrCat("history: ", error.message(), " (the run goes on without the record)"));
  }
  CountDropped();
}

absl::StatusOr<tally::v1::EvaluationAck> WorkflowRun::Report(
    const std::string& client_id, const tally::v1::EvaluationReport& report) {
  absl::StatusOr<tally::v1::EvaluationAck> ack = workflow_->Report(client_id, report);
  if (!ack.ok()) {
    CountRejectedReport(ack.status());
    LogInfo(absl::StrCat("evaluation report of client ", ClientText(client_id),
                         " refused: ", ack.status().message()));
    return ack;
  }
  reports_accepted_.Increment();
  Poll();  // The report that completes an evaluation closes it: log and count it now.
  return ack;
}

void WorkflowRun::CountRejectedReport(const absl::Status& status) {
  reports_rejected_.Add({{"reason", EvaluationRejectReason(status)}}).Increment();
}

void WorkflowRun::SetGauges(prometheus::Family<prometheus::Gauge>& family,
                            const std::map<std::string, double>& metrics) {
  // Names are bounded: the aggregators keep at most limits.max_metric_names.
  for (const auto& [name, value] : metrics) family.Add({{"name", name}}).Set(value);
}

void WorkflowRun::CountDropped() {
  tally::v1::ServerStatus status;
  workflow_->FillStatus(&status);
  const uint64_t total = status.metric_names_dropped();
  const uint64_t seen = dropped_seen_.exchange(total);
  if (total > seen) names_dropped_.Increment(static_cast<double>(total - seen));
}

}  // namespace tally::server
