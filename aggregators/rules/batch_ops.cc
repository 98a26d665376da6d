#include "aggregators/rules/batch_ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "aggregators/rules/parallel.h"

namespace tally::aggregators {
namespace {

// Columns per task below which a pass is not worth a thread, and the
// alignment of task boundaries (one cache line of floats).
constexpr size_t kMinColumnsPerTask = 1 << 15;
constexpr size_t kAlign = 16;

std::vector<const float*> RowPointers(const float* batch, size_t d,
                                      absl::Span<const size_t> rows) {
  std::vector<const float*> pointers(rows.size());
  for (size_t p = 0; p < rows.size(); ++p) pointers[p] = batch + rows[p] * d;
  return pointers;
}

// Sums per-task partial results (n x n, n doubles, n counts) into the first.
template <typename T>
void SumPartials(std::vector<std::vector<T>>& partials, size_t tasks) {
  for (size_t t = 1; t < tasks; ++t) {
    for (size_t i = 0; i < partials[0].size(); ++i) partials[0][i] += partials[t][i];
  }
}

// A reduction over the d columns into `width` doubles: fn(begin, end, partial)
// adds columns [begin, end) into `partial`. One partial per fixed block of
// kMinColumnsPerTask columns, summed in block order: the result depends on d
// only, never on the thread count (floating-point addition is not
// associative, so per-thread partials would change the bits with it).
template <typename Fn>
std::vector<double> ReduceColumns(size_t d, size_t width, Fn fn) {
  const size_t blocks = std::max<size_t>(1, (d + kMinColumnsPerTask - 1) / kMinColumnsPerTask);
  std::vector<std::vector<double>> partials(blocks, std::vector<double>(width, 0.0));
  ParallelFor(blocks, 1, 1, [&](size_t, size_t first, size_t last) {
    for (size_t b = first; b < last; ++b) {
      fn(b * kMinColumnsPerTask, std::min(d, (b + 1) * kMinColumnsPerTask), partials[b].data());
    }
  });
  SumPartials(partials, blocks);
  return std::move(partials[0]);
}

}  // namespace

std::vector<double> GramMatrix(const float* batch, size_t n, size_t d) {
  std::vector<double> k = ReduceColumns(d, n * n, [&](size_t begin, size_t end, double* partial) {
    AccumulateGram(batch, n, d, begin, end, partial);
  });
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < i; ++j) k[i * n + j] = k[j * n + i];
  }
  return k;
}

std::vector<double> SquaredDistances(const float* batch, size_t n, size_t d) {
  std::vector<double> dist = GramMatrix(batch, n, d);
  std::vector<double> diag(n);
  for (size_t i = 0; i < n; ++i) diag[i] = dist[i * n + i];
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      dist[i * n + j] = i == j ? 0.0 : std::max(0.0, diag[i] + diag[j] - 2.0 * dist[i * n + j]);
    }
  }
  return dist;
}

std::vector<double> SquaredDistancesTo(const float* batch, size_t n, size_t d,
                                       const double* center) {
  return ReduceColumns(d, n, [&](size_t begin, size_t end, double* partial) {
    AccumulateSquaredDistances(batch, n, d, center, begin, end, partial);
  });
}

std::vector<double> RowNorms(const float* batch, size_t n, size_t d) {
  std::vector<double> norms = SquaredDistancesTo(batch, n, d, nullptr);
  for (double& norm : norms) norm = std::sqrt(norm);
  return norms;
}

