// The Flag Aggregator's seeded random initial subspace
// (docs/algorithms.md#flag-initial-subspace),
// in the form the Gram-form iteration of flag.cc needs: P0 = Y0ᵀX (r x n)
// and, for the fallback to Y0, Y0 z for an r-vector z, both without
// ever storing the d x r matrix.
//
// Y_raw ~ U(-0.5, 0.5)^{d x r} comes from CounterRng (flag.h:
// kFlagRandomStream), one block of rows at a time; S = Y_rawᵀY_raw = L Lᵀ
// (Cholesky, so R = Lᵀ is QR's R up to column signs, which FA does not see)
// and Y0 = Y_raw L⁻ᵀ has orthonormal columns spanning Y_raw's.
//
// Used by flag.cc only. A RandomSubspace is immutable once created;
// thread-compatible.
#ifndef TALLY_AGGREGATORS_RULES_FLAG_RANDOM_INIT_H_
#define TALLY_AGGREGATORS_RULES_FLAG_RANDOM_INIT_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::aggregators {

class RandomSubspace {
 public:
  // One pass over the n x d batch: S = Y_rawᵀY_raw and Q = Y_rawᵀX with
  // x_i = g_i / nu[i], then P0 = L⁻¹Q. O(d r n) time, O(r n + r²) memory.
  // INVALID_ARGUMENT if d < r (S singular); INTERNAL if S is numerically not
  // positive definite.
  static absl::StatusOr<RandomSubspace> Create(const float* batch, size_t n, size_t d, size_t r,
                                               uint64_t seed, const std::vector<double>& nu);

  // P0 = Y0ᵀX, r x n row-major.
  const std::vector<double>& p0() const { return p0_; }

  // out[j] = (Y0 z)_j / divisor for j < d, regenerating Y_raw: Y0 z =
  // Y_raw (L⁻ᵀ z). With z = Y0ᵀs = Σ_i P0[:, i] this is the fallback
  // a = Y0 Y0ᵀ s / r.
  void WriteProjection(size_t d, std::vector<double> z, double divisor, float* out) const;

 private:
  RandomSubspace(size_t r, uint64_t seed) : r_(r), seed_(seed) {}

  size_t r_;
  uint64_t seed_;
  std::vector<double> chol_;  // L, r x r row-major, lower triangular.
  std::vector<double> p0_;
};

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_FLAG_RANDOM_INIT_H_
