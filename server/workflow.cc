#include "server/workflow.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/json.h"
#include "server/workflow_config.h"

namespace tally::server {

std::string MetricsText(const std::map<std::string, double>& metrics) {
  std::string text;
  for (const auto& [name, value] : metrics) {
    absl::StrAppend(&text, text.empty() ? "" : " ", name, "=", JsonNumber(value));
  }
  return text;
}

std::string EvaluationText(const EvaluationResult& result) {
  std::string text = absl::StrCat("evaluation ", result.evaluation_id, " of version ",
                                  result.model_version, " (round ", result.round, "): ",
                                  result.reported, " of ", result.asked, " clients, ",
                                  result.num_examples, " examples");
  if (result.timed_out) absl::StrAppend(&text, ", closed at its timeout");
  const std::string metrics = MetricsText(result.metrics);
  absl::StrAppend(&text, metrics.empty() ? ": no metrics" : ": ", metrics);
  return text;
}

absl::StatusOr<std::unique_ptr<Workflow>> Workflow::Create(const tally::v1::ServerConfig& config,
                                                           Clock* clock) {
  absl::StatusOr<std::unique_ptr<RunHistory>> history = RunHistory::Open(config.history().path());
  if (!history.ok()) return history.status();
  return std::unique_ptr<Workflow>(new Workflow(config, clock, *std::move(history)));
}

Workflow::Workflow(const tally::v1::ServerConfig& config, Clock* clock,
                   std::unique_ptr<RunHistory> history)
    : evaluation_config_(config.evaluation()),
      total_rounds_(config.rounds().total_rounds()),
      schedules_(ConfigSchedulesFromConfig(config.client_config())),
      train_sampling_(TrainSamplingFromConfig(config.rounds())),
      evaluation_sampling_(EvaluationSamplingFromConfig(config)),
      evaluation_timeout_(EvaluationTimeout(config)),
      max_metric_names_(MaxMetricNames(config.limits())),
      clock_(clock),
      history_(std::move(history)),
      fit_metrics_(MetricsOptionsFromConfig(config)),
      evaluation_metrics_(MetricsOptionsFromConfig(config)) {}

absl::Status Workflow::OnJoin(const std::string& client_id, const tally::v1::JoinRequest& request) {
  absl::StatusOr<ClientAttributes> attributes = AttributesFromJoin(request);
  if (!attributes.ok()) return attributes.status();
  tally::MutexLock lock(&mu_);
  for (auto& [id, known] : clients_) {
    if (id == client_id) {
      known = *std::move(attributes);  // A re-join keeps its place.
      return absl::OkStatus();
    }
  }
  clients_.emplace_back(client_id, *std::move(attributes));
  return absl::OkStatus();
}

void Workflow::OnLeave(const std::string& client_id) {
  tally::MutexLock lock(&mu_);
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(),
                                [&](const auto& c) { return c.first == client_id; }),
                 clients_.end());
  if (evaluation_ != nullptr) evaluation_->Forget(client_id);
}

std::vector<std::string> Workflow::SelectForRound(uint64_t round,
                                                  const std::vector<std::string>& waiting) const {
  tally::MutexLock lock(&mu_);
  absl::flat_hash_map<std::string, const ClientAttributes*> attributes;
  for (const auto& [id, known] : clients_) attributes.emplace(id, &known);
  std::vector<CandidateClient> candidates;
  candidates.reserve(waiting.size());
  for (const std::string& id : waiting) {
    auto it = attributes.find(id);
    candidates.push_back({id, it == attributes.end() ? nullptr : it->second});
  }
  return SelectClients(train_sampling_, candidates, round);
}

void Workflow::SetTrainConfig(uint64_t round, tally::v1::Task* task) const {
  if (!schedules_.empty()) SetTaskConfig(schedules_, round, task);
}

bool Workflow::EvaluationTask(const std::string& client_id, uint64_t round, tally::v1::Task* task) {
  tally::MutexLock lock(&mu_);
  if (evaluation_ == nullptr || !evaluation_->ShouldEvaluate(client_id)) return false;
  task->set_kind(tally::v1::Task::EVALUATE);
  task->set_round(evaluation_round_);
  task->set_model_version(evaluation_->model_version());
  task->set_deadline_unix_ms(absl::ToUnixMillis(evaluation_->deadline()));
  task->mutable_evaluation()->set_evaluation_id(evaluation_->evaluation_id());
  if (!schedules_.empty()) SetTaskConfig(schedules_, round, task);
  return true;
}

absl::StatusOr<std::map<std::string, double>> Workflow::CheckMetrics(
    const tally::v1::UpdateHeader& header) const {
  return MetricsFromProto(header.metrics(), max_metric_names_);
}

void Workflow::AddFitMetrics(uint64_t num_samples, const std::map<std::string, double>& metrics) {
  if (metrics.empty()) return;
  tally::MutexLock lock(&mu_);
  fit_metrics_.Add(static_cast<double>(num_samples), metrics);
}

