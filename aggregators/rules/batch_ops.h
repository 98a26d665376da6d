// Building blocks shared by the rules: Gram matrices and distances in
// float64, (value, index) selection, weighted sums and mixtures of rows,
// per-column order statistics. A batch is n rows of d floats, row-major.
// Every pass over a batch is split over columns between RuleThreads()
// threads (parallel.h) and runs the SIMD kernels of kernels.h. Stateless;
// thread-compatible.
#ifndef TALLY_AGGREGATORS_RULES_BATCH_OPS_H_
#define TALLY_AGGREGATORS_RULES_BATCH_OPS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "aggregators/rules/kernels.h"

namespace tally::aggregators {

// K = X Xᵀ (n x n, row-major, both triangles) in float64: one pass over the
// batch, O(n² + threads · n · 512) extra memory.
std::vector<double> GramMatrix(const float* batch, size_t n, size_t d);

// D_ij = ‖x_i − x_j‖² = max(0, K_ii + K_jj − 2 K_ij), D_ii = 0 (Gram trick in
// float64, clamped at 0; docs/algorithms.md#krum).
std::vector<double> SquaredDistances(const float* batch, size_t n, size_t d);

// ‖x_i − center‖² for every row, float64; a null center gives ‖x_i‖².
std::vector<double> SquaredDistancesTo(const float* batch, size_t n, size_t d,
                                       const double* center);
// ‖x_i‖ for every row, float64.
std::vector<double> RowNorms(const float* batch, size_t n, size_t d);

// The positions of the k smallest of `values`, ordered by (value, position)
// ascending: the tie rule of docs/algorithms.md#ties (lower index wins).
std::vector<size_t> SmallestK(absl::Span<const double> values, size_t k);

// out = Σ_p coeffs[p] · x_{rows[p]} (d floats), accumulated in float64.
void WeightedSumOfRows(const float* batch, size_t d, absl::Span<const size_t> rows,
                       absl::Span<const double> coeffs, float* out);
// out = mean of the rows `rows` of `batch`.
void MeanOfRows(const float* batch, size_t d, absl::Span<const size_t> rows, float* out);
// z <- offset · z + Σ_i coeffs[i] · x_i over all n rows, in float64 (z has d
// entries).
void UpdateWithRows(const float* batch, size_t n, size_t d, absl::Span<const double> coeffs,
                    double offset, std::vector<double>* z);

// UpdateWithRows, then returns ‖x_i − z‖² for the new z, in the same pass:
// each column block's distances are taken while its rows are in cache.
std::vector<double> UpdateWithRowsThenDistances(const float* batch, size_t n, size_t d,
                                                absl::Span<const double> coeffs, double offset,
                                                std::vector<double>* z);

// In place: row k of `rows` becomes Σ_j weights[k * n + j] · x_j for k < m <=
// n (weights is m x n). Float32 arithmetic; scratch of one column block per
// thread, not a second batch.
void MixRowsInPlace(float* rows, size_t n, size_t d, const std::vector<float>& weights, size_t m);

// out[j] = `stat` of column j over the rows `rows` (in this order: positions
// break closest-to-median ties), for every column j < d. With `left_out`,
// also counts per position p how many columns left rows[p] out (see
// SortedColumnStat); the count costs a few percent.
void ColumnStatistic(const float* batch, size_t d, absl::Span<const size_t> rows, ColumnStat stat,
                     size_t param, float* out, std::vector<uint64_t>* left_out = nullptr);

// Per position: 1 − left_out[p] / d, the share of the d columns that kept it.
std::vector<double> KeptShare(const std::vector<uint64_t>& left_out, size_t d);

// [0, 1, ..., n-1].
std::vector<size_t> AllRows(size_t n);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_BATCH_OPS_H_
