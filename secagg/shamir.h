// Shamir secret sharing of 32-byte secrets (self-mask seeds and X25519
// private keys) over GF(p), p = 2^61 - 1 (docs/secure-aggregation.md#shamir-sharing).
// The secret is cut into 8 little-endian 32-bit limbs; each limb is the
// constant term of its own random polynomial of degree t - 1 with
// coefficients uniform in GF(p); share i holds the 8 evaluations at x_i
// (x_i = the receiver's 1-based index in the instance, 0 < x_i < p). Any t
// shares give the secret (Lagrange interpolation at 0), fewer give no
// information (each limb is information-theoretically hidden). A share is
// 64 bytes on the wire: 8 limbs of 8 bytes, little-endian, each < p.
// Thread-safe functions.
#ifndef TALLY_SECAGG_SHAMIR_H_
#define TALLY_SECAGG_SHAMIR_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "secagg/crypto.h"

namespace tally::secagg {

inline constexpr uint64_t kShamirPrime = (uint64_t{1} << 61) - 1;
inline constexpr size_t kShamirLimbs = 8;
inline constexpr size_t kShareBytes = kShamirLimbs * 8;

struct Share {
  uint32_t x = 0;
  std::array<uint64_t, kShamirLimbs> y{};
};

// Splits `secret` into shares at the points `xs` (distinct, non-zero) with
// threshold t (1 <= t <= xs.size()); coefficients from OpenSSL's CSPRNG.
absl::StatusOr<std::vector<Share>> ShamirSplit(const Key& secret, uint32_t threshold,
                                               absl::Span<const uint32_t> xs);

// The secret from `shares` (distinct, non-zero x): FAILED_PRECONDITION with
// fewer than `threshold` shares; DATA_LOSS if the shares beyond the first t
// disagree with the polynomial through the first t, or if a limb of the
// result is not a 32-bit value (shares that belong to no secret).
absl::StatusOr<Key> ShamirReconstruct(absl::Span<const Share> shares, uint32_t threshold);

// Wire form of a share's values (64 bytes) and its parse, which rejects a
// wrong length or a limb >= p with INVALID_ARGUMENT.
Bytes SerializeShareValues(const Share& share);
absl::StatusOr<Share> ParseShareValues(uint32_t x, absl::Span<const uint8_t> bytes);

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_SHAMIR_H_
