#include "aggregators/rules/flag.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <optional>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"
#include "core/status_macros.h"
#include "aggregators/rules/flag_random_init.h"

namespace tally::aggregators {
namespace {

constexpr double kEps = 1e-7;         // flag_mean_iteration eps.
constexpr double kNormFloor = 1e-12;  // F.normalize.
constexpr double kRankTol = 1e-12;    // Eigenvalues kept: > tol · Λ_max.
constexpr double kStopTol = 1e-10;    // irls_flag tolerances.

// Σ_i sqrt(max(0, 1 − ‖P[:,i]‖²)); P is rows x n row-major.
double Objective(const std::vector<double>& p, size_t rows, size_t n) {
  double e = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double sq = 0.0;
    for (size_t a = 0; a < rows; ++a) sq += p[a * n + i] * p[a * n + i];
    e += std::sqrt(std::max(0.0, 1.0 - sq));
  }
  return e;
}

// The IRLS weight matrix M (diag(w²) plus the λ-pair Laplacian;
// docs/algorithms.md#flag-gram-form-and-constants).
std::vector<double> WeightMatrix(const std::vector<double>& p, size_t rows, size_t n,
                                 double lambda) {
  std::vector<double> m(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    double sq = 0.0;
    for (size_t a = 0; a < rows; ++a) sq += p[a * n + i] * p[a * n + i];
    const double w = std::pow(std::fabs(1.0 - sq) + kEps, -0.25);
    m[i * n + i] = w * w;
  }
  if (lambda <= 0.0) return m;
  const double scale = lambda / static_cast<double>(n * (n - 1));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;  // Ordered pairs: each unordered pair counts twice.
      double sq = 0.0;
      for (size_t a = 0; a < rows; ++a) {
        const double diff = p[a * n + i] - p[a * n + j];
        sq += diff * diff;
      }
      const double w = std::pow(std::fabs(1.0 - sq) + kEps, -0.25) * scale;
      const double q = w * w;
      m[i * n + i] += q;
      m[j * n + j] += q;
      m[i * n + j] -= q;
      m[j * n + i] -= q;
    }
  }
  return m;
}

// The state of one Gram-form run: Ĝ's kept eigenpairs.
struct GramBasis {
  size_t n = 0;
  size_t m = 0;
  std::vector<double> g_hat;    // n x n.
  std::vector<double> lambda;   // m kept eigenvalues.
  std::vector<double> vectors;  // n x m (columns = eigenvectors).
};

// One FlagIter: Φ (n x r') from the current projections P.
std::vector<double> FlagIteration(const GramBasis& basis, const std::vector<double>& p,
                                  size_t p_rows, const FlagParams& params, size_t* r_out) {
  const size_t n = basis.n;
  const size_t m = basis.m;
  const std::vector<double> weights = WeightMatrix(p, p_rows, n, params.lambda);
  // B = Λ^{1/2} Vᵀ M V Λ^{1/2}.
  std::vector<double> mv(n * m, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < n; ++k) {
      const double w = weights[i * n + k];
      if (w == 0.0) continue;
      for (size_t c = 0; c < m; ++c) mv[i * m + c] += w * basis.vectors[k * m + c];
    }
  }
  std::vector<double> b(m * m, 0.0);
  for (size_t a = 0; a < m; ++a) {
    for (size_t c = 0; c < m; ++c) {
      double sum = 0.0;
      for (size_t i = 0; i < n; ++i) sum += basis.vectors[i * m + a] * mv[i * m + c];
      b[a * m + c] = std::sqrt(basis.lambda[a] * basis.lambda[c]) * sum;
    }
  }
  std::vector<double> sigma, w;
  SymmetricEigen(std::move(b), m, &sigma, &w);
  const size_t r = std::min(static_cast<size_t>(params.r), m);
  // Φ = V Λ^{-1/2} W[:, :r'].
  std::vector<double> phi(n * r, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t c = 0; c < r; ++c) {
      double sum = 0.0;
      for (size_t a = 0; a < m; ++a) {
        sum += basis.vectors[i * m + a] / std::sqrt(basis.lambda[a]) * w[a * m + c];
      }
      phi[i * r + c] = sum;
    }
  }
  *r_out = r;
  return phi;
}

