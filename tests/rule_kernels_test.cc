// The rules' building blocks (aggregators/rules/batch_ops, kernels, parallel)
// against naive definitions written here: every SIMD path, every thread
// split and every column tail is compared with a plain loop.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/kernels.h"
#include "aggregators/rules/parallel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::aggregators {
namespace {

// Large enough that two threads each get a share (batch_ops splits columns
// only above 32768 per thread), and not a multiple of 16 or 64.
constexpr size_t kSplitD = 70001;

// Restores the default thread count when a test ends.
class ThreadsScope {
 public:
  explicit ThreadsScope(int threads) { SetRuleThreads(threads); }
  ~ThreadsScope() { SetRuleThreads(0); }
};

std::vector<float> Batch(size_t n, size_t d, uint32_t seed, bool small_integers) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> integer(-3, 3);
  std::vector<float> batch(n * d);
  for (float& x : batch) x = small_integers ? static_cast<float>(integer(rng)) : normal(rng);
  return batch;
}

std::vector<float> Column(const std::vector<float>& batch, size_t n, size_t d, size_t j) {
  std::vector<float> column(n);
  for (size_t i = 0; i < n; ++i) column[i] = batch[i * d + j];
  return column;
}

double NaiveMedian(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size();
  return m % 2 == 1 ? v[m / 2] : 0.5 * (static_cast<double>(v[m / 2 - 1]) + v[m / 2]);
}

double NaiveTrimmedMean(std::vector<float> v, size_t f) {
  std::sort(v.begin(), v.end());
  double sum = 0.0;
  for (size_t p = f; p < v.size() - f; ++p) sum += v[p];
  return sum / static_cast<double>(v.size() - 2 * f);
}

// Mean of the k values with the smallest (|v − med|, position).
double NaiveClosestToMedian(const std::vector<float>& v, size_t k) {
  const double med = NaiveMedian(v);
  std::vector<std::pair<double, size_t>> keyed;
  for (size_t p = 0; p < v.size(); ++p) keyed.push_back({std::fabs(v[p] - med), p});
  std::sort(keyed.begin(), keyed.end());
  double sum = 0.0;
  for (size_t q = 0; q < k; ++q) sum += v[keyed[q].second];
  return sum / static_cast<double>(k);
}

TEST(SortingNetworkTest, SortsEveryZeroOneInputUpToSixteenWires) {
  // The 0-1 principle: a comparator network that sorts every 0/1 input sorts
  // every input.
  for (size_t m = 1; m <= 16; ++m) {
    const std::vector<uint32_t> network = SortingNetwork(m);
    for (uint32_t bits = 0; bits < (1u << m); ++bits) {
      std::vector<int> wires(m);
      for (size_t w = 0; w < m; ++w) wires[w] = (bits >> w) & 1;
      for (size_t q = 0; q < network.size(); q += 2) {
        ASSERT_LT(network[q], network[q + 1]);
        ASSERT_LT(network[q + 1], m);
        if (wires[network[q]] > wires[network[q + 1]]) {
          std::swap(wires[network[q]], wires[network[q + 1]]);
        }
      }
      ASSERT_TRUE(std::is_sorted(wires.begin(), wires.end())) << "m=" << m << " bits=" << bits;
    }
  }
}

TEST(SortingNetworkTest, SortsRandomPermutationsOfLargerSizes) {
  std::mt19937 rng(3);
  for (size_t m : {17u, 33u, 50u, 100u, 129u}) {
    const std::vector<uint32_t> network = SortingNetwork(m);
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<int> wires(m);
      std::iota(wires.begin(), wires.end(), 0);
      std::shuffle(wires.begin(), wires.end(), rng);
      for (size_t q = 0; q < network.size(); q += 2) {
        if (wires[network[q]] > wires[network[q + 1]]) {
          std::swap(wires[network[q]], wires[network[q + 1]]);
        }
      }
      ASSERT_TRUE(std::is_sorted(wires.begin(), wires.end())) << "m=" << m;
    }
  }
}

// A pruned network still puts the right values in each class of positions
// (here: lowest 10, middle 30, highest 10 of 50), with fewer comparators.
TEST(SortingNetworkTest, PruningKeepsEveryClass) {
  const size_t m = 50;
  std::vector<int> class_of(m);
  for (size_t p = 0; p < m; ++p) class_of[p] = p < 10 ? 0 : (p < 40 ? 1 : 2);
  const std::vector<uint32_t> full = SortingNetwork(m);
  const std::vector<uint32_t> pruned = PruneNetwork(full, class_of);
  EXPECT_LT(pruned.size(), full.size());
  std::mt19937 rng(4);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int> wires(m);
    std::iota(wires.begin(), wires.end(), 0);
    std::shuffle(wires.begin(), wires.end(), rng);
    for (size_t q = 0; q < pruned.size(); q += 2) {
      if (wires[pruned[q]] > wires[pruned[q + 1]]) std::swap(wires[pruned[q]], wires[pruned[q + 1]]);
    }
    for (size_t p = 0; p < m; ++p) {
      // Value v belongs to class 0 if v < 10, etc.
      ASSERT_EQ(class_of[static_cast<size_t>(wires[p])], class_of[p]) << "position " << p;
    }
  }
}

