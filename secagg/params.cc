#include "secagg/params.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/exact_sum.h"

namespace tally::secagg {

uint32_t EffectiveDegree(const SecAggParams& params) {
  return std::min(params.degree, params.num_clients - 1);
}

uint64_t MaxQuantized(const SecAggParams& params, int fraction_bits) {
  return static_cast<uint64_t>(std::floor(std::ldexp(params.clip, fraction_bits)));
}

namespace {

bool Fits(const SecAggParams& params, int f) {
  const double scaled = std::ldexp(params.clip, f);
  if (scaled >= 9.2e18) return false;  // floor(clip * 2^f) must fit an int64.
  const unsigned __int128 total =
      static_cast<unsigned __int128>(params.num_clients) * MaxQuantized(params, f);
  const unsigned __int128 limit = (static_cast<unsigned __int128>(1) << (params.bits - 1)) - 1;
  return total <= limit;
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("secure_aggregation.", field, ": ", why));
}

}  // namespace

absl::StatusOr<int> FractionBits(const SecAggParams& params) {
  for (int f = kExactFractionBits; f >= 0; --f) {
    if (Fits(params, f)) return f;
  }
  return Invalid("clip", absl::StrCat("n = ", params.num_clients, " inputs clipped to ",
                                      params.clip, " can wrap modulo 2^", params.bits,
                                      " even on an integer grid: lower clip or use bits = 64"));
}

absl::Status ValidateParams(const SecAggParams& params) {
  if (params.num_clients < 2) return Invalid("num_clients", "an instance needs at least 2 clients");
  if (params.bits != 32 && params.bits != 64) {
    return Invalid("bits", absl::StrCat("must be 32 or 64, got ", params.bits));
  }
  if (!(params.clip > 0) || !std::isfinite(params.clip) || params.clip >= 4294967296.0) {
    return Invalid("clip", absl::StrCat("must be finite in (0, 2^32), got ", params.clip));
  }
  if (params.vector_length == 0) return Invalid("vector_length", "must be at least 1");
  const uint32_t k = EffectiveDegree(params);
  if (params.degree < 2)
    return Invalid("degree", absl::StrCat("must be >= 2, got ", params.degree));
  if (k < params.num_clients - 1 && k % 2 != 0) {
    return Invalid("degree", absl::StrCat("must be even (a Harary ring), got ", k));
  }
  if (params.threshold <= k / 2 || params.threshold > k) {
    return Invalid("threshold", absl::StrCat("must be in (k/2, k] = (", k / 2, ", ", k,
                                             "] so that no one holding fewer than a majority "
                                             "of a client's neighbours can unmask it, got ",
                                             params.threshold));
  }
  absl::StatusOr<int> f = FractionBits(params);
  return f.status();
}

absl::Status Quantize(const SecAggParams& params, int fraction_bits, absl::Span<const float> x,
                      absl::Span<uint8_t> out) {
  const size_t word = params.bits / 8;
  if (out.size() != x.size() * word) {
    return absl::InvalidArgumentError(
        absl::StrCat("Quantize: output of ", out.size(), " bytes for ", x.size(), " values"));
  }
  // M as an integer for the final clamp, and as a double (maybe rounded up
  // past 2^53) to keep llrint in range.
  const int64_t max_q = static_cast<int64_t>(MaxQuantized(params, fraction_bits));
  const double max_d = static_cast<double>(max_q);
  const double scale = std::ldexp(1.0, fraction_bits);
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      return absl::InvalidArgumentError(absl::StrCat("value ", i, " is not finite"));
    }
    // x * 2^f is exact in double; llrint rounds half to even (the default
    // rounding mode; one instruction with -fno-math-errno, as in
    // core/exact_sum.cc).
    const double clamped = std::clamp(static_cast<double>(x[i]) * scale, -max_d, max_d);
    const int64_t q = std::clamp<int64_t>(std::llrint(clamped), -max_q, max_q);
    const uint64_t w = static_cast<uint64_t>(q);
    std::memcpy(out.data() + i * word, &w, word);  // Little-endian host (crypto.cc checks).
  }
  return absl::OkStatus();
}

std::vector<int64_t> SignedSums(int bits, absl::Span<const uint8_t> words) {
  const size_t word = bits / 8;
  std::vector<int64_t> out(words.size() / word);
  for (size_t i = 0; i < out.size(); ++i) {
    if (bits == 32) {
      int32_t v;
      std::memcpy(&v, words.data() + 4 * i, 4);
      out[i] = v;
    } else {
      std::memcpy(&out[i], words.data() + 8 * i, 8);
    }
  }
  return out;
}

std::vector<double> Dequantize(int bits, int fraction_bits, absl::Span<const uint8_t> words) {
  std::vector<int64_t> sums = SignedSums(bits, words);
  std::vector<double> out(sums.size());
  for (size_t i = 0; i < sums.size(); ++i) {
    out[i] = std::ldexp(static_cast<double>(sums[i]), -fraction_bits);
  }
  return out;
}

double Log2BinomialUpperTail(uint32_t k, double p, int64_t m) {
  if (m <= 0) return 0.0;
  if (m > static_cast<int64_t>(k)) return -INFINITY;
  if (p <= 0) return -INFINITY;
  if (p >= 1) return 0.0;
  // log-sum-exp over j = m..k of C(k, j) p^j (1-p)^(k-j).
  std::vector<double> terms;
  for (int64_t j = m; j <= static_cast<int64_t>(k); ++j) {
    terms.push_back(std::lgamma(k + 1.0) - std::lgamma(j + 1.0) - std::lgamma(k - j + 1.0) +
                    j * std::log(p) + (k - j) * std::log1p(-p));
  }
  const double top = *std::max_element(terms.begin(), terms.end());
  double sum = 0;
  for (double t : terms) sum += std::exp(t - top);
  return (top + std::log(sum)) / std::log(2.0);
}

absl::StatusOr<DefaultDegree> SecureDefaults(uint32_t num_clients, double dropout_rate,
                                             double corrupt_fraction) {
  if (num_clients < 3) {
    return absl::InvalidArgumentError("secure aggregation needs at least 3 clients per instance");
  }
  if (!(dropout_rate >= 0 && dropout_rate < 1) ||
      !(corrupt_fraction >= 0 && corrupt_fraction < 1)) {
    return absl::InvalidArgumentError("dropout_rate and corrupt_fraction must be in [0, 1)");
  }
  const double log2n = std::log2(static_cast<double>(num_clients));
  constexpr double kSigma = 40, kEta = 30;
  const double lost = dropout_rate + corrupt_fraction;
  for (uint32_t k = 2; k < num_clients - 1; k += 2) {
    if (lost > 0 && log2n + (k / 2.0) * std::log2(lost) > -kSigma) continue;  // Connectivity.
    for (uint32_t t = k / 2 + 1; t <= k; ++t) {
      // Privacy: P[corrupt neighbours >= 2t - k].
      if (log2n + Log2BinomialUpperTail(k, corrupt_fraction, 2 * int64_t{t} - k) > -kSigma) {
        continue;
      }
      // Correctness: P[survivors < t] = P[dropped >= k - t + 1].
      if (log2n + Log2BinomialUpperTail(k, dropout_rate, int64_t{k} - t + 1) > -kEta) break;
      return DefaultDegree{k, t, true};
    }
  }
  const uint32_t k = num_clients - 1;
  const uint32_t t = std::min<uint32_t>(
      k, static_cast<uint32_t>(std::floor((1 + corrupt_fraction) * k / 2.0)) + 1);
  return DefaultDegree{k, t, false};
}

}  // namespace tally::secagg
