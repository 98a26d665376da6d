// Subset-mean rules (docs/algorithms.md#mda, docs/algorithms.md#monna): MDA
// (minimum-diameter subset)
// and the server-side MoNNA (mean of the n − f nearest to a trusted row).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

// C(n, k) in double (exact up to 2^53, enough to compare with a limit).
double Binomial(size_t n, size_t k) {
  k = std::min(k, n - k);
  double c = 1.0;
  for (size_t i = 1; i <= k; ++i) c = c * static_cast<double>(n - k + i) / static_cast<double>(i);
  return std::round(c);
}

// Subsets of size n − f in lexicographic order; keeps the first one whose
// diameter (max pairwise distance) is strictly smaller than the best so far;
// returns its mean. A depth-first walk that prunes prefixes whose diameter
// already reaches the best visits the same candidates in the same order, so
// the result is the reference's. n − f = 1: diameter 0, subset {0} (the
// reference crashes there).
class Mda final : public Rule {
 public:
  Mda(RuleSpec spec, double max_subsets) : Rule(std::move(spec)), max_subsets_(max_subsets) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const double subsets = Binomial(n, f());
    if (subsets > max_subsets_) {
      return absl::InvalidArgumentError(absl::StrCat(
          name(), ": C(n=", n, ", f=", f(), ") = ", subsets, " subsets exceeds the limit of ",
          max_subsets_, "; lower f or use another rule"));
    }
    dist_ = SquaredDistances(batch, n, d);
    n_ = n;
    size_ = n - f();
    best_diameter_ = std::numeric_limits<double>::infinity();
    best_.clear();
    current_.clear();
    Search(0, 0.0);
    MeanOfRows(batch, d, best_, out);
    SetSelectedInfluence(best_, n);
    return absl::OkStatus();
  }

  void Search(size_t next, double diameter) {
    if (current_.size() == size_) {
      if (diameter < best_diameter_) {
        best_diameter_ = diameter;
        best_ = current_;
      }
      return;
    }
    const size_t missing = size_ - current_.size();
    for (size_t i = next; i + missing <= n_; ++i) {
      double grown = diameter;
      for (size_t j : current_) grown = std::max(grown, dist_[i * n_ + j]);
      if (grown >= best_diameter_) continue;
      current_.push_back(i);
      Search(i + 1, grown);
      current_.pop_back();
    }
  }

  const double max_subsets_;
  // Scratch of one AggregateRows call.
  std::vector<double> dist_;
  size_t n_ = 0;
  size_t size_ = 0;
  double best_diameter_ = 0.0;
  std::vector<size_t> best_;
  std::vector<size_t> current_;
};

// Mean of the n − f rows nearest (Euclidean, (value, index) ties) to row idx,
// itself included.
class Monna final : public Rule {
 public:
  Monna(RuleSpec spec, size_t idx) : Rule(std::move(spec)), idx_(idx) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    if (idx_ >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": trusted row idx=", idx_, " requires n > idx, got n=", n));
    }
    const std::vector<double> trusted(batch + idx_ * d, batch + (idx_ + 1) * d);
    const std::vector<double> dist = SquaredDistancesTo(batch, n, d, trusted.data());
    const std::vector<size_t> nearest = SmallestK(dist, n - f());
    MeanOfRows(batch, d, nearest, out);
    SetSelectedInfluence(nearest, n);
    return absl::OkStatus();
  }

  const size_t idx_;
};

}  // namespace

RuleOr NewMda(const MdaOptions& options, RuleSpec spec) {
  if (!(options.max_subsets >= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mda: max_subsets must be >= 1, got ", options.max_subsets));
  }
  return std::make_unique<Mda>(std::move(spec), options.max_subsets);
}

RuleOr NewMonna(const MonnaOptions& options, RuleSpec spec) {
  if (spec.expected_n > 0 && options.idx >= spec.expected_n) {
    return absl::InvalidArgumentError(absl::StrCat("monna: trusted row idx=", options.idx,
                                                   " requires n > idx, got n=",
                                                   spec.expected_n));
  }
  return std::make_unique<Monna>(std::move(spec), options.idx);
}

}  // namespace tally::aggregators