TEST(ColumnStatisticTest, MatchesTheDefinitionsWithAndWithoutTies) {
  const size_t d = 203;  // Full 64-column groups, a 16-lane group and a tail.
  for (bool ties : {false, true}) {
    for (size_t m : {1u, 2u, 3u, 5u, 8u, 16u, 17u, 50u}) {
      const std::vector<float> batch = Batch(m, d, static_cast<uint32_t>(m), ties);
      const std::vector<size_t> rows = AllRows(m);
      const size_t f = (m - 1) / 2;  // Largest f with m > 2f.
      std::vector<float> median(d), trimmed(d), closest(d);
      ColumnStatistic(batch.data(), d, rows, ColumnStat::kMedian, 0, median.data());
      ColumnStatistic(batch.data(), d, rows, ColumnStat::kTrimmedMean, f, trimmed.data());
      ColumnStatistic(batch.data(), d, rows, ColumnStat::kClosestToMedian, m - f, closest.data());
      for (size_t j = 0; j < d; ++j) {
        const std::vector<float> column = Column(batch, m, d, j);
        SCOPED_TRACE(testing::Message() << "ties=" << ties << " m=" << m << " column " << j);
        EXPECT_EQ(median[j], static_cast<float>(NaiveMedian(column)));
        EXPECT_EQ(trimmed[j], static_cast<float>(NaiveTrimmedMean(column, f)));
        EXPECT_FLOAT_EQ(closest[j], static_cast<float>(NaiveClosestToMedian(column, m - f)));
      }
    }
  }
}

// The network's comparators applied one by one to each column, as scalars,
// then the statistic read off the output wires (median: the middle one or
// two; trimmed mean: the float64 sum of wires [f, m - f) in wire order).
std::vector<float> ScalarNetworkStat(const std::vector<float>& batch, size_t m, size_t d,
                                     ColumnStat stat, size_t f) {
  std::vector<uint32_t> network = SortingNetwork(m);
  std::vector<int> class_of(m);
  for (size_t p = 0; p < m; ++p) {
    const size_t lower = (m - 1) / 2, upper = m / 2;
    class_of[p] = stat == ColumnStat::kTrimmedMean
                      ? (p < f ? 0 : (p < m - f ? 1 : 2))
                      : (p < lower ? 0 : (p == lower ? 1 : (p == upper ? 2 : 3)));
  }
  network = PruneNetwork(network, class_of);
  std::vector<float> out(d);
  for (size_t j = 0; j < d; ++j) {
    std::vector<float> w = Column(batch, m, d, j);
    for (size_t q = 0; q < network.size(); q += 2) {
      const float a = w[network[q]], b = w[network[q + 1]];
      w[network[q]] = a < b ? a : b;
      w[network[q + 1]] = a < b ? b : a;
    }
    if (stat == ColumnStat::kMedian) {
      out[j] = static_cast<float>(0.5 * (static_cast<double>(w[(m - 1) / 2]) + w[m / 2]));
    } else {
      double sum = 0.0;
      for (size_t p = f; p < m - f; ++p) sum += w[p];
      out[j] = static_cast<float>(sum / static_cast<double>(m - 2 * f));
    }
  }
  return out;
}

// The SIMD kernel (blocks of up to 32 wires on registers, the merging phases
// in memory, rows padded to whole blocks) gives the same bits as the
// comparators applied one at a time: the sign of a zero median (rows hold
// both -0 and +0) and the rounding of the sums (values spanning 2^-60 to
// 2^60) depend on the comparator order.
TEST(ColumnStatisticTest, BitIdenticalToTheNetworkAppliedOneComparatorAtATime) {
  const size_t d = 203;
  std::mt19937 rng(12);
  std::uniform_int_distribution<int> kind(0, 5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t m : {2u, 3u, 7u, 16u, 17u, 31u, 32u, 33u, 50u, 64u, 65u, 100u, 129u}) {
    std::vector<float> batch(m * d);
    for (float& x : batch) {
      const int k = kind(rng);
      x = k == 0 ? 0.0f : k == 1 ? -0.0f : std::ldexp(normal(rng), 30 * (k - 3));
    }
    const std::vector<size_t> rows = AllRows(m);
    std::vector<float> out(d);
    for (size_t f : {size_t{0}, m / 5, (m - 1) / 2}) {
      ColumnStatistic(batch.data(), d, rows, ColumnStat::kTrimmedMean, f, out.data());
      const std::vector<float> want = ScalarNetworkStat(batch, m, d, ColumnStat::kTrimmedMean, f);
      EXPECT_EQ(std::memcmp(out.data(), want.data(), d * sizeof(float)), 0)
          << "m=" << m << " f=" << f;
    }
    ColumnStatistic(batch.data(), d, rows, ColumnStat::kMedian, 0, out.data());
    const std::vector<float> want = ScalarNetworkStat(batch, m, d, ColumnStat::kMedian, 0);
    EXPECT_EQ(std::memcmp(out.data(), want.data(), d * sizeof(float)), 0) << "m=" << m;
  }
}