// P = Φᵀ Ĝ (r x n).
std::vector<double> Project(const GramBasis& basis, const std::vector<double>& phi, size_t r) {
  const size_t n = basis.n;
  std::vector<double> p(r * n, 0.0);
  for (size_t c = 0; c < r; ++c) {
    for (size_t i = 0; i < n; ++i) {
      double sum = 0.0;
      for (size_t k = 0; k < n; ++k) sum += phi[k * r + c] * basis.g_hat[k * n + i];
      p[c * n + i] = sum;
    }
  }
  return p;
}

// P0 = Y0ᵀ X for an explicit d x r Y0 (x_i = g_i / ν_i).
std::vector<double> ExplicitProjections(const float* batch, size_t n, size_t d,
                                        absl::Span<const double> y0, size_t r,
                                        const std::vector<double>& nu) {
  std::vector<double> p(r * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const float* g = batch + i * d;
    for (size_t j = 0; j < d; ++j) {
      for (size_t c = 0; c < r; ++c) p[c * n + i] += y0[j * r + c] * g[j];
    }
    for (size_t c = 0; c < r; ++c) p[c * n + i] /= nu[i];
  }
  return p;
}

// The median of the row norms sqrt(K_ii) of the n x n Gram matrix K (even n:
// the mean of the two middle values, as the rule "median").
double MedianNorm(const std::vector<double>& gram, size_t n) {
  if (n == 0) return 0.0;
  std::vector<double> norms(n);
  for (size_t i = 0; i < n; ++i) norms[i] = std::sqrt(std::max(0.0, gram[i * n + i]));
  std::sort(norms.begin(), norms.end());
  return n % 2 == 1 ? norms[n / 2] : 0.5 * (norms[n / 2 - 1] + norms[n / 2]);
}

class Flag final : public Rule {
 public:
  // params.r == 0: FlagAutoR(n) per batch.
  Flag(RuleSpec spec, FlagParams params) : Rule(std::move(spec)), params_(params) {}

 private:
  absl::Status AggregateRows(const float* batch, size_t n, size_t d, float* out) override {
    FlagParams params = params_;
    if (params.r == 0) params.r = FlagAutoR(n);
    std::vector<double> coefficients;
    TALLY_RETURN_IF_ERROR(FlagAggregate(batch, n, d, params, {}, out, &coefficients));
    // Coefficients on the normalised rows; none when the output fell back to
    // the initial subspace (then every row counts 0).
    coefficients.resize(n, 0.0);
    SetRelativeInfluence(coefficients);
    return absl::OkStatus();
  }

  const FlagParams params_;
};

}  // namespace

int FlagAutoR(size_t n) { return static_cast<int>(std::max<size_t>(1, (n + 1) / 2)); }

