#include "core/privacy/accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tally::privacy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log C(n, k) from lgamma (exact enough: relative error ~1e-15 for n <= 256).
double LogBinomial(int n, int k) {
  return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
}

// log A_alpha (Mironov, Talwar, Zhang 2019, integer alpha) for 0 < q < 1, z > 0:
// log-sum-exp over the alpha + 1 terms of the binomial expansion.
double LogA(double q, double z, int alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  std::vector<double> terms(alpha + 1);
  double max_term = -kInf;
  for (int k = 0; k <= alpha; ++k) {
    const double kk = k;
    terms[k] =
        LogBinomial(alpha, k) + (alpha - k) * log_1mq + k * log_q + (kk * kk - kk) / (2 * z * z);
    max_term = std::max(max_term, terms[k]);
  }
  double sum = 0;
  for (double t : terms) sum += std::exp(t - max_term);
  return max_term + std::log(sum);
}

}  // namespace

absl::Status ValidateSteps(const GaussianSteps& steps) {
  if (!(steps.sampling_rate >= 0 && steps.sampling_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling_rate must be in [0, 1], got ", steps.sampling_rate));
  }
  if (!(steps.noise_multiplier >= 0) || !std::isfinite(steps.noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise_multiplier must be finite and >= 0, got ", steps.noise_multiplier));
  }
  return absl::OkStatus();
}

double SampledGaussianRdp(double q, double z, int alpha) {
  if (q == 0) return 0;
  if (z == 0) return kInf;
  if (q == 1) return alpha / (2 * z * z);
  // log A_alpha >= 0 mathematically (A_alpha >= 1); clamp rounding below 0.
  return std::max(0.0, LogA(q, z, alpha) / (alpha - 1));
}

absl::StatusOr<std::vector<double>> ComposedRdp(absl::Span<const GaussianSteps> steps) {
  std::vector<double> rdp(kMaxOrder - kMinOrder + 1, 0.0);
  for (const GaussianSteps& s : steps) {
    TALLY_RETURN_IF_ERROR(ValidateSteps(s));
    if (s.count == 0) continue;
    for (int alpha = kMinOrder; alpha <= kMaxOrder; ++alpha) {
      rdp[alpha - kMinOrder] += static_cast<double>(s.count) *
                                SampledGaussianRdp(s.sampling_rate, s.noise_multiplier, alpha);
    }
  }
  return rdp;
}

absl::StatusOr<EpsilonAndOrder> EpsilonFromRdp(absl::Span<const int> orders,
                                               absl::Span<const double> rdp, double delta) {
  if (orders.size() != rdp.size() || orders.empty()) {
    return absl::InvalidArgumentError("orders and rdp must be non-empty and of the same size");
  }
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  EpsilonAndOrder best{kInf, orders[0]};
  for (size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    const double r = rdp[i];
    if (orders[i] < 2 || !(r >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("order ", orders[i], " (>= 2) with RDP ", r, " (>= 0)"));
    }
    double eps;
    if (delta * delta + std::expm1(-r) > 0) {
      eps = 0;  // delta <= sqrt(1 - exp(-KL)) already holds.
    } else {
      eps = r + std::log1p(-1 / a) - std::log(delta * a) / (a - 1);
    }
    if (eps < best.epsilon) best = {eps, orders[i]};
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

absl::StatusOr<EpsilonAndOrder> ComputeEpsilon(absl::Span<const GaussianSteps> steps,
                                               double delta) {
  TALLY_ASSIGN_OR_RETURN(std::vector<double> rdp, ComposedRdp(steps));
  std::vector<int> orders(rdp.size());
  for (size_t i = 0; i < orders.size(); ++i) orders[i] = kMinOrder + static_cast<int>(i);
  return EpsilonFromRdp(orders, rdp, delta);
}

absl::StatusOr<double> NoiseMultiplierForEpsilon(double sampling_rate, uint64_t steps, double delta,
                                                 double target_epsilon) {
  if (!(target_epsilon > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target_epsilon must be > 0, got ", target_epsilon));
  }
  auto epsilon_at = [&](double z) -> absl::StatusOr<double> {
    const GaussianSteps s{sampling_rate, z, steps};
    TALLY_ASSIGN_OR_RETURN(EpsilonAndOrder e, ComputeEpsilon({&s, 1}, delta));
    return e.epsilon;
  };
  constexpr double kMaxZ = 1e6;
  TALLY_ASSIGN_OR_RETURN(double eps_max, epsilon_at(kMaxZ));
  if (eps_max > target_epsilon) {
    return absl::NotFoundError(absl::StrCat("no noise_multiplier up to ", kMaxZ, " spends <= ",
                                            target_epsilon, " in ", steps, " steps"));
  }
  // epsilon decreases in z: bisect on log z, keeping hi feasible.
  double lo = 1e-3, hi = kMaxZ;
  TALLY_ASSIGN_OR_RETURN(double eps_lo, epsilon_at(lo));
  if (eps_lo <= target_epsilon) return lo;
  while (hi / lo > 1 + 1e-6) {
    const double mid = std::sqrt(lo * hi);
    TALLY_ASSIGN_OR_RETURN(double eps_mid, epsilon_at(mid));
    (eps_mid <= target_epsilon ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace tally::privacy
