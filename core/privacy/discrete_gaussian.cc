#include "core/privacy/discrete_gaussian.h"

#include <openssl/bn.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"

namespace tally::privacy {
namespace {

using u128 = unsigned __int128;

struct BnCtxFree {
  void operator()(BN_CTX* ctx) const { BN_CTX_free(ctx); }
};
struct BnFree {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

BnPtr NewBn() {
  BnPtr bn(BN_new());
  ABSL_RAW_CHECK(bn != nullptr, "BN_new failed");
  return bn;
}

// A coin with P[true] = exp(-r/d) for 0 <= r <= d (Algorithm 1, gamma <= 1):
// K = 1, 2, ... until a Bernoulli(gamma / K) comes up 0; true iff K is odd.
bool BernoulliExpFractionSmall(RandomSource& random, uint64_t r, uint64_t d) {
  for (uint64_t k = 1;; ++k) {
    // Bernoulli(r / (d * k)); d * k < 2^128 for any k reachable here.
    if (random.UniformBelow128(static_cast<u128>(d) * k) >= r) return k % 2 == 1;
  }
}

// Uniform in [0, bound) for bound >= 1, from `random` (rejection on the
// covering power of two).
void UniformBelowBn(RandomSource& random, const BIGNUM* bound, BIGNUM* out) {
  const int bits = BN_num_bits(bound);
  std::vector<uint8_t> buf((bits + 7) / 8);
  for (;;) {
    random.Fill(buf.data(), buf.size());
    ABSL_RAW_CHECK(BN_bin2bn(buf.data(), static_cast<int>(buf.size()), out) != nullptr,
                   "BN_bin2bn failed");
    if (bits % 8 != 0) BN_mask_bits(out, bits);
    if (BN_cmp(out, bound) < 0) return;
  }
}

// The same coin for exp(-n/d) with big n, d (d >= 1): exp(-floor) as that
// many independent exp(-1) coins (stopping at the first 0), then the
// fraction.
bool BernoulliExpBig(RandomSource& random, const BIGNUM* n, const BIGNUM* d, BN_CTX* ctx) {
  BnPtr whole = NewBn(), rest = NewBn(), dk = NewBn(), u = NewBn();
  ABSL_RAW_CHECK(BN_div(whole.get(), rest.get(), n, d, ctx) == 1, "BN_div failed");
  for (BnPtr i = NewBn(); BN_cmp(i.get(), whole.get()) < 0; BN_add_word(i.get(), 1)) {
    if (!BernoulliExpFractionSmall(random, 1, 1)) return false;
  }
  for (BN_ULONG k = 1;; ++k) {
    ABSL_RAW_CHECK(BN_copy(dk.get(), d) != nullptr && BN_mul_word(dk.get(), k) == 1,
                   "BN arithmetic failed");
    UniformBelowBn(random, dk.get(), u.get());
    if (BN_cmp(u.get(), rest.get()) >= 0) return k % 2 == 1;
  }
}

void SetU128(BIGNUM* bn, u128 x) {
  ABSL_RAW_CHECK(BN_set_word(bn, static_cast<BN_ULONG>(x >> 64)) == 1 &&
                     BN_lshift(bn, bn, 64) == 1 &&
                     BN_add_word(bn, static_cast<BN_ULONG>(x & ~uint64_t{0})) == 1,
                 "BN arithmetic failed");
}

}  // namespace

bool BernoulliExp(RandomSource& random, uint64_t numerator, uint64_t denominator) {
  ABSL_RAW_CHECK(denominator >= 1, "BernoulliExp: denominator must be >= 1");
  for (uint64_t i = 0; i < numerator / denominator; ++i) {
    if (!BernoulliExpFractionSmall(random, 1, 1)) return false;
  }
  return BernoulliExpFractionSmall(random, numerator % denominator, denominator);
}

int64_t SampleDiscreteLaplace(RandomSource& random, uint64_t t) {
  ABSL_RAW_CHECK(t >= 1 && t <= (uint64_t{1} << 62), "SampleDiscreteLaplace: t out of range");
  for (;;) {
    // Algorithm 2 with s = 1: X = U + t * V, U uniform in [0, t) accepted
    // with probability exp(-U/t), V geometric with P[V >= v] = exp(-v).
    const uint64_t u = random.UniformBelow(t);
    if (!BernoulliExp(random, u, t)) continue;
    uint64_t v = 0;
    while (BernoulliExp(random, 1, 1)) ++v;
    const u128 x = static_cast<u128>(t) * v + u;
    const bool negative = random.Bit();
    if (negative && x == 0) continue;                 // -0 and +0 would count 0 twice.
    if (x >= (static_cast<u128>(1) << 62)) continue;  // Probability < exp(-2^11).
    const int64_t y = static_cast<int64_t>(x);
    return negative ? -y : y;
  }
}

absl::Status SampleDiscreteGaussian(RandomSource& random, uint64_t sigma, absl::Span<int64_t> out) {
  if (sigma == 0 || sigma > kMaxDiscreteSigma) {
    return absl::InvalidArgumentError(
        absl::StrCat("discrete Gaussian sigma must be in [1, 2^50], got ", sigma));
  }
  std::unique_ptr<BN_CTX, BnCtxFree> ctx(BN_CTX_new());
  if (ctx == nullptr) return absl::InternalError("BN_CTX_new failed");
  // Algorithm 3 with sigma^2 = s^2 and t = floor(sigma) + 1 = s + 1: accept
  // Y ~ DLap(t) with probability exp(-(|Y| - s^2/t)^2 / (2 s^2)), that is
  // exp(-n/d) with n = (|Y| t - s^2)^2 and d = 2 s^2 t^2.
  const uint64_t s = sigma;
  const uint64_t t = s + 1;
  const u128 s2 = static_cast<u128>(s) * s;
  BnPtr n = NewBn(), d = NewBn(), tmp = NewBn();
  SetU128(d.get(), static_cast<u128>(s) * t);
  ABSL_RAW_CHECK(BN_sqr(d.get(), d.get(), ctx.get()) == 1 && BN_lshift1(d.get(), d.get()) == 1,
                 "BN arithmetic failed");
  for (int64_t& sample : out) {
    for (;;) {
      const int64_t y = SampleDiscreteLaplace(random, t);
      const u128 abs_y = static_cast<u128>(y < 0 ? -y : y);
      // |Y| < 2^62 and t <= 2^50 + 1: |Y| t < 2^113 fits.
      const u128 yt = abs_y * t;
      const u128 diff = yt >= s2 ? yt - s2 : s2 - yt;
      SetU128(tmp.get(), diff);
      ABSL_RAW_CHECK(BN_sqr(n.get(), tmp.get(), ctx.get()) == 1, "BN_sqr failed");
      if (BernoulliExpBig(random, n.get(), d.get(), ctx.get())) {
        sample = y;
        break;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tally::privacy