// Mirrored ties decided by row position: median 0, values -1 and +1 equally
// far, the lower row index wins.
TEST(ColumnStatisticTest, MirroredTieGoesToTheLowerRow) {
  // Rows: 1, -1, 0, 0, 0 (m = 5, keep 4): gaps 1, 1, 0, 0, 0 -> rows 2, 3, 4
  // and row 0 (position 0 beats 1): (1 + 0 + 0 + 0) / 4 = 0.25.
  const std::vector<float> batch = {1, -1, 0, 0, 0};
  std::vector<float> out(1);
  ColumnStatistic(batch.data(), 1, AllRows(5), ColumnStat::kClosestToMedian, 4, out.data());
  EXPECT_EQ(out[0], 0.25f);
  // Rows in another order (-1 first): (-1 + 0 + 0 + 0) / 4.
  const std::vector<float> swapped = {-1, 1, 0, 0, 0};
  ColumnStatistic(swapped.data(), 1, AllRows(5), ColumnStat::kClosestToMedian, 4, out.data());
  EXPECT_EQ(out[0], -0.25f);
}

// Rows outside the kept range of a column are counted; values equal to a
// bound count as kept.
TEST(ColumnStatisticTest, CountsTheColumnsThatLeaveEachRowOut) {
  // Rows x columns (d = 3): column 0 = (5, 1, 3, 2, 4), column 1 =
  // (1, 2, 3, 4, 5), column 2 all 3.
  const std::vector<float> batch = {5, 1, 3,  //
                                    1, 2, 3,  //
                                    3, 3, 3,  //
                                    2, 4, 3,  //
                                    4, 5, 3};
  std::vector<float> out(3);
  std::vector<uint64_t> left_out;
  // Trimmed mean f = 1 keeps [2nd smallest, 2nd largest] = [2, 4] in the
  // first two columns: rows 0 and 1 leave column 0, rows 0 and 4 column 1.
  ColumnStatistic(batch.data(), 3, AllRows(5), ColumnStat::kTrimmedMean, 1, out.data(),
                  &left_out);
  EXPECT_THAT(out, testing::ElementsAre(3.0f, 3.0f, 3.0f));
  EXPECT_THAT(left_out, testing::ElementsAre(2u, 1u, 0u, 0u, 1u));
  // The 3 values closest to the median 3 are {2, 3, 4}: the same rows out.
  ColumnStatistic(batch.data(), 3, AllRows(5), ColumnStat::kClosestToMedian, 3, out.data(),
                  &left_out);
  EXPECT_THAT(left_out, testing::ElementsAre(2u, 1u, 0u, 0u, 1u));
}

TEST(BatchOpsTest, ColumnStatisticSplitOverThreadsMatchesOneThread) {
  const size_t n = 7;
  const std::vector<float> batch = Batch(n, 4 * kSplitD, 11, false);
  std::vector<float> one(4 * kSplitD), two(4 * kSplitD);
  {
    ThreadsScope scope(1);
    ColumnStatistic(batch.data(), 4 * kSplitD, AllRows(n), ColumnStat::kTrimmedMean, 2,
                    one.data());
  }
  {
    ThreadsScope scope(2);
    ColumnStatistic(batch.data(), 4 * kSplitD, AllRows(n), ColumnStat::kTrimmedMean, 2,
                    two.data());
  }
  EXPECT_EQ(one, two);
}

TEST(BatchOpsTest, GramMatrixMatchesPlainSumsOnTwoThreads) {
  ThreadsScope scope(2);
  const size_t n = 6;
  const std::vector<float> batch = Batch(n, kSplitD, 5, false);
  const std::vector<double> k = GramMatrix(batch.data(), n, kSplitD);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      double expected = 0.0;
      for (size_t c = 0; c < kSplitD; ++c) {
        expected += static_cast<double>(batch[i * kSplitD + c]) * batch[j * kSplitD + c];
      }
      EXPECT_NEAR(k[i * n + j], expected, 1e-9 * std::max(1.0, std::fabs(expected)));
    }
  }
}

