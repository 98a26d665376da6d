#include "aggregators/rules/rule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "aggregators/rules/builtin_rules.h"
#include "core/status_macros.h"

namespace tally::aggregators {
namespace {

absl::Status CheckShapes(absl::string_view name, size_t batch_size, size_t n, size_t d) {
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(name, ": empty batch (n=0)"));
  if (batch_size != n * d) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": batch has ", batch_size,
                                                   " floats, expected n*d = ", n, "*", d));
  }
  return absl::OkStatus();
}

// Empty, or n finite values >= 0 with a positive sum.
absl::Status CheckWeights(absl::string_view name, absl::Span<const double> weights, size_t n) {
  if (weights.empty()) return absl::OkStatus();
  if (weights.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", weights.size(), " weights for n=", n, " rows"));
  }
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(weights[i]) || weights[i] < 0.0) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": weight ", i, " is ", weights[i],
                                                     "; weights must be finite and >= 0"));
    }
    sum += weights[i];
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": weights sum to ", sum, "; need a finite positive sum"));
  }
  return absl::OkStatus();
}

struct RuleEntry {
  const char* name;
  FRequirement requirement;
  RuleFactory create;
};
struct PreStepEntry {
  const char* name;
  FRequirement requirement;
  PreStepFactory create;
  bool keeps_row_order;  // See KeepsRowOrder.
};

// The explicit registry (no static registrars: they are dropped from static
// libraries). f requirements: docs/algorithms.md#which-f-a-rule-accepts; Flag
// ignores f (as the reference code).
const std::vector<RuleEntry>& RuleTable() {
  static const auto* table = new std::vector<RuleEntry>{
      {"average", FRequirement::kNone, &NewAverage},
      {"median", FRequirement::kNone, &NewMedian},
      {"trimmed_mean", FRequirement::kHonestMajority, &NewTrimmedMean},
      {"geometric_median", FRequirement::kNone, &NewGeometricMedian},
      {"krum", FRequirement::kHonestMajority, &NewKrum},
      {"multi_krum", FRequirement::kHonestMajority, &NewMultiKrum},
      {"centered_clipping", FRequirement::kNone, &NewCenteredClipping},
      {"mda", FRequirement::kHonestMajority, &NewMda},
      {"monna", FRequirement::kHonestMajority, &NewMonna},
      {"meamed", FRequirement::kHonestMajority, &NewMeamed},
      {"bulyan", FRequirement::kBulyan, &NewBulyan},
      {"flag", FRequirement::kNone, &NewFlag},
      {"caf", FRequirement::kHonestMajority, &NewCaf},
  };
  return *table;
}

const std::vector<PreStepEntry>& PreStepTable() {
  static const auto* table = new std::vector<PreStepEntry>{
      {"nnm", FRequirement::kFLessThanN, &NewNnm, true},
      {"clipping", FRequirement::kNone, &NewClipping, true},
      {"arc", FRequirement::kFAtMostN, &NewArc, true},
      {"bucketing", FRequirement::kNone, &NewBucketing, false},
  };
  return *table;
}

template <typename Entry>
const Entry* Find(const std::vector<Entry>& table, absl::string_view name) {
  for (const Entry& entry : table) {
    if (name == entry.name) return &entry;
  }
  return nullptr;
}

template <typename Entry>
std::vector<std::string> Names(const std::vector<Entry>& table) {
  std::vector<std::string> names;
  for (const Entry& entry : table) names.push_back(entry.name);
  return names;
}

// Looks `options.name` up in `table` and creates it, checking f against
// expected_n when that is set.
template <typename Entry>
auto CreateFrom(const std::vector<Entry>& table, const RuleOptions& options,
                absl::string_view kind) -> decltype(table[0].create(options, RuleSpec{})) {
  const Entry* entry = Find(table, options.name);
  if (entry == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown ", kind, " '", options.name,
                                                   "' (known: ", absl::StrJoin(Names(table), ", "),
                                                   ")"));
  }
  if (options.expected_n > 0) {
    TALLY_RETURN_IF_ERROR(CheckF(entry->name, entry->requirement, options.f, options.expected_n));
  }
  return entry->create(options, RuleSpec{entry->name, options.f, entry->requirement});
}

}  // namespace

