// Flag Aggregator (Almasi et al., ICLR 2024; docs/algorithms.md#flag-aggregator)
// in the n x n Gram form (docs/algorithms.md#flag-gram-form-and-constants):
// one float64 Gram pass over the batch, IRLS on n x n matrices, one more pass
// for the output. Extra memory O(n²).
//
// The registered rule "flag" uses the deterministic initialisation (P0 = 0)
// by default or the seeded random one (FlagOptions::init "random");
// FlagAggregate also takes an explicit Y0 for tests
// (docs/algorithms.md#flag-initial-subspace).
#ifndef TALLY_AGGREGATORS_RULES_FLAG_H_
#define TALLY_AGGREGATORS_RULES_FLAG_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace tally::aggregators {

// The initial subspace Y0 when no explicit one is given
// (docs/algorithms.md#flag-initial-subspace).
enum class FlagInit {
  kDeterministic,  // P0 = Y0ᵀX = 0 (b).
  // (a): Y0 = the orthonormalised Y_raw ~ U(-0.5, 0.5)^{d x r}, drawn from a
  // counter-based generator seeded with FlagParams::seed (never stored; the
  // same seed gives the same Y_raw on every call, as the reference's
  // torch.manual_seed(1) does, but not the reference's numbers). Needs d >= r.
  kRandom,
};

// kRandom's Y_raw: element (j, a) (row j < d, column a < r) is
// CounterRng(seed, kFlagRandomStream) uniform number j·r + a, mapped to
// [-0.5, 0.5) (counter_rng.h).
inline constexpr uint64_t kFlagRandomStream = 0x464c4147;  // "FLAG".

// How the output is scaled. The reference returns (1/r) Y Yᵀ Σ_i x_i, a sum of
// unit vectors whose length (up to n/r) has nothing to do with the inputs'
// magnitudes; applied as a model delta at server learning rate 1 it
// overshoots by about an order of magnitude (docs/strategies.md). kMedianNorm rescales it to
// the inputs' scale and is the default of the registered rule "flag".
enum class FlagScale {
  // out = median_i ‖g_i‖ · Y Yᵀ (1/n) Σ_i x_i: the projection of the mean
  // of the normalised inputs onto the flag subspace, times the median input
  // norm (even n: the mean of the two middle norms). ‖out‖ <= median norm,
  // which fewer than n/2 attackers cannot push outside the honest norms;
  // equal-norm inputs inside the subspace give exactly their mean.
  kMedianNorm,
  kReference,  // out = (1/r) Y Yᵀ Σ_i x_i, as the reference code.
};

struct FlagParams {
  int r = 1;            // Subspace dimension (>= 1).
  double lambda = 0.0;  // Pairwise regulariser (>= 0; > 0 needs n >= 2).
  int iterations = 1;   // IRLS iterations n_its (>= 1).
  FlagInit init = FlagInit::kDeterministic;
  uint64_t seed = 1;  // kRandom's seed.
  // kReference here, so that FlagAggregate is the reference; the rule
  // "flag" defaults to kMedianNorm (FlagOptions::scale).
  FlagScale scale = FlagScale::kReference;
};

// The subspace dimension the rule "flag" uses for a batch of n rows when
// FlagOptions::r is 0 (auto): ceil(n / 2), at least 1, as the paper's
// experiments choose r ≈ n/2 (r = 8 for 15 workers, 4 for 7, 16 for 30).
int FlagAutoR(size_t n);

// Writes the Flag aggregate of the n x d `batch` to out[0..d). `y0` is empty
// (Y0 from params.init) or an explicit d x r row-major Y0 with orthonormal
// columns. INVALID_ARGUMENT for a Y0 of the wrong size, lambda > 0 with
// n < 2, or the random init with d < r. If `coefficients` is not null it
// receives c (n values, out = Σ_j c_j x_j with x_j the normalised rows; with
// FlagScale::kReference the reference code's values).
absl::Status FlagAggregate(const float* batch, size_t n, size_t d, const FlagParams& params,
                           absl::Span<const double> y0, float* out,
                           std::vector<double>* coefficients = nullptr);

// Eigen-decomposition of the symmetric m x m row-major `a` by cyclic Jacobi
// (deterministic): eigenvalues descending, eigenvectors as the columns of the
// row-major m x m `vectors`.
void SymmetricEigen(std::vector<double> a, size_t m, std::vector<double>* values,
                    std::vector<double>* vectors);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_FLAG_H_
