#include "aggregators/rules/rule.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <variant>

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

// A typed factory (builtin_rules.h) called with the settings `options`
// carries: Settings{} when it carries none (NoOptions), INVALID_ARGUMENT when
// it carries another rule's.
template <typename Made, typename Settings>
absl::StatusOr<std::unique_ptr<Made>> CreateWith(
    absl::StatusOr<std::unique_ptr<Made>> (*create)(const Settings&, RuleSpec),
    const RuleOptions& options, RuleSpec spec) {
  if (std::holds_alternative<NoOptions>(options.settings)) {
    return create(Settings{}, std::move(spec));
  }
  if (const Settings* settings = std::get_if<Settings>(&options.settings)) {
    return create(*settings, std::move(spec));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(spec.name, ": the options carry the settings of another rule"));
}

template <typename Made, typename Settings>
RuleSettings DefaultsOf(absl::StatusOr<std::unique_ptr<Made>> (*)(const Settings&, RuleSpec)) {
  return Settings{};
}

// The registry's view of the typed factory `New`.
template <auto New>
auto CreateTyped(const RuleOptions& options, RuleSpec spec) {
  return CreateWith(New, options, std::move(spec));
}
template <auto New>
RuleSettings Defaults() {
  return DefaultsOf(New);
}

struct RuleEntry {
  const char* name;
  FRequirement requirement;
  RuleOr (*create)(const RuleOptions&, RuleSpec);
  RuleSettings (*defaults)();
};
struct PreStepEntry {
  const char* name;
  FRequirement requirement;
  PreStepOr (*create)(const RuleOptions&, RuleSpec);
  RuleSettings (*defaults)();
  bool keeps_row_order;  // See KeepsRowOrder.
};

template <auto New>
RuleEntry RuleEntryOf(const char* name, FRequirement requirement) {
  return {name, requirement, &CreateTyped<New>, &Defaults<New>};
}
template <auto New>
PreStepEntry PreStepEntryOf(const char* name, FRequirement requirement, bool keeps_row_order) {
  return {name, requirement, &CreateTyped<New>, &Defaults<New>, keeps_row_order};
}

// The explicit registry (no static registrars: they are dropped from static
// libraries). f requirements: docs/algorithms.md#which-f-a-rule-accepts; Flag
// ignores f (as the reference code).
const std::vector<RuleEntry>& RuleTable() {
  static const auto* table = new std::vector<RuleEntry>{
      RuleEntryOf<&NewAverage>("average", FRequirement::kNone),
      RuleEntryOf<&NewMedian>("median", FRequirement::kNone),
      RuleEntryOf<&NewTrimmedMean>("trimmed_mean", FRequirement::kHonestMajority),
      RuleEntryOf<&NewGeometricMedian>("geometric_median", FRequirement::kNone),
      RuleEntryOf<&NewKrum>("krum", FRequirement::kHonestMajority),
      RuleEntryOf<&NewMultiKrum>("multi_krum", FRequirement::kHonestMajority),
      RuleEntryOf<&NewCenteredClipping>("centered_clipping", FRequirement::kNone),
      RuleEntryOf<&NewMda>("mda", FRequirement::kHonestMajority),
      RuleEntryOf<&NewMonna>("monna", FRequirement::kHonestMajority),
      RuleEntryOf<&NewMeamed>("meamed", FRequirement::kHonestMajority),
      RuleEntryOf<&NewBulyan>("bulyan", FRequirement::kBulyan),
      RuleEntryOf<&NewFlag>("flag", FRequirement::kNone),
      RuleEntryOf<&NewCaf>("caf", FRequirement::kHonestMajority),
  };
  return *table;
}

const std::vector<PreStepEntry>& PreStepTable() {
  static const auto* table = new std::vector<PreStepEntry>{
      PreStepEntryOf<&NewNnm>("nnm", FRequirement::kFLessThanN, true),
      PreStepEntryOf<&NewClipping>("clipping", FRequirement::kNone, true),
      PreStepEntryOf<&NewArc>("arc", FRequirement::kFAtMostN, true),
      PreStepEntryOf<&NewBucketing>("bucketing", FRequirement::kNone, false),
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
  return entry->create(options, RuleSpec{entry->name, options.f, entry->requirement,
                                         options.expected_n, options.seed});
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

RuleSettings DefaultSettings(absl::string_view name) {
  if (const RuleEntry* entry = Find(RuleTable(), name)) return entry->defaults();
  if (const PreStepEntry* entry = Find(PreStepTable(), name)) return entry->defaults();
  return NoOptions{};
}

bool KeepsRowOrder(absl::string_view pre_step) {
  const PreStepEntry* entry = Find(PreStepTable(), pre_step);
  return entry != nullptr && entry->keeps_row_order;
}

}  // namespace tally::aggregators
