// Factories of the built-in rules and pre-steps, one per registered name,
// each taking its own settings struct (rule_options.h; NoOptions for those
// without settings) and the common RuleSpec. Used only by the registry in
// rule.cc, which hands each factory the settings of the RuleOptions given to
// CreateRule / CreatePreStep. Each validates its own settings
// (INVALID_ARGUMENT naming the rule and the option).
#ifndef TALLY_AGGREGATORS_RULES_BUILTIN_RULES_H_
#define TALLY_AGGREGATORS_RULES_BUILTIN_RULES_H_

#include <memory>

#include "absl/status/statusor.h"
#include "aggregators/rules/rule.h"
#include "aggregators/rules/rule_options.h"

namespace tally::aggregators {

using RuleOr = absl::StatusOr<std::unique_ptr<Rule>>;
using PreStepOr = absl::StatusOr<std::unique_ptr<PreStep>>;

// coordinate_rules.cc
RuleOr NewAverage(const NoOptions&, RuleSpec spec);
RuleOr NewMedian(const NoOptions&, RuleSpec spec);
RuleOr NewTrimmedMean(const NoOptions&, RuleSpec spec);
RuleOr NewMeamed(const NoOptions&, RuleSpec spec);
// iterative_rules.cc
RuleOr NewGeometricMedian(const GeometricMedianOptions& options, RuleSpec spec);
RuleOr NewCenteredClipping(const CenteredClippingOptions& options, RuleSpec spec);
// krum.cc
RuleOr NewKrum(const NoOptions&, RuleSpec spec);
RuleOr NewMultiKrum(const NoOptions&, RuleSpec spec);
RuleOr NewBulyan(const NoOptions&, RuleSpec spec);
// neighbour_rules.cc
RuleOr NewMda(const MdaOptions& options, RuleSpec spec);
RuleOr NewMonna(const MonnaOptions& options, RuleSpec spec);
// flag.cc
RuleOr NewFlag(const FlagOptions& options, RuleSpec spec);
// caf.cc (uses spec.seed)
RuleOr NewCaf(const NoOptions&, RuleSpec spec);

// pre_steps.cc
PreStepOr NewNnm(const NoOptions&, RuleSpec spec);
PreStepOr NewClipping(const ClippingOptions& options, RuleSpec spec);
PreStepOr NewArc(const NoOptions&, RuleSpec spec);
PreStepOr NewBucketing(const BucketingOptions& options, RuleSpec spec);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_BUILTIN_RULES_H_
