// Runs the aggregation step's robust rule over a batch of rows and reports
// what it did: the rule's duration, each client's influence (metrics) and a
// log line naming the clients it rejected or down-weighted. Shared by the
// sinks that feed a rule (server/row_sink.h, server/buffered_sink.h).
#ifndef TALLY_SERVER_RULE_RUNNER_H_
#define TALLY_SERVER_RULE_RUNNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "aggregators/step/aggregation_step.h"
#include "server/metrics.h"

namespace tally::server {

class RuleRunner {
 public:
  RuleRunner(aggregators::AggregationStep* step, ServerMetrics* metrics)
      : step_(step), metrics_(metrics) {}

  // The pre-steps and the rule over the n rows of `batch` (modified in
  // place) into `out` (model-sized), then the per-client influence report
  // for step (round) `step`. `weights` and `clients` are per row (empty:
  // uniform / not attributable).
  absl::Status Run(absl::Span<float> batch, size_t n, std::vector<double> weights,
                   const std::vector<std::string>& clients, uint64_t step, absl::Span<float> out);

  // Counts a batch the rule refused (tally_rule_failures_total).
  void CountFailure() { metrics_->rule_failures.Increment(); }

 private:
  void ReportInfluence(uint64_t round, const std::vector<std::string>& clients,
                       const std::vector<double>& influence);

  aggregators::AggregationStep* const step_;
  ServerMetrics* const metrics_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_RULE_RUNNER_H_
