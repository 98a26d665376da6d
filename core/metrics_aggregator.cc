#include "core/metrics_aggregator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tally {

absl::StatusOr<MetricAggregation> ParseMetricAggregation(absl::string_view name) {
  if (name == "weighted_mean") return MetricAggregation::kWeightedMean;
  if (name == "sum") return MetricAggregation::kSum;
  if (name == "min") return MetricAggregation::kMin;
  if (name == "max") return MetricAggregation::kMax;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown metric aggregation '", name, "' (weighted_mean, sum, min or max)"));
}

absl::string_view MetricAggregationName(MetricAggregation aggregation) {
  switch (aggregation) {
    case MetricAggregation::kWeightedMean: return "weighted_mean";
    case MetricAggregation::kSum: return "sum";
    case MetricAggregation::kMin: return "min";
    case MetricAggregation::kMax: return "max";
  }
  return "weighted_mean";
}

absl::Status ValidateMetricName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxMetricNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("metric name of ", name.size(),
                                                   " bytes (1..64 allowed)"));
  }
  for (const char c : name) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrFormat("metric name '%s' has byte 0x%02x (printable ASCII only)",
                          absl::CHexEscape(name), static_cast<unsigned char>(c)));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMetrics(const std::map<std::string, double>& metrics, size_t max_entries) {
  if (metrics.size() > max_entries) {
    return absl::InvalidArgumentError(absl::StrCat(metrics.size(), " metrics, more than the ",
                                                   max_entries, " of limits.max_metric_names"));
  }
  for (const auto& [name, value] : metrics) {
    if (absl::Status valid = ValidateMetricName(name); !valid.ok()) return valid;
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric '", name, "' is ", value, " (values must be finite)"));
    }
  }
  return absl::OkStatus();
}

MetricAggregation MetricsAggregator::AggregationOf(const std::string& name) const {
  auto it = options_.aggregation.find(name);
  return it == options_.aggregation.end() ? MetricAggregation::kWeightedMean : it->second;
}

bool MetricsAggregator::AddValue(const std::string& name, double value, double weight) {
  if (names_.count(name) == 0) {
    if (names_.size() >= options_.max_names) {
      ++dropped_total_;
      return false;
    }
    names_.insert(name);
  }
  Accumulator& a = round_[name];
  a.weighted_sum += weight * value;
  a.weight += weight;
  a.sum += value;
  a.min = a.count == 0 ? value : std::min(a.min, value);
  a.max = a.count == 0 ? value : std::max(a.max, value);
  ++a.count;
  return true;
}

size_t MetricsAggregator::Add(double weight, const std::map<std::string, double>& metrics) {
  size_t dropped = 0;
  for (const auto& [name, value] : metrics) {
    if (!AddValue(name, value, weight)) ++dropped;
  }
  ++reports_;
  return dropped;
}

std::map<std::string, double> MetricsAggregator::TakeRound() {
  std::map<std::string, double> result;
  for (const auto& [name, a] : round_) {
    switch (AggregationOf(name)) {
      case MetricAggregation::kWeightedMean:
        result[name] = a.weight > 0 ? a.weighted_sum / a.weight : a.sum / a.count;
        break;
      case MetricAggregation::kSum:
        result[name] = a.sum;
        break;
      case MetricAggregation::kMin:
        result[name] = a.min;
        break;
      case MetricAggregation::kMax:
        result[name] = a.max;
        break;
    }
  }
  round_.clear();
  reports_ = 0;
  return result;
}

}  // namespace tally
