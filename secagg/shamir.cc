#include "secagg/shamir.h"

#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace tally::secagg {
namespace {

constexpr uint64_t kP = kShamirPrime;

uint64_t Reduce(unsigned __int128 v) {  // v < 2^122.
  uint64_t r = static_cast<uint64_t>(v & kP) + static_cast<uint64_t>(v >> 61);
  r = (r & kP) + (r >> 61);
  return r >= kP ? r - kP : r;
}
uint64_t Add(uint64_t a, uint64_t b) { return (a + b) % kP; }
uint64_t Sub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + kP - b; }
uint64_t Mul(uint64_t a, uint64_t b) { return Reduce(static_cast<unsigned __int128>(a) * b); }
uint64_t Pow(uint64_t a, uint64_t e) {
  uint64_t r = 1;
  for (; e > 0; e >>= 1, a = Mul(a, a)) {
    if (e & 1) r = Mul(r, a);
  }
  return r;
}
uint64_t Inverse(uint64_t a) { return Pow(a, kP - 2); }

absl::Status CheckPoints(absl::Span<const uint32_t> xs) {
  absl::flat_hash_set<uint32_t> seen;
  for (uint32_t x : xs) {
    if (x == 0) return absl::InvalidArgumentError("Shamir: share point x = 0");
    if (!seen.insert(x).second) {
      return absl::InvalidArgumentError(absl::StrCat("Shamir: duplicate share point x = ", x));
    }
  }
  return absl::OkStatus();
}

// Lagrange coefficients at `at` of the points xs: l_j(at) = prod_{m != j}
// (at - x_m) / (x_j - x_m).
std::vector<uint64_t> LagrangeAt(absl::Span<const uint32_t> xs, uint64_t at) {
  std::vector<uint64_t> l(xs.size());
  for (size_t j = 0; j < xs.size(); ++j) {
    uint64_t num = 1, den = 1;
    for (size_t m = 0; m < xs.size(); ++m) {
      if (m == j) continue;
      num = Mul(num, Sub(at, xs[m]));
      den = Mul(den, Sub(xs[j], xs[m]));
    }
    l[j] = Mul(num, Inverse(den));
  }
  return l;
}

}  // namespace

absl::StatusOr<std::vector<Share>> ShamirSplit(const Key& secret, uint32_t threshold,
                                               absl::Span<const uint32_t> xs) {
  if (threshold < 1 || threshold > xs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Shamir: threshold ", threshold, " outside [1, ", xs.size(), "]"));
  }
  if (absl::Status s = CheckPoints(xs); !s.ok()) return s;
  // coefficients[limb][d] for d = 0..t-1; d = 0 is the secret limb.
  std::vector<std::vector<uint64_t>> coefficients(kShamirLimbs, std::vector<uint64_t>(threshold));
  for (size_t limb = 0; limb < kShamirLimbs; ++limb) {
    uint32_t v;
    std::memcpy(&v, secret.data() + 4 * limb, 4);
    coefficients[limb][0] = v;
    for (uint32_t d = 1; d < threshold; ++d) {
      uint64_t c;
      do {  // Uniform in [0, p): 61 random bits, rejecting p itself.
        absl::StatusOr<Bytes> r = RandomBytes(8);
        if (!r.ok()) return r.status();
        std::memcpy(&c, r->data(), 8);
        c &= kP;
      } while (c == kP);
      coefficients[limb][d] = c;
    }
  }
  std::vector<Share> shares(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    shares[i].x = xs[i];
    for (size_t limb = 0; limb < kShamirLimbs; ++limb) {
      uint64_t acc = 0;  // Horner.
      for (uint32_t d = threshold; d-- > 0;) acc = Add(Mul(acc, xs[i]), coefficients[limb][d]);
      shares[i].y[limb] = acc;
    }
  }
  return shares;
}

absl::StatusOr<Key> ShamirReconstruct(absl::Span<const Share> shares, uint32_t threshold) {
  if (threshold < 1) return absl::InvalidArgumentError("Shamir: threshold 0");
  if (shares.size() < threshold) {
    return absl::FailedPreconditionError(
        absl::StrCat("Shamir: ", shares.size(), " shares, fewer than the threshold ", threshold));
  }
  std::vector<uint32_t> xs;
  for (const Share& s : shares) xs.push_back(s.x);
  if (absl::Status s = CheckPoints(xs); !s.ok()) return s;
  for (const Share& s : shares) {
    for (uint64_t y : s.y) {
      if (y >= kP) return absl::InvalidArgumentError("Shamir: share value not below p");
    }
  }
  absl::Span<const uint32_t> base(xs.data(), threshold);
  const std::vector<uint64_t> at_zero = LagrangeAt(base, 0);
  Key secret;
  for (size_t limb = 0; limb < kShamirLimbs; ++limb) {
    uint64_t v = 0;
    for (uint32_t j = 0; j < threshold; ++j) v = Add(v, Mul(at_zero[j], shares[j].y[limb]));
    if (v > UINT32_MAX) {
      return absl::DataLossError("Shamir: the shares interpolate to no valid secret");
    }
    const uint32_t w = static_cast<uint32_t>(v);
    std::memcpy(secret.data() + 4 * limb, &w, 4);
  }
  // Every further share must lie on the same polynomials.
  for (size_t e = threshold; e < shares.size(); ++e) {
    const std::vector<uint64_t> l = LagrangeAt(base, shares[e].x);
    for (size_t limb = 0; limb < kShamirLimbs; ++limb) {
      uint64_t v = 0;
      for (uint32_t j = 0; j < threshold; ++j) v = Add(v, Mul(l[j], shares[j].y[limb]));
      if (v != shares[e].y[limb]) {
        return absl::DataLossError(
            absl::StrCat("Shamir: the share at x = ", shares[e].x,
                         " disagrees with the others (a corrupted or forged share)"));
      }
    }
  }
  return secret;
}

Bytes SerializeShareValues(const Share& share) {
  Bytes out(kShareBytes);
  for (size_t limb = 0; limb < kShamirLimbs; ++limb) {
    std::memcpy(out.data() + 8 * limb, &share.y[limb], 8);
  }
  return out;
}

absl::StatusOr<Share> ParseShareValues(uint32_t x, absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kShareBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("Shamir share of ", bytes.size(), " bytes, expected ", kShareBytes));
  }
  Share share;
  share.x = x;
  for (size_t limb = 0; limb < kShamirLimbs; ++limb) {
    std::memcpy(&share.y[limb], bytes.data() + 8 * limb, 8);
    if (share.y[limb] >= kP) {
      return absl::InvalidArgumentError("Shamir share value not below p = 2^61 - 1");
    }
  }
  return share;
}

}  // namespace tally::secagg
