// Building blocks shared by the rules: Gram matrices and pairwise distances in
// float64, (value, index) selection, means of row subsets, column-blocked
// traversal for coordinate-wise rules. A batch is n rows of d floats,
// row-major. Stateless functions; thread-compatible.
#ifndef TALLY_AGGREGATORS_RULES_BATCH_OPS_H_
#define TALLY_AGGREGATORS_RULES_BATCH_OPS_H_

#include <algorithm>
#include <cstddef>
#include <vector>

#include "absl/types/span.h"

namespace tally::aggregators {

// K = X Xᵀ (n x n, row-major, both triangles) in float64. One pass over the
// batch, converted to double one column block at a time (O(n * block) extra).
std::vector<double> GramMatrix(const float* batch, size_t n, size_t d);

// D_ij = ‖x_i − x_j‖² = max(0, K_ii + K_jj − 2 K_ij), D_ii = 0 (ALGORITHMS.md
// §2.2: Gram trick in float64, clamped at 0).
std::vector<double> SquaredDistances(const float* batch, size_t n, size_t d);

// ‖a − b‖² in float64.
double SquaredDistance(const float* a, const float* b, size_t d);
// ‖a‖ in float64.
double Norm(const float* a, size_t d);

// The positions of the k smallest of `values`, ordered by (value, position)
// ascending: the tie rule of ALGORITHMS.md §2.1 (lower index wins).
std::vector<size_t> SmallestK(absl::Span<const double> values, size_t k);

// out = mean of the rows `rows` of `batch` (accumulated in float64).
void MeanOfRows(const float* batch, size_t d, absl::Span<const size_t> rows, float* out);

// In place: row k of `rows` becomes the mean of the input rows sets[k], for
// k < sets.size() <= n. Any input row may appear in any set; uses a column
// block of scratch, not a second batch.
void MixRowsInPlace(float* rows, size_t d, const std::vector<std::vector<size_t>>& sets);

// For every column j: out[j] = fn(values, m), where values[p] is
// batch[rows[p]][j] for the m = rows.size() rows (fn may reorder values).
// Columns are gathered in blocks so the batch is read row-wise.
template <typename Fn>
void ForEachColumn(const float* batch, size_t d, absl::Span<const size_t> rows, float* out,
                   Fn fn) {
  constexpr size_t kBlock = 64;
  const size_t m = rows.size();
  std::vector<float> block(kBlock * m);
  for (size_t j0 = 0; j0 < d; j0 += kBlock) {
    const size_t width = std::min(kBlock, d - j0);
    for (size_t p = 0; p < m; ++p) {
      const float* src = batch + rows[p] * d + j0;
      for (size_t c = 0; c < width; ++c) block[c * m + p] = src[c];
    }
    for (size_t c = 0; c < width; ++c) out[j0 + c] = fn(&block[c * m], m);
  }
}

// Median of values[0..m) (m >= 1; even m: mean of the two middle values, as
// np.median). Reorders values.
double MedianInPlace(float* values, size_t m);

// Mean of the k values closest to the median of values[0..m), closeness
// ordered by (|v − med|, position) (Meamed §2.4, Bulyan step 2 §2.6).
// Reorders nothing; `scratch` is reused between calls.
double MeanClosestToMedian(const float* values, size_t m, size_t k, std::vector<float>* scratch);

// [0, 1, ..., n-1].
std::vector<size_t> AllRows(size_t n);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_BATCH_OPS_H_
