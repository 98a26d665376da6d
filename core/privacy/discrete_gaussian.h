// Exact sampling of the discrete Gaussian on the integers (Canonne, Kamath,
// Steinke, "The Discrete Gaussian for Differential Privacy", NeurIPS 2020,
// Algorithms 1-3), with integer arithmetic only: no floating point touches
// a sample, so none of the textbook samplers' floating-point pitfalls apply.
//
//   N_Z(0, sigma^2):  P[X = x]  proportional to  exp(-x^2 / (2 sigma^2)),  x in Z.
//
// Here sigma is an integer (the noise scale in units of the fixed-point grid
// it is added on; docs/privacy.md explains the choice for the exact sum's
// 2^-40 grid). The building blocks are exact for rational arguments:
//   - BernoulliExp(n/d): a coin with P[1] = exp(-n/d) (Algorithm 1),
//   - discrete Laplace with scale t (Algorithm 2),
//   - the discrete Gaussian by rejection from the discrete Laplace with
//     t = sigma + 1 (Algorithm 3).
// The randomness comes from a RandomSource (core/privacy/random_source.h).
//
// Thread-compatible (the RandomSource is the caller's).
#ifndef TALLY_CORE_PRIVACY_DISCRETE_GAUSSIAN_H_
#define TALLY_CORE_PRIVACY_DISCRETE_GAUSSIAN_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/privacy/random_source.h"

namespace tally::privacy {

// Largest sigma SampleDiscreteGaussian takes (every sample then fits in
// int64 with room to spare: |x| > 2^62 has probability below exp(-2^23)).
inline constexpr uint64_t kMaxDiscreteSigma = uint64_t{1} << 50;

// A coin with P[true] = exp(-numerator / denominator); denominator >= 1.
bool BernoulliExp(RandomSource& random, uint64_t numerator, uint64_t denominator);

// One sample of the discrete Laplace distribution with scale t >= 1:
// P[X = x] proportional to exp(-|x| / t).
int64_t SampleDiscreteLaplace(RandomSource& random, uint64_t t);

// Fills `out` with independent samples of N_Z(0, sigma^2). INVALID_ARGUMENT
// if sigma is 0 or above kMaxDiscreteSigma.
absl::Status SampleDiscreteGaussian(RandomSource& random, uint64_t sigma, absl::Span<int64_t> out);

}  // namespace tally::privacy

#endif  // TALLY_CORE_PRIVACY_DISCRETE_GAUSSIAN_H_