std::map<std::string, double> Workflow::OnRoundCompleted(const RoundOutcome& outcome) {
  tally::MutexLock lock(&mu_);
  HistoryRecord record;
  record.unix_ms = absl::ToUnixMillis(clock_->Now());
  record.round = outcome.round;
  record.model_version = outcome.model_version;
  record.participants = outcome.participants;
  record.bytes_received = outcome.bytes_received;
  record.num_examples = outcome.num_examples;
  record.metrics = fit_metrics_.TakeRound();
  record.decisions = outcome.decisions;
  latest_fit_ = record.metrics;
  latest_fit_round_ = outcome.round;
  AppendLocked(record);
  if (EvaluationDue(outcome.round, evaluation_config_.every_rounds(), evaluation_config_.at_end(),
                    total_rounds_)) {
    if (evaluation_ == nullptr) {
      StartEvaluationLocked(outcome.round, outcome.model_version);
    } else {
      queued_ = std::make_pair(outcome.round, outcome.model_version);  // The newest waits.
    }
  }
  return record.metrics;
}

void Workflow::StartEvaluationLocked(uint64_t round, uint64_t version) {
  std::vector<CandidateClient> candidates;
  candidates.reserve(clients_.size());
  for (const auto& [id, attributes] : clients_) {
    auto role = attributes.find(kRoleAttribute);
    if (role != attributes.end() && role->second == kRelayRole) continue;  // No data.
    candidates.push_back({id, &attributes});
  }
  const std::vector<std::string> asked = SelectClients(evaluation_sampling_, candidates, round);
  evaluation_ = std::make_unique<EvaluationRound>(next_evaluation_id_++, version, round, asked,
                                                  clock_->Now() + evaluation_timeout_,
                                                  &evaluation_metrics_);
  evaluation_round_ = round;
}

void Workflow::AppendLocked(const HistoryRecord& record) {
  if (absl::Status written = history_->Append(record); !written.ok() && history_error_.ok()) {
    history_error_ = written;
  }
}

absl::Status Workflow::TakeHistoryError() {
  tally::MutexLock lock(&mu_);
  return std::exchange(history_error_, absl::OkStatus());
}

void Workflow::FinishEvaluationLocked() {
  EvaluationResult result = evaluation_->Finish(clock_->Now());
  evaluation_.reset();
  ++evaluations_completed_;
  if (result.reported > 0) {
    latest_evaluation_ = result.metrics;
    latest_evaluation_version_ = result.model_version;
  }
  HistoryRecord record;
  record.kind = HistoryRecord::Kind::kEvaluate;
  record.unix_ms = absl::ToUnixMillis(clock_->Now());
  record.round = result.round;
  record.model_version = result.model_version;
  record.participants = result.reported;
  record.num_examples = result.num_examples;
  record.metrics = result.metrics;
  record.evaluation_id = result.evaluation_id;
  AppendLocked(record);
  closed_.push_back(std::move(result));
  if (queued_.has_value()) {
    StartEvaluationLocked(queued_->first, queued_->second);
    queued_.reset();
  }
}

absl::StatusOr<tally::v1::EvaluationAck> Workflow::Report(
    const std::string& client_id, const tally::v1::EvaluationReport& report) {
  const std::map<std::string, double> metrics(report.metrics().begin(), report.metrics().end());
  tally::MutexLock lock(&mu_);
  if (evaluation_ == nullptr) {
    return absl::AbortedError(absl::StrCat("evaluation ", report.evaluation_id(),
                                           " is not open (no evaluation is)"));
  }
  absl::StatusOr<uint32_t> taken =
      evaluation_->Report(client_id, report.evaluation_id(), report.model_version(),
                          report.num_examples(), metrics, max_metric_names_);
  if (!taken.ok()) return taken.status();
  if (evaluation_->Complete(clock_->Now())) FinishEvaluationLocked();
  tally::v1::EvaluationAck ack;
  ack.set_reports_received(*taken);
  return ack;
}

std::vector<EvaluationResult> Workflow::Poll() {
  tally::MutexLock lock(&mu_);
  if (evaluation_ != nullptr && evaluation_->Complete(clock_->Now())) FinishEvaluationLocked();
  return std::exchange(closed_, {});
}

bool Workflow::EvaluationPending() const {
  tally::MutexLock lock(&mu_);
  return evaluation_ != nullptr || queued_.has_value();
}

void Workflow::FillStatus(tally::v1::ServerStatus* status) const {
  tally::MutexLock lock(&mu_);
  status->mutable_fit_metrics()->insert(latest_fit_.begin(), latest_fit_.end());
  status->set_fit_metrics_round(latest_fit_round_);
  status->mutable_evaluation_metrics()->insert(latest_evaluation_.begin(),
                                               latest_evaluation_.end());
  status->set_evaluation_version(latest_evaluation_version_);
  status->set_evaluations_completed(evaluations_completed_);
  status->set_metric_names_dropped(fit_metrics_.dropped_total() +
                                   evaluation_metrics_.dropped_total());
  status->set_history_path(history_->path());
}

tally::v1::RunHistory Workflow::History(const tally::v1::GetHistoryRequest& request) const {
  return HistoryToProto(*history_, request);
}

}  // namespace tally::server
