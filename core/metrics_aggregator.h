// Client metrics (docs/workflow.md#metrics): the name -> value maps clients
// send with updates and evaluation reports, combined per round and per name
// over the clients that sent that name. Thread-compatible (the owner
// serializes calls).
#ifndef TALLY_CORE_METRICS_AGGREGATOR_H_
#define TALLY_CORE_METRICS_AGGREGATOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tally {

// How one metric name is combined over the n clients that reported it,
// client i with value v_i and weight w_i (its examples):
//   kWeightedMean: sum_i w_i v_i / sum_i w_i   (the default)
//   kSum:          sum_i v_i
//   kMin, kMax:    min_i v_i, max_i v_i
enum class MetricAggregation { kWeightedMean, kSum, kMin, kMax };

// "weighted_mean", "sum", "min", "max"; INVALID_ARGUMENT otherwise.
absl::StatusOr<MetricAggregation> ParseMetricAggregation(absl::string_view name);
absl::string_view MetricAggregationName(MetricAggregation aggregation);

inline constexpr size_t kMaxMetricNameBytes = 64;

// OK for 1..64 bytes of printable ASCII (0x20..0x7e), else INVALID_ARGUMENT.
absl::Status ValidateMetricName(absl::string_view name);
// Checks what a client sent: at most `max_entries` entries, valid names,
// finite values. INVALID_ARGUMENT naming the first bad entry.
absl::Status ValidateMetrics(const std::map<std::string, double>& metrics, size_t max_entries);

struct MetricsOptions {
  // Distinct names accepted over the aggregator's life (the first ones
  // seen); entries of other names are dropped and counted.
  size_t max_names = 32;
  // Per name; names not listed use kWeightedMean.
  std::map<std::string, MetricAggregation> aggregation;
};

class MetricsAggregator {
 public:
  explicit MetricsAggregator(MetricsOptions options) : options_(std::move(options)) {}

  // Adds one client's (validated) metrics with weight `weight` > 0. Returns
  // the number of entries dropped for the name cap.
  size_t Add(double weight, const std::map<std::string, double>& metrics);
  // One entry; false when dropped for the name cap.
  bool AddValue(const std::string& name, double value, double weight);

  // The combined value of every name reported since the last TakeRound,
  // and resets for the next round (the names admitted stay admitted).
  std::map<std::string, double> TakeRound();

  size_t reports() const { return reports_; }  // Add calls since TakeRound.
  uint64_t dropped_total() const { return dropped_total_; }
  // The names admitted so far (at most max_names).
  const std::set<std::string>& names() const { return names_; }
  MetricAggregation AggregationOf(const std::string& name) const;

 private:
  struct Accumulator {
    double weighted_sum = 0.0;
    double weight = 0.0;
    double sum = 0.0;
    double min = 0.0;
    double max = 0.0;
    size_t count = 0;
  };

  MetricsOptions options_;
  std::set<std::string> names_;
  std::map<std::string, Accumulator> round_;
  size_t reports_ = 0;
  uint64_t dropped_total_ = 0;
};

}  // namespace tally

#endif  // TALLY_CORE_METRICS_AGGREGATOR_H_
