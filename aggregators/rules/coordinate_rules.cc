// Coordinate-wise rules of ALGORITHMS.md §2.4: Average, Median, TrMean,
// Meamed. Columns are processed in blocks (ForEachColumn), so the batch is
// read once, row-wise, with O(n * block) scratch.
#include <algorithm>
#include <memory>
#include <vector>

#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

class Average final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    MeanOfRows(batch, d, AllRows(n), out);
    return absl::OkStatus();
  }
};

// Even n: mean of the two middle values (np.median).
class Median final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    ForEachColumn(batch, d, AllRows(n), out,
                  [](float* values, size_t m) { return static_cast<float>(MedianInPlace(values, m)); });
    return absl::OkStatus();
  }
};

// Per coordinate: drop the f smallest and f largest, mean of the other n-2f.
class TrimmedMean final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const size_t trim = f();
    ForEachColumn(batch, d, AllRows(n), out, [trim](float* values, size_t m) {
      std::sort(values, values + m);
      double sum = 0.0;
      for (size_t p = trim; p < m - trim; ++p) sum += values[p];
      return static_cast<float>(sum / static_cast<double>(m - 2 * trim));
    });
    return absl::OkStatus();
  }
};

// Per coordinate: mean of the n-f values closest to the median, ties by
// (|v - med|, index).
class Meamed final : public Rule {
 public:
  using Rule::Rule;

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const size_t keep = n - f();
    std::vector<float> scratch;
    ForEachColumn(batch, d, AllRows(n), out, [&](float* values, size_t m) {
      return static_cast<float>(MeanClosestToMedian(values, m, keep, &scratch));
    });
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Rule>> NewAverage(const RuleOptions&, RuleSpec spec) {
  return std::make_unique<Average>(std::move(spec));
}
absl::StatusOr<std::unique_ptr<Rule>> NewMedian(const RuleOptions&, RuleSpec spec) {
  return std::make_unique<Median>(std::move(spec));
}
absl::StatusOr<std::unique_ptr<Rule>> NewTrimmedMean(const RuleOptions&, RuleSpec spec) {
  return std::make_unique<TrimmedMean>(std::move(spec));
}
absl::StatusOr<std::unique_ptr<Rule>> NewMeamed(const RuleOptions&, RuleSpec spec) {
  return std::make_unique<Meamed>(std::move(spec));
}

}  // namespace tally::aggregators
