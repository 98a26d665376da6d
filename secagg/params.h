// The parameters of one secure-aggregation instance, their validation, the
// secure defaults of the neighbour degree k and threshold t, and the
// fixed-point grid of the masked integers (docs/secure-aggregation.md#parameters,
// docs/secure-aggregation.md#quantization). Pure functions, thread-safe.
#ifndef TALLY_SECAGG_PARAMS_H_
#define TALLY_SECAGG_PARAMS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tally::secagg {

struct SecAggParams {
  uint64_t instance_id = 0;    // Unique per round (and bucket); bound into keys and AEAD headers.
  uint32_t num_clients = 0;    // n: the instance's roster, clients 1..n.
  uint32_t degree = 0;         // k: neighbours per client (even, or >= n - 1: complete graph).
  uint32_t threshold = 0;      // t: shares needed to reconstruct (1 <= t <= k).
  int bits = 32;               // b: masked words are integers mod 2^b (32 or 64).
  double clip = 1.0;           // Every input value is clipped to [-clip, clip].
  uint64_t vector_length = 0;  // Values per masked input.
};

// INVALID_ARGUMENT naming the field when a parameter is out of range (n >= 2,
// 2 <= t <= k < n, k even unless k = n - 1, bits 32 or 64, 0 < clip < 2^32
// finite, vector_length >= 1, and a fraction-bit count >= 0 exists).
absl::Status ValidateParams(const SecAggParams& params);

// The effective degree: min(k, n - 1).
uint32_t EffectiveDegree(const SecAggParams& params);

// The fixed-point grid: the largest f <= 40 (core/exact_sum.h's grid, so a
// sum lifts exactly into ExactSum lanes) such that
//   n * floor(clip * 2^f) <= 2^(b-1) - 1,
// i.e. the sum of n clipped inputs never wraps modulo 2^b. INVALID_ARGUMENT
// if even f = 0 does not fit.
absl::StatusOr<int> FractionBits(const SecAggParams& params);
// floor(clip * 2^f): the largest |q| of one quantized value.
uint64_t MaxQuantized(const SecAggParams& params, int fraction_bits);

// q = clamp(round_half_even(x * 2^f), -max_q, max_q) as a b-bit two's
// complement word, written little-endian (4 or 8 bytes per value) to `out`
// (x.size() * b / 8 bytes). INVALID_ARGUMENT on a non-finite value (NaN or
// infinity carry no sensible clip).
absl::Status Quantize(const SecAggParams& params, int fraction_bits, absl::Span<const float> x,
                      absl::Span<uint8_t> out);
// The signed integer sums of little-endian b-bit words (two's complement at
// b bits) and their values sum * 2^-f.
std::vector<int64_t> SignedSums(int bits, absl::Span<const uint8_t> words);
std::vector<double> Dequantize(int bits, int fraction_bits, absl::Span<const uint8_t> words);

// Secure defaults (docs/secure-aggregation.md#parameters): for n clients, an
// expected dropout fraction delta and a corrupt fraction gamma, the smallest
// even k (Harary graph of degree k on a random relabelling) and a threshold t
// meeting, with the binomial model of Bell et al. (security sigma = 40 bits,
// correctness eta = 30 bits, union bound over n clients):
//   correctness  n * P[Bin(k, 1 - delta) < t]            <= 2^-30
//   privacy      n * P[Bin(k, gamma) >= 2t - k]          <= 2^-40
//                (t > (k + corrupt neighbours) / 2: a server that lies
//                about dropouts cannot collect both shares of a client)
//   connectivity n * (delta + gamma)^(k/2)               <= 2^-40
//                (no k/2 consecutive ring positions all gone)
// When no k < n - 1 meets them, the complete graph (k = n - 1) with
// t = floor((1 + gamma) k / 2) + 1 (capped at k), and meets_targets = false.
struct DefaultDegree {
  uint32_t degree = 0;
  uint32_t threshold = 0;
  bool meets_targets = false;
};
absl::StatusOr<DefaultDegree> SecureDefaults(uint32_t num_clients, double dropout_rate,
                                             double corrupt_fraction);

// log2 P[Bin(k, p) >= m] (for tests and the doc's table).
double Log2BinomialUpperTail(uint32_t k, double p, int64_t m);

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_PARAMS_H_
