// The options of a rule or pre-step (docs/algorithms.md): what every one of
// them takes (RuleOptions: name, f, expected batch size, seed) and, for those
// that have settings of their own, one struct each, held in
// RuleOptions::settings.
//
// Every field has a default that works. Adding a rule with settings
// (docs/algorithms.md#adding-a-rule-or-pre-step): its struct here and in
// RuleSettings, its typed factory and registry line (builtin_rules.h,
// rule.cc), its config fields and their one translation from the config
// (server/strategy_options.cc), which does not compile until it handles
// every struct of RuleSettings.
#ifndef TALLY_AGGREGATORS_RULES_RULE_OPTIONS_H_
#define TALLY_AGGREGATORS_RULES_RULE_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

namespace tally::aggregators {

// The settings of a rule or pre-step that has none (average, median,
// trimmed_mean, krum, multi_krum, meamed, bulyan, caf; nnm, arc), and "the
// named rule's defaults" in RuleOptions::settings.
using NoOptions = std::monostate;

// geometric_median (docs/algorithms.md#geometric-median).
struct GeometricMedianOptions {
  double nu = 0.1;     // Smoothing nu (> 0).
  int iterations = 3;  // Weiszfeld iterations T (>= 0).
};

// centered_clipping (docs/algorithms.md#centered-clipping).
struct CenteredClippingOptions {
  double tau = 100.0;  // Clipping radius tau (> 0).
  int iterations = 1;  // Iterations L (>= 1).
};

// mda (docs/algorithms.md#mda).
struct MdaOptions {
  // Refuse batches with more than this many subsets C(n, f) (>= 1).
  double max_subsets = 1e6;
};

// monna (docs/algorithms.md#monna).
struct MonnaOptions {
  size_t idx = 0;  // Index of the trusted row (< n for every batch).
};

// flag (docs/algorithms.md#flag-aggregator; flag.h).
struct FlagOptions {
  // Subspace dimension r (>= 1, as the reference code), or 0 = ceil(n/2) per
  // batch, as the paper's experiments: better without attack, worse under
  // sign-flipping attackers (docs/strategies.md).
  int r = 1;
  double lambda = 0.0;  // Pairwise regulariser (>= 0).
  int iterations = 1;   // IRLS iterations (>= 1).
  // The initial subspace (flag.h FlagInit): "deterministic" (P0 = 0) or
  // "random" (Y0 from U(-0.5, 0.5)^{d x r} drawn with RuleOptions::seed;
  // needs d >= r).
  std::string init = "deterministic";
  // The output scale (flag.h FlagScale): "median_norm" (the inputs' scale)
  // or "reference" (the reference code's (1/r) Y Yᵀ Σ x_i of unit vectors).
  std::string scale = "median_norm";
};

// The pre-step clipping (docs/algorithms.md#clipping).
struct ClippingOptions {
  double clip_norm = 2.0;  // Norm bound c (> 0).
};

// The pre-step bucketing (docs/algorithms.md#bucketing).
struct BucketingOptions {
  size_t bucket_size = 1;  // Bucket size s (>= 1).
};

// One rule's or pre-step's own settings.
using RuleSettings =
    std::variant<NoOptions, GeometricMedianOptions, CenteredClippingOptions, MdaOptions,
                 MonnaOptions, FlagOptions, ClippingOptions, BucketingOptions>;

// What CreateRule and CreatePreStep take.
struct RuleOptions {
  std::string name;  // Registered name, e.g. "krum", "nnm".
  size_t f = 0;      // Declared number of Byzantine clients.
  // Expected clients per round, 0 = unknown. When set, creating the rule
  // also checks f (and monna's idx) against it; f is checked again for every
  // batch anyway.
  size_t expected_n = 0;
  // RNG seed of bucketing's permutations, CAF's power-iteration start vectors
  // and flag's random initial subspace.
  uint64_t seed = 1;
  // The named rule's own settings: NoOptions (its defaults) or its struct
  // above; another rule's struct is refused (INVALID_ARGUMENT).
  RuleSettings settings;
};

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_RULE_OPTIONS_H_