void SymmetricEigen(std::vector<double> a, size_t m, std::vector<double>* values,
                    std::vector<double>* vectors) {
  std::vector<double> v(m * m, 0.0);
  for (size_t i = 0; i < m; ++i) v[i * m + i] = 1.0;
  double total = 0.0;
  for (double x : a) total += x * x;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0;
    for (size_t p = 0; p < m; ++p) {
      for (size_t q = p + 1; q < m; ++q) off += a[p * m + q] * a[p * m + q];
    }
    if (off <= 1e-30 * total || off == 0.0) break;
    for (size_t p = 0; p < m; ++p) {
      for (size_t q = p + 1; q < m; ++q) {
        const double apq = a[p * m + q];
        if (apq == 0.0) continue;
        const double theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
        const double t = (theta >= 0.0 ? 1.0 : -1.0) / (std::fabs(theta) + std::hypot(theta, 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0);
        const double s = t * c;
        for (size_t k = 0; k < m; ++k) {  // A <- A J.
          const double akp = a[k * m + p], akq = a[k * m + q];
          a[k * m + p] = c * akp - s * akq;
          a[k * m + q] = s * akp + c * akq;
        }
        for (size_t k = 0; k < m; ++k) {  // A <- Jᵀ A.
          const double apk = a[p * m + k], aqk = a[q * m + k];
          a[p * m + k] = c * apk - s * aqk;
          a[q * m + k] = s * apk + c * aqk;
        }
        for (size_t k = 0; k < m; ++k) {  // V <- V J.
          const double vkp = v[k * m + p], vkq = v[k * m + q];
          v[k * m + p] = c * vkp - s * vkq;
          v[k * m + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return a[x * m + x] > a[y * m + y]; });
  values->resize(m);
  vectors->assign(m * m, 0.0);
  for (size_t c = 0; c < m; ++c) {
    (*values)[c] = a[order[c] * m + order[c]];
    for (size_t k = 0; k < m; ++k) (*vectors)[k * m + c] = v[k * m + order[c]];
  }
}

absl::Status FlagAggregate(const float* batch, size_t n, size_t d, const FlagParams& params,
                           absl::Span<const double> y0, float* out,
                           std::vector<double>* coefficients) {
  const size_t r0 = static_cast<size_t>(params.r);
  if (!y0.empty() && y0.size() != d * r0) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag: explicit Y0 has ", y0.size(), " values, expected d*r = ", d * r0));
  }
  if (params.lambda > 0.0 && n < 2) {
    return absl::InvalidArgumentError("flag: lambda > 0 requires n >= 2");
  }
  GramBasis basis;
  basis.n = n;
  basis.g_hat = GramMatrix(batch, n, d);
  std::vector<double> nu(n);
  for (size_t i = 0; i < n; ++i) nu[i] = std::max(std::sqrt(basis.g_hat[i * n + i]), kNormFloor);
  // The factor on Y Yᵀ Σ_i x_i (FlagScale).
  const double output_scale = params.scale == FlagScale::kReference
                                  ? 1.0 / static_cast<double>(r0)
                                  : MedianNorm(basis.g_hat, n) / static_cast<double>(n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) basis.g_hat[i * n + j] /= nu[i] * nu[j];
  }
  std::vector<double> all_values, all_vectors;
  SymmetricEigen(basis.g_hat, n, &all_values, &all_vectors);
  const double top = n > 0 ? all_values[0] : 0.0;
  while (basis.m < n && top > 0.0 && all_values[basis.m] > kRankTol * top) ++basis.m;
  std::vector<double> c(n, 0.0);
  if (basis.m > 0) {
    basis.lambda.assign(all_values.begin(), all_values.begin() + basis.m);
    basis.vectors.resize(n * basis.m);
    for (size_t i = 0; i < n; ++i) {
      std::copy_n(&all_vectors[i * n], basis.m, &basis.vectors[i * basis.m]);
    }
    // P0: deterministic is zero; explicit is Y0ᵀ X; random
    // comes from the seeded Y_raw.
    std::optional<RandomSubspace> random;
    if (y0.empty() && params.init == FlagInit::kRandom) {
      absl::StatusOr<RandomSubspace> sub = RandomSubspace::Create(batch, n, d, r0, params.seed, nu);
      if (!sub.ok()) return sub.status();
      random = std::move(sub).value();
    }
    std::vector<double> p0;
    if (random.has_value()) {
      p0 = random->p0();
    } else {
      p0 = y0.empty() ? std::vector<double>(r0 * n, 0.0)
                      : ExplicitProjections(batch, n, d, y0, r0, nu);
    }
    std::vector<double> p = p0;
    size_t p_rows = r0;
    std::optional<std::vector<double>> phi, phi_prev;
    size_t r = 0, r_prev = 0;
    double e_prev = Objective(p0, r0, n);
    double delta = 1.0;
    for (int k = 1; k <= params.iterations && delta > kStopTol && e_prev > kStopTol; ++k) {
      phi_prev = std::move(phi);
      r_prev = r;
      phi = FlagIteration(basis, p, p_rows, params, &r);
      p = Project(basis, *phi, r);
      p_rows = r;
      const double e_new = Objective(p, r, n);
      delta = e_prev - e_new;
      e_prev = e_new;
    }
    if (!(delta > 0.0)) {
      phi = std::move(phi_prev);
      r = r_prev;
    }
    if (phi.has_value()) {
      // c = Φ (Φᵀ (Ĝ 1)) / r.
      std::vector<double> proj(r, 0.0);
      for (size_t a = 0; a < r; ++a) {
        for (size_t i = 0; i < n; ++i) {
          for (size_t k = 0; k < n; ++k) proj[a] += (*phi)[i * r + a] * basis.g_hat[i * n + k];
        }
      }
      for (size_t i = 0; i < n; ++i) {
        for (size_t a = 0; a < r; ++a) c[i] += (*phi)[i * r + a] * proj[a];
        c[i] *= output_scale;
      }
    } else if (!y0.empty() || random.has_value()) {
      // Fallback to Y0: a = Y0 (Y0ᵀ s) / r, Y0ᵀ s = Σ_i P0[:, i].
      std::vector<double> y0s(r0, 0.0);
      for (size_t a = 0; a < r0; ++a) {
        for (size_t i = 0; i < n; ++i) y0s[a] += p0[a * n + i];
      }
      if (random.has_value()) {
        for (double& v : y0s) v *= output_scale * static_cast<double>(r0);
        random->WriteProjection(d, std::move(y0s), static_cast<double>(r0), out);
        if (coefficients != nullptr) coefficients->clear();
        return absl::OkStatus();
      }
      for (size_t j = 0; j < d; ++j) {
        double sum = 0.0;
        for (size_t a = 0; a < r0; ++a) sum += y0[j * r0 + a] * y0s[a];
        out[j] = static_cast<float>(sum * output_scale);
      }
      if (coefficients != nullptr) coefficients->clear();
      return absl::OkStatus();
    }
  }
  // a = Σ_j (c_j / ν_j) g_j (second pass over the batch).
  std::vector<double> weights(n);
  for (size_t i = 0; i < n; ++i) weights[i] = c[i] / nu[i];
  WeightedSumOfRows(batch, d, AllRows(n), weights, out);
  if (coefficients != nullptr) *coefficients = std::move(c);
  return absl::OkStatus();
}

RuleOr NewFlag(const FlagOptions& options, RuleSpec spec) {
  if (options.r < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag: r must be >= 1 (or 0 for ceil(n/2)), got ", options.r));
  }
  if (!(options.lambda >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag: lambda must be >= 0, got ", options.lambda));
  }
  if (options.iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag: iterations must be >= 1, got ", options.iterations));
  }
  FlagParams params{options.r, options.lambda, options.iterations};
  if (options.scale == "median_norm") {
    params.scale = FlagScale::kMedianNorm;
  } else if (options.scale != "reference") {
    return absl::InvalidArgumentError(
        absl::StrCat("flag: flag_scale '", options.scale,
                     "' is not supported (known: median_norm, reference)"));
  }
  if (options.init == "random") {
    params.init = FlagInit::kRandom;
    params.seed = spec.seed;
  } else if (options.init != "deterministic") {
    return absl::InvalidArgumentError(
        absl::StrCat("flag: flag_init '", options.init,
                     "' is not supported (known: deterministic, random)"));
  }
  return std::make_unique<Flag>(std::move(spec), params);
}

}  // namespace tally::aggregators
