// CAF, the Covariance-bound Agnostic Filter (Allouah, Guerraoui, Stephan,
// ICML 2025), as byzfl's CAF implements it (docs/algorithms.md#caf):
//
//   c = 1
//   while Σc > n − 2f:
//     μ = Σ c_i x_i / Σc
//     one power-iteration step on Σ_c = Σ c_i (x_i − μ)(x_i − μ)ᵀ / Σc from
//     v0 = g/‖g‖, g ~ N(0, I_d):  u = Σ_c v0,  v = u/‖u‖,  λ̂ = vᵀu = ‖u‖
//     remember μ if λ̂ is strictly below every earlier λ̂
//     τ_i = ((x_i − μ)ᵀ v)²  for every row, also those at weight 0
//     c_i ← c_i (1 − τ_i / max_j τ_j)
//   return the remembered μ
//
// Σ_c is never formed: u = Σ_i γ_i x_i with γ from n numbers, so an
// iteration is one pass for x_iᵀg (g drawn block by block, never stored),
// one for u (d floats of scratch) and one for x_iᵀu, the last shared with
// the next iteration's x_iᵀg. Memory O(n + d), no copy of the batch.
//
// Deviations from byzfl, each where byzfl fails or cannot be matched:
// * f = 0 (byzfl returns None) returns the mean, which is what the loop
//   starts from.
// * u = 0 — the weighted rows have no spread along v0, e.g. identical rows
//   (byzfl divides 0/0) — means λ̂ = 0, the smallest possible estimate: the
//   current μ is remembered and the loop stops. For identical rows that is
//   their mean.
// * At most n iterations. When every iteration's largest τ belongs to a row
//   of positive weight, that row drops to 0 and the loop ends within 2f
//   iterations anyway. But a row already at weight 0 can keep the largest τ
//   (a far outlier): then the other weights shrink by factors near 1 and
//   byzfl's loop runs on for as long as the outlier is far, which a client
//   could exploit to stall the server. The cap returns the μ remembered so
//   far.
// * The start vectors come from CounterRng(seed, iteration), not numpy's
//   global generator: the output is a pure function of (batch, f, seed) and
//   cannot bit-match byzfl, whose results are random too.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/types/span.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"
#include "aggregators/rules/counter_rng.h"
#include "aggregators/rules/row_dots.h"

namespace tally::aggregators {
namespace {

double Sum(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0);
}

// y_i ← (y_i − Σ_k c_k y_k / Σc) · scale: turns x_iᵀz into (x_i − μ)ᵀz · scale.
void Center(const std::vector<double>& c, double c_sum, double scale, std::vector<double>* y) {
  double mean = 0.0;
  for (size_t i = 0; i < c.size(); ++i) mean += c[i] * (*y)[i];
  mean /= c_sum;
  for (double& v : *y) v = (v - mean) * scale;
}

// One pass over the batch: (*along_u)[i] = x_iᵀu when `u` is not empty, and
// (*along_g)[i] = x_iᵀg for the standard normal g of `rng` when it is not
// null. Returns ‖g‖² (0 without rng).
double Project(const float* batch, size_t n, size_t d, const std::vector<float>& u,
               const CounterRng* rng, std::vector<double>* along_u, std::vector<double>* along_g) {
  const size_t k = (u.empty() ? 0 : 1) + (rng != nullptr ? 1 : 0);
  std::vector<double> dots(k * n);
  double g_norm_sq = 0.0;
  RowDots(
      batch, n, d, k,
      [&](size_t j0, size_t width, double* block) {
        if (!u.empty()) std::copy_n(&u[j0], width, block);
        if (rng == nullptr) return;
        double* g = block + (k - 1) * kRowDotsBlock;
        rng->FillNormal(j0, absl::MakeSpan(g, width));
        for (size_t c = 0; c < width; ++c) g_norm_sq += g[c] * g[c];
      },
      dots.data());
  if (!u.empty()) along_u->assign(dots.begin(), dots.begin() + n);
  if (rng != nullptr) along_g->assign(dots.end() - n, dots.end());
  return g_norm_sq;
}

// The power step: from along_g[i] = x_iᵀg, u = Σ_c v0 with v0 = g/‖g‖, i.e.
// a_i = (x_i − μ)ᵀv0 and u = Σ_i c_i a_i (x_i − μ) / Σc = Σ_i γ_i x_i (d
// floats). Returns λ̂ = ‖u‖. Overwrites along_g.
double PowerStep(const float* batch, size_t n, size_t d, const std::vector<double>& c, double c_sum,
                 double g_norm_sq, std::vector<double>* along_g, std::vector<float>* u) {
  Center(c, c_sum, 1.0 / std::sqrt(g_norm_sq), along_g);
  std::vector<double> gamma(n);
  double a_sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    gamma[i] = c[i] * (*along_g)[i] / c_sum;
    a_sum += gamma[i];
  }
  for (size_t i = 0; i < n; ++i) gamma[i] -= a_sum * c[i] / c_sum;
  u->resize(d);
  WeightedSumOfRows(batch, d, AllRows(n), gamma, u->data());
  double norm_sq = 0.0;
  for (float v : *u) norm_sq += static_cast<double>(v) * v;
  return std::sqrt(norm_sq);
}

class Caf final : public Rule {
 public:
  Caf(RuleSpec spec, uint64_t seed) : Rule(std::move(spec)), seed_(seed) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    const double keep = static_cast<double>(n - 2 * f());
    std::vector<double> c(n, 1.0), best = c, along_g, along_u;
    std::vector<float> u;
    double best_lambda = std::numeric_limits<double>::infinity();
    double g_norm_sq = 0.0;
    if (Sum(c) > keep) {
      const CounterRng rng(seed_, 0);
      g_norm_sq = Project(batch, n, d, u, &rng, &along_u, &along_g);
    }
    for (size_t it = 0; it < n; ++it) {
      const double c_sum = Sum(c);
      if (!(c_sum > keep)) break;
      const double lambda = PowerStep(batch, n, d, c, c_sum, g_norm_sq, &along_g, &u);
      if (!(lambda > 0.0)) {  // No spread along v0: λ̂ = 0.
        best = c;
        break;
      }
      if (lambda < best_lambda) {
        best_lambda = lambda;
        best = c;
      }
      // τ_i = ((x_i − μ)ᵀu / λ̂)²; the same pass draws the next start vector.
      const CounterRng next(seed_, it + 1);
      g_norm_sq = Project(batch, n, d, u, it + 1 < n ? &next : nullptr, &along_u, &along_g);
      Center(c, c_sum, 1.0 / lambda, &along_u);
      double tau_max = 0.0;
      for (double& t : along_u) {
        t *= t;
        tau_max = std::max(tau_max, t);
      }
      if (!(tau_max > 0.0)) break;
      for (size_t i = 0; i < n; ++i) c[i] *= 1.0 - along_u[i] / tau_max;
    }
    const double best_sum = Sum(best);
    for (double& weight : best) weight /= best_sum;
    WeightedSumOfRows(batch, d, AllRows(n), best, out);
    SetRelativeInfluence(best);
    return absl::OkStatus();
  }

  const uint64_t seed_;
};

}  // namespace

RuleOr NewCaf(const NoOptions&, RuleSpec spec) {
  const uint64_t seed = spec.seed;
  return std::make_unique<Caf>(std::move(spec), seed);
}

}  // namespace tally::aggregators