std::vector<size_t> SmallestK(absl::Span<const double> values, size_t k) {
  std::vector<size_t> order = AllRows(values.size());
  k = std::min(k, order.size());
  auto less = [&](size_t a, size_t b) {
    return values[a] < values[b] || (values[a] == values[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), less);
  order.resize(k);
  return order;
}

void WeightedSumOfRows(const float* batch, size_t d, absl::Span<const size_t> rows,
                       absl::Span<const double> coeffs, float* out) {
  const std::vector<const float*> pointers = RowPointers(batch, d, rows);
  ParallelFor(d, kMinColumnsPerTask, kAlign, [&](size_t, size_t begin, size_t end) {
    CombineRowsToFloat(pointers.data(), coeffs.data(), pointers.size(), begin, end, out);
  });
}

void MeanOfRows(const float* batch, size_t d, absl::Span<const size_t> rows, float* out) {
  const double weight = rows.empty() ? 0.0 : 1.0 / static_cast<double>(rows.size());
  WeightedSumOfRows(batch, d, rows, std::vector<double>(rows.size(), weight), out);
}

void UpdateWithRows(const float* batch, size_t n, size_t d, absl::Span<const double> coeffs,
                    double offset, std::vector<double>* z) {
  const std::vector<const float*> pointers = RowPointers(batch, d, AllRows(n));
  double* target = z->data();
  ParallelFor(d, kMinColumnsPerTask, kAlign, [&](size_t, size_t begin, size_t end) {
    CombineRows(pointers.data(), coeffs.data(), n, target, offset, begin, end, target);
  });
}

std::vector<double> UpdateWithRowsThenDistances(const float* batch, size_t n, size_t d,
                                                absl::Span<const double> coeffs, double offset,
                                                std::vector<double>* z) {
  constexpr size_t kBlock = 2048;  // n rows x 8 KiB stay in L2 between the two steps.
  const std::vector<const float*> pointers = RowPointers(batch, d, AllRows(n));
  double* target = z->data();
  return ReduceColumns(d, n, [&](size_t begin, size_t end, double* partial) {
    for (size_t b0 = begin; b0 < end; b0 += kBlock) {
      const size_t b1 = std::min(end, b0 + kBlock);
      CombineRows(pointers.data(), coeffs.data(), n, target, offset, b0, b1, target);
      AccumulateSquaredDistances(batch, n, d, target, b0, b1, partial);
    }
  });
}

void MixRowsInPlace(float* rows, size_t n, size_t d, const std::vector<float>& weights, size_t m) {
  constexpr size_t kBlock = 1024;  // Columns of scratch per thread: m x 4 KiB.
  ParallelFor(d, kMinColumnsPerTask, kAlign, [&](size_t, size_t begin, size_t end) {
    std::vector<float> block(m * kBlock);
    for (size_t b0 = begin; b0 < end; b0 += kBlock) {
      const size_t width = std::min(kBlock, end - b0);
      // Every output of the block is computed before any is written back.
      MixRows(rows, n, d, weights.data(), m, b0, b0 + width, block.data(), kBlock);
      for (size_t k = 0; k < m; ++k) std::copy_n(&block[k * kBlock], width, rows + k * d + b0);
    }
  });
}

void ColumnStatistic(const float* batch, size_t d, absl::Span<const size_t> rows, ColumnStat stat,
                     size_t param, float* out, std::vector<uint64_t>* left_out) {
  const size_t m = rows.size();
  const std::vector<const float*> pointers = RowPointers(batch, d, rows);
  const std::vector<uint32_t> network = SortingNetwork(m);
  std::vector<uint8_t> keep;
  if (left_out == nullptr && stat != ColumnStat::kClosestToMedian) {
    // Only the class of each final position matters: trimmed mean needs
    // {lowest param}, {middle}, {highest param}; median the middle one or two.
    std::vector<int> class_of(m);
    for (size_t p = 0; p < m; ++p) {
      if (stat == ColumnStat::kTrimmedMean) {
        class_of[p] = p < param ? 0 : (p < m - param ? 1 : 2);
      } else {
        const size_t lower = (m - 1) / 2, upper = m / 2;
        class_of[p] = p < lower ? 0 : (p == lower ? 1 : (p == upper ? 2 : 3));
      }
    }
    keep = PruneMask(network, class_of);
  }
  constexpr size_t kMinColumns = kMinColumnsPerTask / 4;
  std::vector<std::vector<uint64_t>> counts(
      left_out != nullptr ? MaxTasks(d, kMinColumns) : 0, std::vector<uint64_t>(m, 0));
  const size_t tasks =
      ParallelFor(d, kMinColumns, kAlign, [&](size_t task, size_t begin, size_t end) {
        SortedColumnStat(pointers.data(), m, network, keep, stat, param, begin, end, out,
                         left_out != nullptr ? counts[task].data() : nullptr);
      });
  if (left_out == nullptr) return;
  SumPartials(counts, tasks);
  *left_out = std::move(counts[0]);
}

std::vector<double> KeptShare(const std::vector<uint64_t>& left_out, size_t d) {
  std::vector<double> share(left_out.size());
  for (size_t p = 0; p < share.size(); ++p) {
    share[p] = 1.0 - static_cast<double>(left_out[p]) / static_cast<double>(d);
  }
  return share;
}

std::vector<size_t> AllRows(size_t n) {
  std::vector<size_t> rows(n);
  std::iota(rows.begin(), rows.end(), size_t{0});
  return rows;
}

}  // namespace tally::aggregators
