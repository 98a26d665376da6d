// Krum and Multi-Krum as byzfl implements them (docs/algorithms.md#krum), and
// Bulyan (docs/algorithms.md#bulyan) on original-Krum scores. All use one float64 Gram matrix for
// the pairwise distances; selection is then O(n²) per step, O(n² log n) total.
#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

// byzfl Krum scores: per row i, sort D[i, :] by (value, index), drop the first
// entry (self), mean of the next n − f − 1 (0 when there are none).
std::vector<double> ByzflKrumScores(const std::vector<double>& dist, size_t n, size_t f) {
  const size_t neighbours = n - f - 1;
  std::vector<double> scores(n, 0.0);
  if (neighbours == 0) return scores;
  for (size_t i = 0; i < n; ++i) {
    const absl::Span<const double> row(&dist[i * n], n);
    const std::vector<size_t> nearest = SmallestK(row, neighbours + 1);
    double sum = 0.0;
    for (size_t p = 1; p < nearest.size(); ++p) sum += row[nearest[p]];
    scores[i] = sum / static_cast<double>(neighbours);
  }
  return scores;
}

// Returns x_argmin(score) (first index on ties).
class Krum final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const std::vector<double> scores = ByzflKrumScores(SquaredDistances(batch, n, d), n, f());
    const std::vector<size_t> best = SmallestK(scores, 1);
    std::copy_n(batch + best[0] * d, d, out);
    SetSelectedInfluence(best, n);
    return absl::OkStatus();
  }
};

// Mean of the n − f rows with the smallest (score, index).
class MultiKrum final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const std::vector<double> scores = ByzflKrumScores(SquaredDistances(batch, n, d), n, f());
    const std::vector<size_t> selected = SmallestK(scores, n - f());
    MeanOfRows(batch, d, selected, out);
    SetSelectedInfluence(selected, n);
    return absl::OkStatus();
  }
};

// Bulyan: θ = n − 2f rows selected one at a time by original Krum on the
// remaining set (sum of squared distances to the max(|R| − f − 2, 1) nearest
// others), then per coordinate the mean of the β = θ − 2f selected values
// closest to their median, ties by (|s − med|, original row index).
class Bulyan final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const std::vector<size_t> selected = Select(SquaredDistances(batch, n, d), n);
    const size_t beta = selected.size() - 2 * f();
    std::vector<uint64_t> left_out;
    ColumnStatistic(batch, d, selected, ColumnStat::kClosestToMedian, beta, out,
                    report_influence() ? &left_out : nullptr);
    if (!report_influence()) return absl::OkStatus();
    // Selected rows count by the share of coordinates that kept them.
    std::vector<double>& influence = mutable_influence();
    influence.assign(n, 0.0);
    const std::vector<double> share = KeptShare(left_out, d);
    for (size_t p = 0; p < selected.size(); ++p) influence[selected[p]] = share[p];
    return absl::OkStatus();
  }

  // The θ selected rows, ascending (the order does not change the result; the
  // ascending order makes position ties in step 2 original-index ties).
  std::vector<size_t> Select(const std::vector<double>& dist, size_t n) const {
    const size_t theta = n - 2 * f();
    std::vector<size_t> remaining = AllRows(n);
    std::vector<size_t> selected;
    std::vector<double> others;
    while (selected.size() < theta) {
      const size_t count = remaining.size();
      // |R| − f − 2 nearest others, at least 1, at most the |R| − 1 there are.
      const size_t k = std::min(count - 1, count >= f() + 3 ? count - f() - 2 : size_t{1});
      std::vector<double> scores(count, 0.0);
      for (size_t a = 0; a < count; ++a) {
        others.clear();
        for (size_t b = 0; b < count; ++b) {
          if (b != a) others.push_back(dist[remaining[a] * n + remaining[b]]);
        }
        for (size_t p : SmallestK(others, k)) scores[a] += others[p];
      }
      const size_t best = SmallestK(scores, 1)[0];
      selected.push_back(remaining[best]);
      remaining.erase(remaining.begin() + best);
    }
    std::sort(selected.begin(), selected.end());
    return selected;
  }
};

}  // namespace

RuleOr NewKrum(const NoOptions&, RuleSpec spec) {
  return std::make_unique<Krum>(std::move(spec));
}
RuleOr NewMultiKrum(const NoOptions&, RuleSpec spec) {
  return std::make_unique<MultiKrum>(std::move(spec));
}
RuleOr NewBulyan(const NoOptions&, RuleSpec spec) {
  return std::make_unique<Bulyan>(std::move(spec));
}

}  // namespace tally::aggregators
