// The one translation from the config's StrategyConfig to the options of
// the aggregation rules and pre-steps (aggregators/rules/rule_options.h).
#ifndef TALLY_SERVER_STRATEGY_OPTIONS_H_
#define TALLY_SERVER_STRATEGY_OPTIONS_H_

#include <cstddef>
#include <string>

#include "aggregators/rules/rule_options.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

// The options of the rule or pre-step `name` the strategy describes: f, seed,
// `expected_n` (the expected batch size, 0 = unknown) and `name`'s own
// settings (aggregators::DefaultSettings(name) with every field the strategy
// sets; NoOptions for a name without settings or an unknown one, which
// CreateRule then refuses). monna's row idx stays 0: the server puts the
// trusted client's row first.
aggregators::RuleOptions RuleOptionsFromConfig(const tally::v1::StrategyConfig& strategy,
                                               const std::string& name, size_t expected_n);

}  // namespace tally::server

#endif  // TALLY_SERVER_STRATEGY_OPTIONS_H_
