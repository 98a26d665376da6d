// Iterative rules (docs/algorithms.md#geometric-median,
// docs/algorithms.md#centered-clipping): GeometricMedian (smoothed Weiszfeld)
// and CenteredClipping (stateful). Both keep one float64 d-vector (the
// iterate) and make two passes over the batch per iteration: the distances
// to the iterate, then the weighted update.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

// Smoothed Weiszfeld from z = 0 (byzfl, not from the mean): T times
// β_i = max(‖x_i − z‖, ν), z <- Σ(x_i/β_i) / Σ(1/β_i). Rows containing ±inf
// are dropped (NaN rows are not: byzfl behaviour).
class GeometricMedian final : public Rule {
 public:
  GeometricMedian(RuleSpec spec, double nu, int iterations)
      : Rule(std::move(spec)), nu_(nu), iterations_(iterations) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    if (iterations_ == 0) {
      std::fill(out, out + d, 0.0f);
      return absl::OkStatus();
    }
    std::vector<double> z(d, 0.0);
    std::vector<double> weights(n);
    // From z = 0 the distances are the norms: a row holding ±inf has an
    // infinite one and keeps weight 0 (dropped) in every iteration. Each
    // update pass also yields the next iteration's distances.
    std::vector<double> squared = SquaredDistancesTo(batch, n, d, nullptr);
    for (int t = 0; t < iterations_; ++t) {
      double total = 0.0;
      for (size_t i = 0; i < n; ++i) {
        if (t == 0 || weights[i] > 0.0) {
          weights[i] = std::isinf(squared[i]) ? 0.0 : 1.0 / std::max(std::sqrt(squared[i]), nu_);
        }
        total += weights[i];
      }
      if (total == 0.0) {
        return absl::InvalidArgumentError(absl::StrCat(name(), ": every row contains +-inf"));
      }
      for (double& w : weights) w /= total;
      if (t + 1 < iterations_) {
        squared = UpdateWithRowsThenDistances(batch, n, d, weights, 0.0, &z);
      } else {
        UpdateWithRows(batch, n, d, weights, 0.0, &z);
      }
    }
    SetRelativeInfluence(weights);
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
    std::vector<double> weights(n);
    for (int l = 0; l < iterations_; ++l) {
      const std::vector<double> squared = SquaredDistancesTo(batch, n, d, v_.data());
      double kept = 0.0;  // Σ_i c_i / n: the weight moved from v to the rows.
      for (size_t i = 0; i < n; ++i) {
        const double dist = std::sqrt(squared[i]);
        const double c = dist > 0.0 ? std::min(1.0, tau_ / dist) : 1.0;
        weights[i] = c / static_cast<double>(n);
        kept += weights[i];
      }
      UpdateWithRows(batch, n, d, weights, 1.0 - kept, &v_);
    }
    // The last iteration's clipping factors c_i = n · weight_i (L >= 1).
    mutable_influence() = weights;
    for (double& factor : mutable_influence()) factor *= static_cast<double>(n);
    for (size_t j = 0; j < d; ++j) out[j] = static_cast<float>(v_[j]);
    return absl::OkStatus();
  }

  const double tau_;
  const int iterations_;
  std::vector<double> v_;  // The previous output (the next call's start).
};

}  // namespace

RuleOr NewGeometricMedian(const GeometricMedianOptions& options, RuleSpec spec) {
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

RuleOr NewCenteredClipping(const CenteredClippingOptions& options, RuleSpec spec) {
  if (!(options.tau > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("centered_clipping: tau must be > 0, got ", options.tau));
  }
  if (options.iterations < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "centered_clipping: iterations (L) must be >= 1, got ", options.iterations));
  }
  return std::make_unique<CenteredClipping>(std::move(spec), options.tau, options.iterations);
}

}  // namespace tally::aggregators
