// Robust aggregation rules and pre-steps (docs/algorithms.md): how a batch of
// n client updates, up to f of them faulty or malicious, becomes one.
//
// A batch is n rows of d floats, row-major and contiguous (the round's
// arena). The caller owns the batch and the output; rules keep no pointer to
// either. Rules and pre-steps are created by name (CreateRule,
// CreatePreStep) from a RuleOptions (rule_options.h). A pipeline is
// pre-steps applied in order to a mutable batch, then one rule.
//
// Rows may carry weights (e.g. each client's number of samples). Only
// `average` uses them; the robust rules are unweighted, as in byzfl, and
// ignore them.
//
// Thread safety: a Rule or PreStep is used by one thread at a time (the
// aggregation step of a round); some are stateful across calls (centered
// clipping keeps its previous output, bucketing its RNG).
#ifndef TALLY_AGGREGATORS_RULES_RULE_H_
#define TALLY_AGGREGATORS_RULES_RULE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "aggregators/rules/rule_options.h"

namespace tally::aggregators {

// Which batch sizes n a rule accepts for its declared f
// (docs/algorithms.md#which-f-a-rule-accepts).
enum class FRequirement {
  kNone,             // The rule takes no f.
  kHonestMajority,   // n > 2f (trimmed mean, Krum, MDA, MoNNA, Meamed, ...).
  kFLessThanN,       // n > f (NNM).
  kFAtMostN,         // n >= f (ARC).
  kBulyan,           // n >= 4f + 3.
};

// INVALID_ARGUMENT naming `rule`, f and n when n does not satisfy `req`,
// e.g. "krum: f=3 requires n > 2f, got n=5".
absl::Status CheckF(absl::string_view rule, FRequirement req, size_t f, size_t n);

// What the registry hands to every rule and pre-step it creates.
// (RuleOptions' common fields; the rule's own settings go to its factory
// as their own struct, builtin_rules.h.)
struct RuleSpec {
  std::string name;
  size_t f = 0;
  FRequirement requirement = FRequirement::kNone;
  size_t expected_n = 0;  // RuleOptions::expected_n.
  uint64_t seed = 1;      // RuleOptions::seed.
};

// An aggregation rule: n rows -> one row.
class Rule {
 public:
  // For subclasses (the class is abstract).
  explicit Rule(RuleSpec spec) : spec_(std::move(spec)) {}
  virtual ~Rule() = default;
  Rule(const Rule&) = delete;
  Rule& operator=(const Rule&) = delete;

  const std::string& name() const { return spec_.name; }
  size_t f() const { return spec_.f; }

  // Writes the aggregate of the n x d row-major `batch` to `out` (d floats).
  // `weights` are per-row weights: empty means uniform, otherwise n finite
  // values >= 0 with a positive sum. INVALID_ARGUMENT (naming the rule) if
  // the sizes disagree, n = 0, n is too small for f, or the weights are
  // invalid. Validates, then runs the rule (AggregateRows).
  absl::Status Aggregate(absl::Span<const float> batch, size_t n, size_t d, absl::Span<float> out,
                         absl::Span<const double> weights = {});

  // Whether the rule uses row weights (only `average`); the others ignore
  // them.
  virtual bool UsesWeights() const { return false; }

  // After a successful Aggregate: per input row, how much the rule let it
  // count, in [0, 1]. 1 = fully (as in a plain mean), 0 = rejected. Selection
  // rules (krum, multi_krum, mda, monna, bulyan's selection) give 1 or 0;
  // trimmed_mean and meamed the fraction of coordinates that kept the row
  // (bulyan: the product of both); geometric_median, flag and caf the row's
  // final weight relative to the largest (flag: negative coefficients count
  // as 0); centered_clipping the clipping factor min(1, τ/‖x_i − v‖) of the
  // last iteration. Empty for rules that do not judge rows (average, median),
  // and unless set_report_influence(true) was called: counting per row costs
  // trimmed mean and Meamed ~15 % more time, so only the server asks.
  const std::vector<double>& influence() const { return influence_; }
  void set_report_influence(bool on) { report_influence_ = on; }

