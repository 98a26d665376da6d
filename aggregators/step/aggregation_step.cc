#include "aggregators/step/aggregation_step.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/vector_ops.h"

namespace tally::aggregators {

absl::StatusOr<std::unique_ptr<AggregationStep>> AggregationStep::Create(
    const AggregationStepOptions& options) {
  std::unique_ptr<AggregationStep> step(new AggregationStep());
  TALLY_ASSIGN_OR_RETURN(step->optimizer_, CreateOptimizer(options.optimizer));
  const std::string& rule = options.rule.name;
  if (rule.empty() || rule == "mean") {
    if (!options.pre_steps.empty()) {
      return absl::InvalidArgumentError("the linear mean takes no pre-steps; choose a robust rule");
    }
    return step;
  }
  step->rule_name_ = rule;
  TALLY_ASSIGN_OR_RETURN(step->rule_, CreateRule(options.rule));
  for (const RuleOptions& pre : options.pre_steps) {
    TALLY_ASSIGN_OR_RETURN(std::unique_ptr<PreStep> made, CreatePreStep(pre));
    step->pre_steps_.push_back(std::move(made));
  }
  return step;
}

absl::Status AggregationStep::CombineRows(absl::Span<float> batch, size_t n,
                                          std::vector<double> weights, absl::Span<float> delta,
                                          std::vector<double>* influence) {
  if (rule_ == nullptr) return absl::FailedPreconditionError("CombineRows: no robust rule");
  const size_t d = delta.size();
  bool attributable = true;  // Rows still belong to the clients they came from.
  std::vector<const PreStep*> mixing;
  for (const auto& pre : pre_steps_) {
    TALLY_ASSIGN_OR_RETURN(const size_t kept, pre->Apply(batch, n, d));
    if (kept != n || !KeepsRowOrder(pre->name())) {
      weights.clear();  // Weights belong to clients: merged rows get none.
      attributable = false;
    }
    if (!pre->mixed_from().empty()) mixing.push_back(pre.get());
    n = kept;
    batch = batch.subspan(0, n * d);
  }
  std::fill(delta.begin(), delta.end(), 0.0f);
  rule_->set_report_influence(influence != nullptr);
  TALLY_RETURN_IF_ERROR(rule_->Aggregate(batch, n, d, delta, weights));
  if (influence == nullptr) return absl::OkStatus();
  influence->clear();
  if (!attributable) return absl::OkStatus();
  *influence = rule_->influence();
  // A row after nnm is a mean of several rows: credit each of them.
  for (auto it = mixing.rbegin(); it != mixing.rend(); ++it) {
    *influence = InfluenceBeforeMixing(*influence, (*it)->mixed_from());
  }
  return absl::OkStatus();
}

absl::Status AggregationStep::Apply(absl::Span<const float> current, absl::Span<float> next) {
  Prepare(next.size());
  return ApplyRange(current.data(), next.data(), 0, next.size());
}

absl::Status AggregationStep::ApplyRange(const float* current, float* next, size_t offset,
                                         size_t count) {
  optimizer_->ApplyRange(current, next, offset, count);
  if (!AllFinite(next, count)) {
    return absl::FailedPreconditionError("the new model is not finite");
  }
  return absl::OkStatus();
}

absl::StatusOr<ExactCombination> ExactCombination::Create(absl::Span<const double> coefficients) {
  std::vector<int64_t> quantized;
  for (size_t i = 0; i < coefficients.size(); ++i) {
    const double c = coefficients[i];
    if (!(std::fabs(c) <= kMaxExactFractionalWeight)) {  // Also NaN.
      return absl::InvalidArgumentError(absl::StrCat("coefficient ", i, " (", c, ") is outside [-",
                                                     kMaxExactFractionalWeight, ", ",
                                                     kMaxExactFractionalWeight, "]"));
    }
    quantized.push_back(QuantizeWeight(c));  // In range: no overflowing conversion.
  }
  return ExactCombination(std::move(quantized));
}

void ExactCombination::Combine(absl::Span<const float* const> rows, size_t count, float* out) {
  if (sum_.size() < count) sum_.Reset(count);
  sum_.Clear(0, sum_.size());  // Whole: Clear's ranges end on block bounds.
  for (size_t i = 0; i < rows.size() && i < coefficients_.size(); ++i) {
    sum_.Add(0, rows[i], count, coefficients_[i]);
  }
  sum_.Extract(0, std::ldexp(1.0, kExactWeightFractionBits), absl::MakeSpan(out, count));
}

}  // namespace tally::aggregators
