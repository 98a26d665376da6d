// Coordinate-wise rules (docs/algorithms.md#robust-aggregation-rules): Average, Median, TrMean,
// Meamed. The order statistics sort every column with a sorting network, 64
// columns at a time in SIMD lanes, blocks of up to 32 rows on registers
// (ColumnStatistic): one read of the batch, one write of the output, O(n)
// scratch per thread.
#include <algorithm>
#include <memory>
#include <vector>

#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

// The mean; with row weights w, the weighted mean Σ w_i x_i / Σ w_i.
class Average final : public Rule {
 public:
  using Rule::Rule;
  bool UsesWeights() const override { return true; }

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    if (weights().empty()) {
      MeanOfRows(batch, d, AllRows(n), out);
      return absl::OkStatus();
    }
    double sum = 0.0;
    for (double w : weights()) sum += w;
    std::vector<double> coeffs(n);
    for (size_t i = 0; i < n; ++i) coeffs[i] = weights()[i] / sum;
    WeightedSumOfRows(batch, d, AllRows(n), coeffs, out);
    return absl::OkStatus();
  }
};

// Even n: mean of the two middle values (np.median).
class Median final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    ColumnStatistic(batch, d, AllRows(n), ColumnStat::kMedian, 0, out);
    return absl::OkStatus();
  }
};

// Per coordinate, the mean of a window of the sorted values. TrMean
// (kTrimmedMean): drop the f smallest and f largest, mean of the other n-2f.
// Meamed (kClosestToMedian): mean of the n-f values closest to the median,
// ties by (|v - med|, index).
class SortedWindowMean final : public Rule {
 public:
  SortedWindowMean(RuleSpec spec, ColumnStat stat) : Rule(std::move(spec)), stat_(stat) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const size_t param = stat_ == ColumnStat::kTrimmedMean ? f() : n - f();
    std::vector<uint64_t> left_out;
    ColumnStatistic(batch, d, AllRows(n), stat_, param, out,
                    report_influence() ? &left_out : nullptr);
    if (report_influence()) mutable_influence() = KeptShare(left_out, d);
    return absl::OkStatus();
  }

  const ColumnStat stat_;
};

}  // namespace

RuleOr NewAverage(const NoOptions&, RuleSpec spec) {
  return std::make_unique<Average>(std::move(spec));
}
RuleOr NewMedian(const NoOptions&, RuleSpec spec) {
  return std::make_unique<Median>(std::move(spec));
}
RuleOr NewTrimmedMean(const NoOptions&, RuleSpec spec) {
  return std::make_unique<SortedWindowMean>(std::move(spec), ColumnStat::kTrimmedMean);
}
RuleOr NewMeamed(const NoOptions&, RuleSpec spec) {
  return std::make_unique<SortedWindowMean>(std::move(spec), ColumnStat::kClosestToMedian);
}

}  // namespace tally::aggregators
