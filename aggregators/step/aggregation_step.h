// AggregationStep: the server's step from a batch of updates to the next
// model, written once for every place that takes it — the server's
// synchronous rounds and asynchronous flushes (server/coordinator.cc,
// server/coordinator_async.cc), tally-sim's virtual-time simulation
// (sim/virtual_time.cc) and `tally aggregate` (tools/tally_main.cc):
//
//   combine the updates  ->  apply the server optimizer  ->  check finite
//
// Combining is either
// - linear: g = sum_i c_i * x_i, computed exactly (ExactCombination below;
//   the streaming mean of synchronous rounds is the same sum, folded in as
//   bytes arrive by aggregators/rules/striped_accumulator.h), or
// - robust: the pre-steps in order, then the rule, over a batch of rows
//   (CombineRows), with each input row's influence carried back through
//   pre-steps that average rows (nnm).
// docs/algorithms.md explains every rule, pre-step and optimizer.
//
// Thread safety: one thread at a time per instance (the optimizer keeps
// state from step to step; the rules keep scratch).
#ifndef TALLY_AGGREGATORS_STEP_AGGREGATION_STEP_H_
#define TALLY_AGGREGATORS_STEP_AGGREGATION_STEP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "aggregators/optimizers/optimizer.h"
#include "aggregators/rules/rule.h"
#include "core/exact_sum.h"

namespace tally::aggregators {

struct AggregationStepOptions {
  // rule.name: a robust rule (RuleNames()), or "mean" / empty for the linear
  // combination only.
  RuleOptions rule;
  // Pre-steps (PreStepNames()), each with its own options, applied in order
  // before the rule.
  std::vector<RuleOptions> pre_steps;
  OptimizerOptions optimizer;
};

class AggregationStep {
 public:
  // INVALID_ARGUMENT naming the rule, pre-step or optimizer that refuses its
  // options.
  static absl::StatusOr<std::unique_ptr<AggregationStep>> Create(
      const AggregationStepOptions& options);

  // Whether the updates are combined by a robust rule (CombineRows) rather
  // than linearly.
  bool robust() const { return rule_ != nullptr; }
  // Whether CombineRows uses row weights (Rule::UsesWeights: only
  // "average"); false when linear.
  bool UsesWeights() const { return rule_ != nullptr && rule_->UsesWeights(); }
  // The rule's name ("mean" when linear).
  const std::string& rule_name() const { return rule_name_; }
  Optimizer& optimizer() { return *optimizer_; }

  // Robust combination of the n x d row-major `batch` (the pre-steps work in
  // place on it) into `delta` (d floats). `weights`: per row, or empty; they
  // are dropped (uniform) once a pre-step merges or reorders rows. On
  // success `influence` (if not null) holds, per input row, how much it
  // counted in [0, 1] (Rule::influence), or is empty when the rule does not
  // judge rows or a pre-step merged them.
  absl::Status CombineRows(absl::Span<float> batch, size_t n, std::vector<double> weights,
                           absl::Span<float> delta, std::vector<double>* influence);

  // next <- the optimizer's new model from `current` and the aggregate
  // update that `next` holds on entry. FAILED_PRECONDITION if the new model
  // is not finite (then `next` is garbage and the model must stay as it is).
  absl::Status Apply(absl::Span<const float> current, absl::Span<float> next);

  // The same over [offset, offset + count) of the model, for callers that
  // combine and apply block by block while a block is in cache: Prepare once
  // per step, then ApplyRange over disjoint ranges.
  void Prepare(size_t model_size) { optimizer_->Prepare(model_size); }
  absl::Status ApplyRange(const float* current, float* next, size_t offset, size_t count);

 private:
  AggregationStep() = default;

  std::string rule_name_ = "mean";
  std::unique_ptr<Rule> rule_;
  std::vector<std::unique_ptr<PreStep>> pre_steps_;
  std::unique_ptr<Optimizer> optimizer_;
};

// g = sum_i c_i * x_i, exactly and independent of the order of the terms
// (core/exact_sum.h): each coefficient becomes the fixed-point integer
// round(c_i * 2^32) and the products are summed as integers, block by block.
// Coefficients must satisfy |c_i| <= kMaxExactFractionalWeight.
//
// Thread-compatible: one Combine at a time per instance.
class ExactCombination {
 public:
  // INVALID_ARGUMENT naming the first coefficient out of range.
  static absl::StatusOr<ExactCombination> Create(absl::Span<const double> coefficients);

  // out[j] = sum_i c_i * rows[i][j] for j in [0, count): rows[i] points at
  // the block's first value of term i. `out` may be one of the rows.
  void Combine(absl::Span<const float* const> rows, size_t count, float* out);

 private:
  explicit ExactCombination(std::vector<int64_t> coefficients)
      : coefficients_(std::move(coefficients)) {}

  std::vector<int64_t> coefficients_;
  ExactSum sum_;  // Lanes reused from block to block (grown to the largest).
};

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_STEP_AGGREGATION_STEP_H_
