// The exact sum (core/exact_sum.h) on its own: the worked example of
// docs/aggregation.md, the rounding, exact undo of hostile values, order
// independence, and the precision bound against an independent reference.
#include "core/exact_sum.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "aggregators/rules/striped_accumulator.h"
#include "core/vector_ops.h"
#include "gtest/gtest.h"

namespace tally {
namespace {

constexpr double kTwo40 = 1099511627776.0;  // 2^40

std::vector<float> Mean(const ExactSum& sum, double total_weight) {
  std::vector<float> out(sum.size());
  sum.Extract(0, total_weight, absl::MakeSpan(out));
  return out;
}

// docs/aggregation.md, worked example: a = (0.5, 0.25, -3) with 3 samples,
// b = (-1, 0.125, 1) with 1 sample. By hand: S = 2^40 * (3*0.5 - 1,
// 3*0.25 + 0.125, 3*-3 + 1) = 2^40 * (0.5, 0.875, -8); mean = S / (2^40 * 4)
// = (0.125, 0.21875, -2).
TEST(ExactSumTest, WorkedExample) {
  ExactSum sum(3);
  const std::vector<float> a = {0.5f, 0.25f, -3.0f}, b = {-1.0f, 0.125f, 1.0f};
  sum.Add(0, a.data(), 3, 3);
  sum.Add(0, b.data(), 3, 1);
  EXPECT_EQ(static_cast<__int128>(sum.Lane(0)), static_cast<__int128>(kTwo40 / 2));
  EXPECT_EQ(static_cast<__int128>(sum.Lane(2)), -8 * static_cast<__int128>(kTwo40));
  EXPECT_EQ(Mean(sum, 4), (std::vector<float>{0.125f, 0.21875f, -2.0f}));
  // Undo b: what remains is a alone, 3 * a / 3.
  sum.Add(0, b.data(), 3, -1);
  EXPECT_EQ(Mean(sum, 3), a);
}

TEST(ExactSumTest, RoundsHalfToEvenAtTwoToTheMinus40) {
  EXPECT_EQ(QuantizeValue(std::ldexp(1.0f, -41)), 0);       // 0.5 -> 0
  EXPECT_EQ(QuantizeValue(3 * std::ldexp(1.0f, -41)), 2);   // 1.5 -> 2
  EXPECT_EQ(QuantizeValue(5 * std::ldexp(1.0f, -41)), 2);   // 2.5 -> 2
  EXPECT_EQ(QuantizeValue(-3 * std::ldexp(1.0f, -41)), -2);
  EXPECT_EQ(QuantizeValue(1e-20f), 0);
  EXPECT_EQ(QuantizeValue(kMaxExactAbsValue), int64_t{1} << 62);
  EXPECT_EQ(QuantizeValue(-kMaxExactAbsValue), -(int64_t{1} << 62));
  EXPECT_EQ(QuantizeWeight(0.75), int64_t{3} << 30);
  // Products: rounded once, after the exact product.
  EXPECT_EQ(QuantizeProduct(3, std::ldexp(1.0f, -41)), 2);                    // 1.5 -> 2
  EXPECT_EQ(QuantizeProduct(int64_t{1} << 30, 3 * std::ldexp(1.0f, -71)), 2);  // 1.5 -> 2
  EXPECT_EQ(QuantizeProduct(int64_t{1} << 30, 5 * std::ldexp(1.0f, -71)), 2);  // 2.5 -> 2
  EXPECT_EQ(QuantizeProduct(-(int64_t{1} << 30), 7 * std::ldexp(1.0f, -71)), -4);  // -3.5
  EXPECT_EQ(QuantizeProduct(static_cast<int64_t>(kMaxExactWeight), -kMaxExactAbsValue),
            -(static_cast<__int128>(1) << 102));
  EXPECT_EQ(QuantizeProduct(1 << 20, std::numeric_limits<float>::denorm_min()), 0);
}

// The integer product path against long double, where w * x * 2^40 is exact
// for w < 2^40 (40 + 24 bits), over random weights and values of every
// magnitude, subnormals included; and the double path (w < 2^29) agrees.
TEST(ExactSumTest, ProductRoundingMatchesALongDoubleReference) {
  std::mt19937_64 rng(17);
  for (int i = 0; i < 200000; ++i) {
    const int64_t w = static_cast<int64_t>(rng() % kMaxExactWeight) * (rng() % 2 ? 1 : -1);
    uint32_t bits = static_cast<uint32_t>(rng());
    bits &= 0x8fffffffu;  // Exponents up to 2^-97..2^30 range, subnormals too.
    float x;
    std::memcpy(&x, &bits, 4);
    if (!std::isfinite(x) || std::fabs(x) > kMaxExactAbsValue) continue;
    const long double exact = std::ldexp(static_cast<long double>(w) * x, 40);
    const long double expected = std::nearbyintl(exact);
    ASSERT_EQ(static_cast<long double>(QuantizeProduct(w, x)), expected) << w << " " << x;
    if (w > -(int64_t{1} << 29) && w < (int64_t{1} << 29)) {
      ExactSum one(1);
      one.Add(0, &x, 1, w);
      ASSERT_EQ(static_cast<long double>(static_cast<__int128>(one.Lane(0))), expected);
    }
  }
}

// The attack of the exact-aggregation issue, at the limits the server
// accepts: values of 2^22 with weight 2^40 added to honest sums, then
// subtracted, leave the lanes bit-identical to the honest-only sum.
TEST(ExactSumTest, UndoOfExtremeValuesIsExact) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> small(-0.01f, 0.01f);
  const size_t d = 1000;
  ExactSum honest(d), attacked(d);
  std::vector<float> x(d), evil(d);
  for (int client = 0; client < 3; ++client) {
    for (float& v : x) v = small(rng);
    honest.Add(0, x.data(), d, client + 1);
    attacked.Add(0, x.data(), d, client + 1);
    if (client == 0) {
      for (size_t j = 0; j < d; ++j) evil[j] = (j % 2 ? 1 : -1) * kMaxExactAbsValue;
      attacked.Add(0, evil.data(), d, static_cast<int64_t>(kMaxExactWeight));
    }
  }
  EXPECT_GT(attacked.wide_blocks(), 0u);  // 2^62 * 2^40 needs the 128-bit form.
  EXPECT_EQ(honest.wide_blocks(), 0u);
  attacked.Add(0, evil.data(), d, -static_cast<int64_t>(kMaxExactWeight));
  ASSERT_EQ(honest.Lanes(), attacked.Lanes());
  // Both forms give the same mean bits.
  std::vector<float> a(d), b(d);
  honest.Extract(0, 6.0, absl::MakeSpan(a));
  attacked.Extract(0, 6.0, absl::MakeSpan(b));
  ASSERT_EQ(a, b);
}

// Any order of additions, any cut into chunks, any number of threads: the
// same lanes.
TEST(ExactSumTest, SumDoesNotDependOnOrderChunksOrThreads) {
  std::mt19937 rng(11);
  const size_t d = 20000, n = 8;
  std::vector<std::vector<float>> x(n, std::vector<float>(d));
  std::vector<int64_t> w(n);
  std::uniform_real_distribution<float> exponent(-30.0f, 20.0f);
  for (size_t i = 0; i < n; ++i) {
    w[i] = 1 + rng() % 1000000;
    for (float& v : x[i]) v = (rng() % 2 ? 1 : -1) * std::exp2(exponent(rng));
  }
  ExactSum reference(d);
  for (size_t i = 0; i < n; ++i) reference.Add(0, x[i].data(), d, w[i]);
  for (int trial = 0; trial < 5; ++trial) {
    aggregators::StripedAccumulator acc(d, /*stripe_lanes=*/kExactBlockLanes);
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    const int threads = 1 + trial % 4;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::mt19937 local(100 + t);
        for (size_t k = t; k < n; k += threads) {
          const size_t i = order[k];
          for (size_t off = 0; off < d;) {
            const size_t len = std::min<size_t>(d - off, 1 + local() % 7000);
            acc.Add(off, x[i].data() + off, len, w[i]);
            off += len;
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    const std::vector<ExactLane> lanes = acc.Lanes();
    ASSERT_EQ(lanes, reference.Lanes()) << "trial " << trial;
  }
}

// The documented bound (docs/aggregation.md): over the whole accepted range
// (|x| <= 2^22, weights 1 .. 2^40) the weighted mean differs from the exact
// one by at most 2^-41 (the rounding of each value) plus half a float32 ulp
// of the result (its final rounding), plus the double steps of Extract. The
// reference is computed independently in long double, where every product
// w * x (40 + 24 bits) is exact.
TEST(ExactSumTest, MeanMatchesALongDoubleReferenceWithinTheBound) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> exponent(-45.0, 22.0);
  const size_t d = 20000, n = 6;
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<std::vector<float>> x(n, std::vector<float>(d));
    std::vector<int64_t> w(n);
    long double total = 0;
    for (size_t i = 0; i < n; ++i) {
      w[i] = trial % 2 ? static_cast<int64_t>(1 + rng() % kMaxExactWeight)
                       : static_cast<int64_t>(1 + rng() % 1000);
      total += static_cast<long double>(w[i]);
      for (float& v : x[i]) {
        v = static_cast<float>((rng() % 2 ? 1 : -1) * std::exp2(exponent(rng)));
        v = std::clamp(v, -kMaxExactAbsValue, kMaxExactAbsValue);
      }
    }
    ExactSum sum(d);
    for (size_t i = 0; i < n; ++i) sum.Add(0, x[i].data(), d, w[i]);
    const std::vector<float> mean = Mean(sum, static_cast<double>(total));
    for (size_t j = 0; j < d; ++j) {
      long double s = 0, magnitude = 0;
      for (size_t i = 0; i < n; ++i) {
        s += static_cast<long double>(w[i]) * x[i][j];
        magnitude += std::fabs(static_cast<long double>(w[i]) * x[i][j]);
      }
      const long double ref = s / total;
      const long double ulp = std::nextafter(std::fabs(static_cast<float>(ref)),
                                             std::numeric_limits<float>::infinity()) -
                              std::fabs(static_cast<float>(ref));
      // The reference's own rounding: n additions at 2^-64 relative (x87) or
      // better.
      const long double ref_error = n * std::ldexp(magnitude / total, -63);
      const long double bound = std::ldexp(1.0L, -41) + 0.5L * ulp +
                                std::ldexp(std::fabs(ref), -51) + ref_error;
      ASSERT_LE(std::fabs(mean[j] - ref), bound)
          << "trial " << trial << " j " << j << " ref " << static_cast<double>(ref);
    }
  }
}

TEST(ExactSumTest, ValueChecksSeparateNonFiniteFromOutOfRange) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> ok = {0.0f, -1e6f, 1e6f, 1e-30f};
  std::vector<float> big = {0.0f, 1.5e6f}, not_finite = {1.0f, nan}, infinite = {inf};
  auto bytes = [](const std::vector<float>& v) { return reinterpret_cast<const char*>(v.data()); };
  EXPECT_TRUE(AllWithinBytes(bytes(ok), ok.size(), 1e6f));
  EXPECT_FALSE(AllWithinBytes(bytes(big), big.size(), 1e6f));
  EXPECT_EQ(FirstOutsideBytes(bytes(big), big.size(), 1e6f), 1u);
  EXPECT_FALSE(AllWithinBytes(bytes(not_finite), 2, 1e6f));
  EXPECT_FALSE(AllWithinBytes(bytes(infinite), 1, kMaxExactAbsValue));
  std::vector<float> copy(4);
  EXPECT_TRUE(CopyAllWithinBytes(bytes(ok), copy.data(), 4, 1e6f));
  EXPECT_EQ(copy, ok);
  EXPECT_FALSE(CopyAllWithinBytes(bytes(big), copy.data(), 2, 1e6f));
}

}  // namespace
}  // namespace tally
