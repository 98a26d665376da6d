// The central DP mechanism as pure functions, for the server's update sink
// and the SDKs' local DP (docs/privacy.md):
//
//   clip each update to L2 norm C  ->  sum (exact, core/exact_sum.h, weight 1)
//   ->  add discrete Gaussian noise on the sum's 2^-40 grid  ->  divide by m
//
// Neighbouring runs differ by one client's participation (add/remove one
// client: user-level DP). A clipped update changes the exact sum by at most
// SumSensitivityLanes(C, d) in lane units, so noise of standard deviation
// z * SumSensitivityLanes(C, d) lanes (about z * C in value units) is the
// Gaussian mechanism with noise multiplier z, and the published mean has
// noise z * C / m.
//
// m, the divisor, is the number of clients the round SAMPLED (the expected
// batch size: clients_per_round under full participation, q * population
// under Poisson sampling), never the number that arrived: when fewer
// arrive, the server still divides by m (the "fixed denominator" estimator
// of McMahan et al., "Learning Differentially Private Recurrent Language
// Models", 2018), so that the divisor does not depend on who took part.
//
// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy, "Differentially
// Private Learning with Adaptive Clipping", NeurIPS 2021), in the paper's
// names: each round, b_i = 1[||Delta_i|| <= C] for the m sampled updates, the
// server releases
//   b~ = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2
// and moves C geometrically toward the target quantile gamma:
//   C <- C * exp(-eta_C * (b~ - gamma)).
// The two Gaussian queries of a round (the update sum, sensitivity C, noise
// z_Delta * C; the count, sensitivity 1/2, noise sigma_b) together are one
// Gaussian mechanism of noise multiplier z when
//   z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2),
// so the accountant charges z per round (requires 2 sigma_b > z).
//
// Thread safety: pure functions; the RandomSource is the caller's.
#ifndef TALLY_CORE_PRIVACY_MECHANISM_H_
#define TALLY_CORE_PRIVACY_MECHANISM_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/exact_sum.h"
#include "core/privacy/accountant.h"
#include "core/privacy/random_source.h"

namespace tally::privacy {

struct ClipResult {
  double norm = 0;       // ||Delta|| before clipping (in double).
  double scale = 1;      // The factor applied: min(1, C / ||Delta||), or slightly less.
  bool clipped = false;  // scale < 1.
};

// Scales `update` in place to L2 norm at most clip_norm (> 0): multiplies by
// min(1, C / ||Delta||) computed in double. After the rounding to float32
// the norm (in double) is checked and the scale lowered by 2^-23 relative
// steps until it is <= C, so the bound holds for the float32 values that
// are sent or summed. Non-finite values are the caller's to reject first.
ClipResult ClipToNorm(absl::Span<float> update, double clip_norm);

// Add/remove sensitivity of the exact sum in lane units for updates clipped
// to C with d coordinates: each update enters as round(x_j * 2^40) and the
// rounding moves it by at most 1/2 per coordinate, so
//   Delta_lanes = C * 2^40 + sqrt(d) / 2.
double SumSensitivityLanes(double clip_norm, size_t dimension);

// sigma in lanes for noise multiplier z: ceil(z * SumSensitivityLanes(C, d))
// (rounding up only adds noise). INVALID_ARGUMENT when it is 0 or above
// kMaxDiscreteSigma (z * C above about 1024).
absl::StatusOr<uint64_t> NoiseSigmaLanes(double noise_multiplier, double clip_norm,
                                         size_t dimension);

// Adds independent N_Z(0, sigma^2) noise (core/privacy/discrete_gaussian.h)
// to every lane of `sum`, block by block.
absl::Status AddNoiseToSum(RandomSource& random, uint64_t sigma_lanes, ExactSum& sum);

// Local DP (the SDKs): clips `update` to C (ClipToNorm), then adds noise on
// the 2^-40 grid: x_j <- float((round(x_j 2^40) + N_j) 2^-40) with N_j ~
// N_Z(0, NoiseSigmaLanes(z, C, d)^2), i.e. noise z (C + sqrt(d) 2^-41)
// covering the grid rounding. The float32 conversion is post-processing.
absl::StatusOr<ClipResult> ApplyLocalDp(RandomSource& random, double clip_norm,
                                        double noise_multiplier, absl::Span<float> update);

// The per-round guarantee of ApplyLocalDp against whoever sees the update:
// local DP compares any two updates the client could send (replace-one), so
// the sensitivity is the ball's diameter 2C and the mechanism is the
// Gaussian mechanism with noise multiplier z / 2; epsilon from the
// accountant at q = 1, one step (docs/privacy.md#local-dp).
absl::StatusOr<EpsilonAndOrder> LocalDpEpsilon(double noise_multiplier, double delta);

// z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2). INVALID_ARGUMENT unless z > 0
// and 2 sigma_b > z.
absl::StatusOr<double> UpdateNoiseMultiplier(double noise_multiplier, double clipped_count_stddev);

// b~ above, for `unclipped` of `arrived` updates with m = expected_clients.
// The noise is a discrete Gaussian on a 2^-16 grid of the count:
// sum_i (2 b_i - 1) (sensitivity 1) gets N_Z(0, ceil(2 sigma_b 2^16)^2) in
// units of 2^-16.
absl::StatusOr<double> NoisyUnclippedFraction(RandomSource& random, uint64_t unclipped,
                                              uint64_t arrived, double expected_clients,
                                              double clipped_count_stddev);

// C * exp(-eta_C * (b~ - gamma)).
double NextClipNorm(double clip_norm, double noisy_unclipped_fraction, double target_quantile,
                    double clip_learning_rate);

}  // namespace tally::privacy

#endif  // TALLY_CORE_PRIVACY_MECHANISM_H_