 protected:
  // The weights passed to Aggregate (empty = uniform), valid only during
  // AggregateRows.
  absl::Span<const double> weights() const { return weights_; }
  // Whether influence() is wanted (rules may skip costly bookkeeping if not).
  bool report_influence() const { return report_influence_; }
  // Where AggregateRows reports influence (cleared before each call).
  std::vector<double>& mutable_influence() { return influence_; }
  // Sets influence_ to values[i] / max(values) (0 where values[i] <= 0);
  // all zeros if no value is positive.
  void SetRelativeInfluence(const std::vector<double>& values);
  // Sets influence_ to 1 for `selected` rows and 0 for the other of n rows.
  void SetSelectedInfluence(absl::Span<const size_t> selected, size_t n);

 private:
  // Called with validated shapes: batch is n*d floats, out is d floats, n >= 1.
  virtual absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) = 0;

  const RuleSpec spec_;
  absl::Span<const double> weights_;  // Set during Aggregate only.
  std::vector<double> influence_;
  bool report_influence_ = false;
};

// A pre-aggregation step: n rows -> n' <= n rows, in place.
class PreStep {
 public:
  // For subclasses (the class is abstract).
  explicit PreStep(RuleSpec spec) : spec_(std::move(spec)) {}
  virtual ~PreStep() = default;
  PreStep(const PreStep&) = delete;
  PreStep& operator=(const PreStep&) = delete;

  const std::string& name() const { return spec_.name; }

  // Transforms the first n*d floats of `rows` (n rows of d) in place and
  // returns n'; afterwards the first n'*d floats hold the output rows.
  absl::StatusOr<size_t> Apply(absl::Span<float> rows, size_t n, size_t d);

  // After Apply, for a step that averages rows (nnm): per output row, the
  // input rows it is the mean of. Empty for steps whose output row i comes
  // from input row i alone (clipping, arc) or that merge rows (bucketing).
  const std::vector<std::vector<size_t>>& mixed_from() const { return mixed_from_; }

 protected:
  size_t f() const { return spec_.f; }
  std::vector<std::vector<size_t>>& mutable_mixed_from() { return mixed_from_; }

 private:
  virtual absl::StatusOr<size_t> ApplyRows(float* rows, size_t n, size_t d) = 0;

  const RuleSpec spec_;
  std::vector<std::vector<size_t>> mixed_from_;
};

// A rule's influence on rows that a mixing pre-step (PreStep::mixed_from)
// made, carried back to that step's input rows: input row j counts as much
// as the most influential output row that averaged it (krum after nnm
// selects one mean of n - f updates: those n - f count fully, the others
// not at all). `influence` has one value per output row.
std::vector<double> InfluenceBeforeMixing(absl::Span<const double> influence,
                                          const std::vector<std::vector<size_t>>& mixed_from);

// Rules: average, median, trimmed_mean, geometric_median, krum, multi_krum,
// centered_clipping, mda, monna, meamed, bulyan, flag, caf.
// INVALID_ARGUMENT for an unknown name, an out-of-range option, or settings
// of another rule in options.settings.
absl::StatusOr<std::unique_ptr<Rule>> CreateRule(const RuleOptions& options);
// Pre-steps: nnm, clipping, arc, bucketing.
absl::StatusOr<std::unique_ptr<PreStep>> CreatePreStep(const RuleOptions& options);

// The registered names, for messages, docs and conformance tests.
std::vector<std::string> RuleNames();
std::vector<std::string> PreStepNames();
// The settings struct of the registered rule or pre-step `name` at its
// defaults (NoOptions for one without settings or an unknown name): where a
// translation from config or flags starts (server/strategy_options.cc).
RuleSettings DefaultSettings(absl::string_view name);
// The f requirement of a registered rule or pre-step (kNone if unknown).
FRequirement RequirementOf(absl::string_view name);
// Whether output row i of the pre-step `name` derives from input row i alone
// or around it (nnm, clipping, arc), so that a weight of input row i still
// belongs to output row i; false for bucketing (shuffles and merges rows) and
// unknown names.
bool KeepsRowOrder(absl::string_view pre_step);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_RULE_H_
