// The privacy accountant: Rényi differential privacy (RDP) of the sampled
// Gaussian mechanism, composed over the steps of a run and converted to an
// (epsilon, delta) guarantee (docs/privacy.md).
//
// One step of the mechanism: each client is in the step's batch
// independently with probability q (Poisson sampling); the batch's sum of
// updates, each clipped to L2 norm C, gets Gaussian noise of standard
// deviation z * C. Its RDP at integer order alpha (Mironov, Talwar, Zhang,
// "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019) is
//
//   A_alpha = sum_{k=0..alpha} C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 z^2))
//   RDP(alpha) = log(A_alpha) / (alpha - 1)        (RDP(alpha) = alpha/(2 z^2) at q = 1)
//
// computed in log space (log-sum-exp over k, binomials from lgamma). RDP
// composes by addition: a run of T steps has T * RDP(alpha), and steps with
// different (q, z) (adaptive clipping's clipped-count query, a changed noise
// multiplier) add their own terms. The conversion to (epsilon, delta) takes,
// over the orders alpha = 2 .. 256,
//
//   epsilon = min_alpha [ RDP(alpha) + log1p(-1/alpha) - log(delta * alpha) / (alpha - 1) ]
//
// and an order where delta^2 + expm1(-RDP(alpha)) > 0 gives epsilon = 0
// (there the KL bound delta <= sqrt(1 - exp(-RDP)) already holds).
//
// Pure functions, thread-safe.
#ifndef TALLY_CORE_PRIVACY_ACCOUNTANT_H_
#define TALLY_CORE_PRIVACY_ACCOUNTANT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tally::privacy {

// The orders the accountant evaluates: alpha = kMinOrder .. kMaxOrder.
inline constexpr int kMinOrder = 2;
inline constexpr int kMaxOrder = 256;

// `count` steps of the sampled Gaussian mechanism with sampling rate q in
// [0, 1] and noise multiplier z >= 0 (z = 0: no noise, infinite RDP unless
// q = 0).
struct GaussianSteps {
  double sampling_rate = 1.0;
  double noise_multiplier = 0.0;
  uint64_t count = 0;
};

// INVALID_ARGUMENT naming the field out of range (q outside [0, 1], z
// negative or not finite).
absl::Status ValidateSteps(const GaussianSteps& steps);

// RDP at order alpha (>= 2) of one step; +infinity when z = 0 and q > 0.
double SampledGaussianRdp(double sampling_rate, double noise_multiplier, int alpha);

// RDP at the orders kMinOrder .. kMaxOrder (index alpha - kMinOrder) of the
// composition of all `steps`.
absl::StatusOr<std::vector<double>> ComposedRdp(absl::Span<const GaussianSteps> steps);

struct EpsilonAndOrder {
  double epsilon = 0;  // +infinity if no order gives a finite bound.
  int order = kMinOrder;
};

// The conversion above over the given orders (each >= 2) and their RDP
// values (>= 0, +infinity allowed); delta in (0, 1).
absl::StatusOr<EpsilonAndOrder> EpsilonFromRdp(absl::Span<const int> orders,
                                               absl::Span<const double> rdp, double delta);

// epsilon of the composition of `steps` at `delta` (orders 2 .. 256).
absl::StatusOr<EpsilonAndOrder> ComputeEpsilon(absl::Span<const GaussianSteps> steps, double delta);

// The smallest noise multiplier z (to a relative 1e-6, rounded up so the
// result keeps the target) such that `steps` steps at sampling rate q
// spend at most target_epsilon at delta. NOT_FOUND if even z = 1e6 does not
// reach it.
absl::StatusOr<double> NoiseMultiplierForEpsilon(double sampling_rate, uint64_t steps, double delta,
                                                 double target_epsilon);

}  // namespace tally::privacy

#endif  // TALLY_CORE_PRIVACY_ACCOUNTANT_H_
