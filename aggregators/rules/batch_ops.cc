#include "aggregators/rules/batch_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace tally::aggregators {
namespace {
constexpr size_t kGramBlock = 512;
constexpr size_t kMixBlock = 1024;

// out[0..width) = mean over r in rows of base[r * stride + (0..width)].
void MeanOfRowsStrided(const float* base, size_t stride, size_t width,
                       absl::Span<const size_t> rows, float* out) {
  constexpr size_t kBlock = 1024;
  double acc[kBlock];
  const double scale = rows.empty() ? 0.0 : 1.0 / static_cast<double>(rows.size());
  for (size_t j0 = 0; j0 < width; j0 += kBlock) {
    const size_t w = std::min(kBlock, width - j0);
    std::fill(acc, acc + w, 0.0);
    for (size_t r : rows) {
      const float* src = base + r * stride + j0;
      for (size_t c = 0; c < w; ++c) acc[c] += src[c];
    }
    for (size_t c = 0; c < w; ++c) out[j0 + c] = static_cast<float>(acc[c] * scale);
  }
}

}  // namespace

std::vector<double> GramMatrix(const float* batch, size_t n, size_t d) {
  std::vector<double> k(n * n, 0.0);
  std::vector<double> block(n * std::min(kGramBlock, std::max<size_t>(d, 1)));
  for (size_t j0 = 0; j0 < d; j0 += kGramBlock) {
    const size_t width = std::min(kGramBlock, d - j0);
    for (size_t i = 0; i < n; ++i) {
      const float* src = batch + i * d + j0;
      double* dst = block.data() + i * width;
      for (size_t c = 0; c < width; ++c) dst[c] = src[c];
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, static_cast<int>(n),
                static_cast<int>(width), 1.0, block.data(), static_cast<int>(width), 1.0,
                k.data(), static_cast<int>(n));
  }
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

double SquaredDistance(const float* a, const float* b, size_t d) {
  double sum = 0.0;
  for (size_t j = 0; j < d; ++j) {
    const double diff = static_cast<double>(a[j]) - b[j];
    sum += diff * diff;
  }
  return sum;
}

double Norm(const float* a, size_t d) {
  double sum = 0.0;
  for (size_t j = 0; j < d; ++j) sum += static_cast<double>(a[j]) * a[j];
  return std::sqrt(sum);
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


void MeanOfRows(const float* batch, size_t d, absl::Span<const size_t> rows, float* out) {
  MeanOfRowsStrided(batch, d, d, rows, out);
}

void MixRowsInPlace(float* rows, size_t d, const std::vector<std::vector<size_t>>& sets) {
  const size_t m = sets.size();
  std::vector<float> block(m * std::min(kMixBlock, std::max<size_t>(d, 1)));
  for (size_t j0 = 0; j0 < d; j0 += kMixBlock) {
    const size_t width = std::min(kMixBlock, d - j0);
    // Every output of this column block is computed before any is written.
    for (size_t k = 0; k < m; ++k) {
      MeanOfRowsStrided(rows + j0, d, width, sets[k], &block[k * width]);
    }
    for (size_t k = 0; k < m; ++k) {
      std::copy_n(&block[k * width], width, rows + k * d + j0);
    }
  }
}

double MedianInPlace(float* values, size_t m) {
  const size_t mid = m / 2;
  std::nth_element(values, values + mid, values + m);
  const double upper = values[mid];
  if (m % 2 == 1) return upper;
  const double lower = *std::max_element(values, values + mid);
  return 0.5 * (lower + upper);
}

double MeanClosestToMedian(const float* values, size_t m, size_t k, std::vector<float>* scratch) {
  scratch->assign(values, values + m);
  const double med = MedianInPlace(scratch->data(), m);
  std::vector<double> gaps(m);
  for (size_t p = 0; p < m; ++p) gaps[p] = std::fabs(values[p] - med);
  double sum = 0.0;
  for (size_t p : SmallestK(gaps, k)) sum += values[p];
  return k == 0 ? 0.0 : sum / static_cast<double>(k);
}

std::vector<size_t> AllRows(size_t n) {
  std::vector<size_t> rows(n);
  std::iota(rows.begin(), rows.end(), size_t{0});
  return rows;
}

}  // namespace tally::aggregators
