#include "server/strategy_options.h"

#include <variant>

#include "aggregators/rules/rule.h"

namespace tally::server {
namespace {

using tally::v1::StrategyConfig;

// One overload per settings struct of aggregators::RuleSettings: a struct
// without one here does not compile (std::visit below).
void Fill(const StrategyConfig&, aggregators::NoOptions&) {}

void Fill(const StrategyConfig& s, aggregators::GeometricMedianOptions& o) {
  if (s.has_nu()) o.nu = s.nu();
  if (s.has_iterations()) o.iterations = s.iterations();
}

void Fill(const StrategyConfig& s, aggregators::CenteredClippingOptions& o) {
  if (s.has_tau()) o.tau = s.tau();
  if (s.has_clip_iterations()) o.iterations = s.clip_iterations();
}

void Fill(const StrategyConfig&, aggregators::MdaOptions&) {}  // No config field.

// strategy.idx stays unused: the server puts the trusted client's row first.
void Fill(const StrategyConfig&, aggregators::MonnaOptions& o) { o.idx = 0; }

void Fill(const StrategyConfig& s, aggregators::FlagOptions& o) {
  if (s.has_flag_r()) o.r = s.flag_r();
  if (s.has_flag_lambda()) o.lambda = s.flag_lambda();
  if (s.has_flag_iterations()) o.iterations = s.flag_iterations();
  if (s.has_flag_init()) o.init = s.flag_init();
  if (s.has_flag_scale()) o.scale = s.flag_scale();
}

void Fill(const StrategyConfig& s, aggregators::ClippingOptions& o) {
  if (s.has_clip_norm()) o.clip_norm = s.clip_norm();
}

void Fill(const StrategyConfig& s, aggregators::BucketingOptions& o) {
  if (s.has_bucket_size()) o.bucket_size = s.bucket_size();
}

}  // namespace

aggregators::RuleOptions RuleOptionsFromConfig(const StrategyConfig& strategy,
                                               const std::string& name, size_t expected_n) {
  aggregators::RuleOptions options;
  options.name = name;
  options.f = strategy.f();
  options.expected_n = expected_n;
  if (strategy.has_seed()) options.seed = strategy.seed();
  options.settings = aggregators::DefaultSettings(name);
  std::visit([&strategy](auto& settings) { Fill(strategy, settings); }, options.settings);
  return options;
}

}  // namespace tally::server
