// Iterative rules of ALGORITHMS.md §2.4: GeometricMedian (smoothed Weiszfeld)
// and CenteredClipping (stateful). Both keep one float64 d-vector (the
// iterate) and make two passes over the batch per iteration.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

// ‖x − z‖ in float64.
double DistanceTo(const float* x, const std::vector<double>& z) {
  double sum = 0.0;
  for (size_t j = 0; j < z.size(); ++j) {
    const double diff = x[j] - z[j];
    sum += diff * diff;
  }
  return std::sqrt(sum);
}

// z <- offset * z + Σ_i weights[i] * x_rows[i].
void WeightedUpdate(const float* batch, size_t d, const std::vector<size_t>& rows,
                    const std::vector<double>& weights, double offset, std::vector<double>* z) {
  for (double& v : *z) v *= offset;
  for (size_t p = 0; p < rows.size(); ++p) {
    const float* x = batch + rows[p] * d;
    const double w = weights[p];
    for (size_t j = 0; j < d; ++j) (*z)[j] += w * x[j];
  }
}

// Smoothed Weiszfeld from z = 0 (byzfl, not from the mean): T times
// β_i = max(‖x_i − z‖, ν), z <- Σ(x_i/β_i) / Σ(1/β_i). Rows containing ±inf
// are dropped (NaN rows are not: byzfl behaviour).
class GeometricMedian final : public Rule {
 public:
  GeometricMedian(RuleSpec spec, double nu, int iterations)
      : Rule(std::move(spec)), nu_(nu), iterations_(iterations) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    std::vector<size_t> rows;
    for (size_t i = 0; i < n; ++i) {
      const float* x = batch + i * d;
      bool has_inf = false;
      for (size_t j = 0; j < d && !has_inf; ++j) has_inf = std::isinf(x[j]);
      if (!has_inf) rows.push_back(i);
    }
    if (rows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name(), ": every row contains +-inf"));
    }
    std::vector<double> z(d, 0.0);
    std::vector<double> weights(rows.size());
    for (int t = 0; t < iterations_; ++t) {
      double total = 0.0;
      for (size_t p = 0; p < rows.size(); ++p) {
        weights[p] = 1.0 / std::max(DistanceTo(batch + rows[p] * d, z), nu_);
        total += weights[p];
      }
      for (double& w : weights) w /= total;
      WeightedUpdate(batch, d, rows, weights, 0.0, &z);
    }
    for (size_t j = 0; j < d; ++j) out[j] = static_cast<float>(z[j]);
    return absl::OkStatus();
  }

  const double nu_;
  const int iterations_;
};

// v_{l+1} = v_l + (1/n) Σ_i (x_i − v_l)·min(1, τ/‖x_i − v_l‖), L times from
// the previous call's output (zeros on the first call); zero distance ->
// factor 1. The state is reset to zeros if d changes between calls.
class CenteredClipping final : public Rule {
 public:
  CenteredClipping(RuleSpec spec, double tau, int iterations)
      : Rule(std::move(spec)), tau_(tau), iterations_(iterations) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    if (v_.size() != d) v_.assign(d, 0.0);
    const std::vector<size_t> rows = AllRows(n);
    std::vector<double> weights(n);
    for (int l = 0; l < iterations_; ++l) {
      double kept = 0.0;  // Σ_i c_i / n: the weight moved from v to the rows.
      for (size_t i = 0; i < n; ++i) {
        const double dist = DistanceTo(batch + i * d, v_);
        const double c = dist > 0.0 ? std::min(1.0, tau_ / dist) : 1.0;
        weights[i] = c / static_cast<double>(n);
        kept += weights[i];
      }
      WeightedUpdate(batch, d, rows, weights, 1.0 - kept, &v_);
    }
    for (size_t j = 0; j < d; ++j) out[j] = static_cast<float>(v_[j]);
    return absl::OkStatus();
  }

  const double tau_;
  const int iterations_;
  std::vector<double> v_;  // The previous output (the next call's start).
};

}  // namespace

absl::StatusOr<std::unique_ptr<Rule>> NewGeometricMedian(const RuleOptions& options,
                                                         RuleSpec spec) {
  if (!(options.nu > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometric_median: nu must be > 0, got ", options.nu));
  }
  if (options.iterations < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometric_median: iterations (T) must be >= 0, got ", options.iterations));
  }
  return std::make_unique<GeometricMedian>(std::move(spec), options.nu, options.iterations);
}

absl::StatusOr<std::unique_ptr<Rule>> NewCenteredClipping(const RuleOptions& options,
                                                          RuleSpec spec) {
  if (!(options.tau > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("centered_clipping: tau must be > 0, got ", options.tau));
  }
  if (options.clip_iterations < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "centered_clipping: iterations (L) must be >= 1, got ", options.clip_iterations));
  }
  return std::make_unique<CenteredClipping>(std::move(spec), options.tau, options.clip_iterations);
}

}  // namespace tally::aggregators