absl::Status CheckF(absl::string_view rule, FRequirement req, size_t f, size_t n) {
  const char* bound = nullptr;
  switch (req) {
    case FRequirement::kNone:
      return absl::OkStatus();
    case FRequirement::kHonestMajority:
      if (n > 2 * f) return absl::OkStatus();
      bound = "n > 2f";
      break;
    case FRequirement::kFLessThanN:
      if (n > f) return absl::OkStatus();
      bound = "n > f";
      break;
    case FRequirement::kFAtMostN:
      if (n >= f) return absl::OkStatus();
      bound = "n >= f";
      break;
    case FRequirement::kBulyan:
      if (n >= 4 * f + 3) return absl::OkStatus();
      bound = "n >= 4f + 3";
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(rule, ": f=", f, " requires ", bound, ", got n=", n));
}

absl::Status Rule::Aggregate(absl::Span<const float> batch, size_t n, size_t d,
                             absl::Span<float> out, absl::Span<const double> weights) {
  TALLY_RETURN_IF_ERROR(CheckShapes(name(), batch.size(), n, d));
  if (out.size() != d) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": output has ", out.size(), " floats, expected d=", d));
  }
  TALLY_RETURN_IF_ERROR(CheckF(name(), spec_.requirement, spec_.f, n));
  TALLY_RETURN_IF_ERROR(CheckWeights(name(), weights, n));
  weights_ = weights;
  influence_.clear();
  absl::Status status = AggregateRows(batch.data(), n, d, out.data());
  weights_ = {};
  if (!status.ok() || !report_influence_) influence_.clear();
  return status;
}

void Rule::SetRelativeInfluence(const std::vector<double>& values) {
  double max = 0.0;
  for (double v : values) max = std::max(max, v);
  influence_.assign(values.size(), 0.0);
  if (!(max > 0.0)) return;
  for (size_t i = 0; i < values.size(); ++i) {
    influence_[i] = values[i] > 0.0 ? std::min(1.0, values[i] / max) : 0.0;
  }
}

void Rule::SetSelectedInfluence(absl::Span<const size_t> selected, size_t n) {
  influence_.assign(n, 0.0);
  for (size_t i : selected) influence_[i] = 1.0;
}

absl::StatusOr<size_t> PreStep::Apply(absl::Span<float> rows, size_t n, size_t d) {
  if (rows.size() < n * d) {
    return absl::InvalidArgumentError(absl::StrCat(name(), ": rows hold ", rows.size(),
                                                   " floats, need n*d = ", n, "*", d));
  }
  TALLY_RETURN_IF_ERROR(CheckShapes(name(), n * d, n, d));
  TALLY_RETURN_IF_ERROR(CheckF(name(), spec_.requirement, spec_.f, n));
  mixed_from_.clear();
  return ApplyRows(rows.data(), n, d);
}

std::vector<double> InfluenceBeforeMixing(absl::Span<const double> influence,
                                          const std::vector<std::vector<size_t>>& mixed_from) {
  if (mixed_from.size() != influence.size()) return {};
  std::vector<double> before(influence.size(), 0.0);
  for (size_t i = 0; i < influence.size(); ++i) {
    for (size_t j : mixed_from[i]) before[j] = std::max(before[j], influence[i]);
  }
  return before;
}

absl::StatusOr<std::unique_ptr<Rule>> CreateRule(const RuleOptions& options) {
  return CreateFrom(RuleTable(), options, "rule");
}

absl::StatusOr<std::unique_ptr<PreStep>> CreatePreStep(const RuleOptions& options) {
  return CreateFrom(PreStepTable(), options, "pre-step");
}

std::vector<std::string> RuleNames() { return Names(RuleTable()); }
std::vector<std::string> PreStepNames() { return Names(PreStepTable()); }

FRequirement RequirementOf(absl::string_view name) {
  if (const RuleEntry* entry = Find(RuleTable(), name)) return entry->requirement;
  if (const PreStepEntry* entry = Find(PreStepTable(), name)) return entry->requirement;
  return FRequirement::kNone;
}

bool KeepsRowOrder(absl::string_view pre_step) {
  const PreStepEntry* entry = Find(PreStepTable(), pre_step);
  return entry != nullptr && entry->keeps_row_order;
}

}  // namespace tally::aggregators
