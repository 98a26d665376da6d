#include "core/evaluation_round.h"

#include "absl/strings/str_cat.h"

namespace tally {

bool EvaluationDue(uint64_t rounds_completed, uint32_t every_rounds, bool at_end,
                   uint64_t total_rounds) {
  if (rounds_completed == 0) return false;
  if (every_rounds != 0 && rounds_completed % every_rounds == 0) return true;
  return at_end && total_rounds != 0 && rounds_completed == total_rounds;
}

EvaluationRound::EvaluationRound(uint64_t evaluation_id, uint64_t model_version, uint64_t round,
                                 const std::vector<std::string>& asked, absl::Time deadline,
                                 MetricsAggregator* metrics)
    : evaluation_id_(evaluation_id),
      model_version_(model_version),
      round_(round),
      deadline_(deadline),
      metrics_(metrics) {
  for (const std::string& id : asked) {
    if (clients_.emplace(id, State::kAsked).second) ++waiting_;
  }
}

bool EvaluationRound::ShouldEvaluate(const std::string& client_id) const {
  auto it = clients_.find(client_id);
  return !closed_ && it != clients_.end() && it->second == State::kAsked;
}

absl::StatusOr<uint32_t> EvaluationRound::Report(const std::string& client_id,
                                                 uint64_t evaluation_id, uint64_t model_version,
                                                 uint64_t num_examples,
                                                 const std::map<std::string, double>& metrics,
                                                 size_t max_metric_names) {
  if (evaluation_id != evaluation_id_ || closed_) {
    return absl::AbortedError(absl::StrCat("evaluation ", evaluation_id,
                                           " is not open (the open one: ",
                                           closed_ ? 0 : evaluation_id_, ")"));
  }
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second == State::kGone) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client '", client_id, "' was not asked to take part in evaluation ", evaluation_id));
  }
  if (it->second == State::kReported) {
    return absl::AlreadyExistsError(absl::StrCat("client '", client_id,
                                                 "' already reported for evaluation ", evaluation_id));
  }
  if (model_version != model_version_) {
    return absl::InvalidArgumentError(absl::StrCat("evaluation ", evaluation_id, " is of version ",
                                                   model_version_, ", the report names ",
                                                   model_version));
  }
  if (num_examples == 0) return absl::InvalidArgumentError("num_examples must be > 0");
  if (absl::Status valid = ValidateMetrics(metrics, max_metric_names); !valid.ok()) return valid;
  metrics_->Add(static_cast<double>(num_examples), metrics);
  it->second = State::kReported;
  --waiting_;
  num_examples_ += num_examples;
  return ++reported_;
}

void EvaluationRound::Forget(const std::string& client_id) {
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second != State::kAsked) return;
  it->second = State::kGone;
  --waiting_;
}

bool EvaluationRound::Complete(absl::Time now) const { return waiting_ == 0 || now >= deadline_; }

EvaluationResult EvaluationRound::Finish(absl::Time now) {
  EvaluationResult result;
  result.evaluation_id = evaluation_id_;
  result.model_version = model_version_;
  result.round = round_;
  result.asked = static_cast<uint32_t>(clients_.size());
  result.reported = reported_;
  result.num_examples = num_examples_;
  result.timed_out = waiting_ > 0 && now >= deadline_;
  if (!closed_) result.metrics = metrics_->TakeRound();
  closed_ = true;
  return result;
}

}  // namespace tally