TEST(BatchOpsTest, DistancesToACenterAndNorms) {
  ThreadsScope scope(2);
  const size_t n = 3;
  const std::vector<float> batch = Batch(n, kSplitD, 6, false);
  std::vector<double> center(kSplitD);
  for (size_t c = 0; c < kSplitD; ++c) center[c] = 0.5 * std::sin(static_cast<double>(c));
  const std::vector<double> to_center = SquaredDistancesTo(batch.data(), n, kSplitD, center.data());
  const std::vector<double> norms = SquaredDistancesTo(batch.data(), n, kSplitD, nullptr);
  for (size_t i = 0; i < n; ++i) {
    double expected = 0.0, norm = 0.0;
    for (size_t c = 0; c < kSplitD; ++c) {
      const double x = batch[i * kSplitD + c];
      expected += (x - center[c]) * (x - center[c]);
      norm += x * x;
    }
    EXPECT_NEAR(to_center[i], expected, 1e-9 * expected);
    EXPECT_NEAR(norms[i], norm, 1e-9 * norm);
  }
}

TEST(BatchOpsTest, WeightedSumsAndUpdates) {
  ThreadsScope scope(2);
  const size_t n = 4;
  const std::vector<float> batch = Batch(n, kSplitD, 8, false);
  const std::vector<size_t> rows = {3, 1};
  const std::vector<double> coeffs = {0.25, -2.0};
  std::vector<float> out(kSplitD);
  WeightedSumOfRows(batch.data(), kSplitD, rows, coeffs, out.data());
  std::vector<double> z(kSplitD, 1.5);
  const std::vector<double> all = {1.0, 0.0, -0.5, 2.0};
  UpdateWithRows(batch.data(), n, kSplitD, all, 0.5, &z);
  for (size_t c = 0; c < kSplitD; ++c) {
    const double expected = 0.25 * batch[3 * kSplitD + c] - 2.0 * batch[1 * kSplitD + c];
    ASSERT_FLOAT_EQ(out[c], static_cast<float>(expected)) << c;
    const double updated = 0.75 + batch[c] - 0.5 * batch[2 * kSplitD + c] +
                           2.0 * batch[3 * kSplitD + c];
    ASSERT_NEAR(z[c], updated, 1e-12 * std::max(1.0, std::fabs(updated))) << c;
  }
}

TEST(BatchOpsTest, MixRowsInPlaceMatchesTheProduct) {
  ThreadsScope scope(2);
  const size_t n = 5, m = 3;
  const std::vector<float> input = Batch(n, kSplitD, 9, false);
  std::vector<float> rows = input;
  const std::vector<float> weights = {0.5f, 0.5f, 0, 0, 0,   // Mean of rows 0, 1.
                                      0, 0, 0, 0, 1,         // Row 4.
                                      0.2f, 0.2f, 0.2f, 0.2f, 0.2f};
  MixRowsInPlace(rows.data(), n, kSplitD, weights, m);
  for (size_t k = 0; k < m; ++k) {
    for (size_t c = 0; c < kSplitD; ++c) {
      double expected = 0.0;
      for (size_t j = 0; j < n; ++j) expected += weights[k * n + j] * input[j * kSplitD + c];
      ASSERT_NEAR(rows[k * kSplitD + c], expected, 1e-5 * std::max(1.0, std::fabs(expected)))
          << k << "," << c;
    }
  }
  // Rows beyond m are left alone.
  EXPECT_TRUE(std::equal(rows.begin() + 3 * kSplitD, rows.end(), input.begin() + 3 * kSplitD));
}

TEST(ParallelForTest, CoversTheRangeOnceWithAlignedBoundaries) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadsScope scope(threads);
    std::vector<int> hits(1000, 0);
    std::vector<std::pair<size_t, size_t>> ranges(static_cast<size_t>(threads));
    const size_t tasks = ParallelFor(1000, 10, 16, [&](size_t task, size_t begin, size_t end) {
      ranges[task] = {begin, end};
      for (size_t i = begin; i < end; ++i) ++hits[i];
    });
    EXPECT_EQ(tasks, static_cast<size_t>(threads));
    EXPECT_THAT(hits, testing::Each(1));
    for (size_t t = 1; t < tasks; ++t) EXPECT_EQ(ranges[t].first % 16, 0u);
  }
  // Too little work for a second thread: one task, inline.
  ThreadsScope scope(4);
  EXPECT_EQ(ParallelFor(15, 10, 1, [](size_t, size_t, size_t) {}), 1u);
}

}  // namespace
}  // namespace tally::aggregators
