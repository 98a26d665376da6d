// Byzantine attacks for tally-sim: how a malicious simulated client turns the
// delta it computed honestly into the one it pushes.
//
// Every Byzantine client first trains honestly on its own shard (on flipped
// labels for label_flip). The omniscient attacks (alie, ipm) also need the
// honest clients' mean and per-coordinate standard deviation; the simulator
// estimates them from the Byzantine clients' own honest deltas (the colluding
// Byzantine clients share their honest computation, as in the ALIE and IPM
// papers' "non-omniscient" variants), so all Byzantine clients of a round
// push the same vector for those two attacks.
//
// Pure functions, no network; thread-compatible. Deterministic given the seed.
#ifndef TALLY_SIM_ATTACKS_H_
#define TALLY_SIM_ATTACKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sim/synthetic_data.h"

namespace tally::sim {

enum class Attack {
  kNone,       // Honest: push the delta as computed.
  kSignFlip,   // -delta.
  kScaling,    // scale * delta (scale -10 by default: a scaled sign flip).
  kGaussian,   // Pure noise N(0, sigma^2) per coordinate, ignoring the delta.
  kAlie,       // "A little is enough" (Baruch et al. 2019): mean - z * std.
  kIpm,        // Inner product manipulation (Xie et al. 2020): -epsilon * mean.
  kLabelFlip,  // Honest training on labels c -> C-1-c, then the honest delta.
  kNan,        // The honest delta with its first coordinate set to NaN.
};

// "none", "sign_flip", "scaling", "gaussian", "alie", "ipm", "label_flip", "nan".
absl::string_view AttackName(Attack attack);
// INVALID_ARGUMENT lists the known names.
absl::StatusOr<Attack> ParseAttack(absl::string_view name);
// All names, in enum order, for --help and errors.
std::vector<std::string> AttackNames();

struct AttackOptions {
  double scale = -10;          // scaling: the factor.
  double sigma = 1.0;          // gaussian: noise standard deviation.
  double alie_z = 0;           // alie: z; 0 = AlieZ(num_clients, num_byzantine).
  double ipm_epsilon = 0.1;    // ipm: epsilon.
  int num_clients = 0;         // n, for the ALIE z.
  int num_byzantine = 0;       // f, for the ALIE z.
};

// Coordinate-wise mean and population standard deviation of equal-length rows.
struct DeltaStats {
  std::vector<float> mean;
  std::vector<float> stddev;
};
// INVALID_ARGUMENT on no rows or rows of different lengths.
absl::StatusOr<DeltaStats> ComputeDeltaStats(absl::Span<const std::vector<float>> rows);

// The ALIE paper's z_max: s = floor(n/2 + 1) - f supporters are needed, and
// z = Phi^{-1}((n - s) / n). E.g. n = 20, f = 4: s = 7, z = Phi^{-1}(0.65)
// = 0.3853. Returns 1.0 (a fixed, documented fallback) when the formula is
// undefined (n < 1, f < 1, or (n - s) / n outside (0, 1)).
double AlieZ(int num_clients, int num_byzantine);

// The inverse of the standard normal CDF, for p in (0, 1) (bisection; |error|
// < 1e-9).
double InverseNormalCdf(double p);

// Whether the attack needs the honest-mean/std estimate (alie, ipm).
bool AttackNeedsStats(Attack attack);
// Whether the Byzantine client trains on flipped labels (label_flip).
bool AttackFlipsLabels(Attack attack);

// A copy of `data` with every label c replaced by num_classes - 1 - c.
Dataset FlipLabels(const Dataset& data);

// The malicious delta. `honest` is this client's honestly computed delta;
// `stats` must be non-null with mean/stddev of honest.size() when
// AttackNeedsStats(attack) (INVALID_ARGUMENT otherwise). `seed` drives the
// gaussian noise only.
absl::StatusOr<std::vector<float>> ApplyAttack(Attack attack, const AttackOptions& options,
                                               absl::Span<const float> honest,
                                               const DeltaStats* stats, uint64_t seed);

}  // namespace tally::sim

#endif  // TALLY_SIM_ATTACKS_H_
