#include "aggregators/rules/kernels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

// One definition per instruction set, chosen by the dynamic loader (ifunc).
#define TALLY_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))

namespace tally::aggregators {
namespace {

// GCC vector types: 64 bytes, one AVX-512 register (two AVX2 ones, four SSE).
typedef double V8d __attribute__((vector_size(64)));
typedef float V8f __attribute__((vector_size(32)));
typedef float V16f __attribute__((vector_size(64)));

constexpr size_t kGramTile = 4;     // Rows per side of a register tile.
constexpr size_t kGramWidth = 512;  // Columns converted to float64 at a time.

double HorizontalSum(V8d v) {
  double s = 0.0;
  for (int l = 0; l < 8; ++l) s += v[l];
  return s;
}

// Mean of the k values closest to the median of values[0..m), closeness by
// (|v − med|, position); the exact definition, for columns the sorted path
// cannot decide (a tie between values on both sides of the median).
double ClosestToMedianExact(const float* values, size_t m, size_t k) {
  std::vector<float> sorted(values, values + m);
  std::sort(sorted.begin(), sorted.end());
  const double med = m % 2 == 1 ? sorted[m / 2]
                                : 0.5 * (static_cast<double>(sorted[m / 2 - 1]) + sorted[m / 2]);
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), size_t{0});
  auto gap = [&](size_t p) { return std::fabs(static_cast<double>(values[p]) - med); };
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return gap(a) < gap(b) || (gap(a) == gap(b) && a < b);
  });
  double sum = 0.0;
  for (size_t p = 0; p < k; ++p) sum += values[order[p]];
  return k == 0 ? 0.0 : sum / static_cast<double>(k);
}

}  // namespace

TALLY_KERNEL
void AccumulateGram(const float* batch, size_t n, size_t d, size_t begin, size_t end, double* k) {
  const size_t padded = (n + kGramTile - 1) / kGramTile * kGramTile;
  // Rows of the current column block in float64, zero-padded to whole tiles
  // and to the full width, so the tile loop has no remainder.
  std::vector<double> block(padded * kGramWidth, 0.0);
  for (size_t b0 = begin; b0 < end; b0 += kGramWidth) {
    const size_t width = std::min(kGramWidth, end - b0);
    for (size_t i = 0; i < n; ++i) {
      const float* src = batch + i * d + b0;
      double* dst = block.data() + i * kGramWidth;
      for (size_t c = 0; c < width; ++c) dst[c] = src[c];
      std::fill(dst + width, dst + kGramWidth, 0.0);
    }
    for (size_t ti = 0; ti < padded; ti += kGramTile) {
      const double* x0 = block.data() + ti * kGramWidth;
      const double* x1 = x0 + kGramWidth;
      const double* x2 = x1 + kGramWidth;
      const double* x3 = x2 + kGramWidth;
      for (size_t tj = ti; tj < padded; tj += kGramTile) {
        const double* y0 = block.data() + tj * kGramWidth;
        const double* y1 = y0 + kGramWidth;
        const double* y2 = y1 + kGramWidth;
        const double* y3 = y2 + kGramWidth;
        V8d acc[kGramTile][kGramTile] = {};
        for (size_t c = 0; c < kGramWidth; c += 8) {
          V8d p[kGramTile], q[kGramTile];
          std::memcpy(&p[0], x0 + c, sizeof(V8d));
          std::memcpy(&p[1], x1 + c, sizeof(V8d));
          std::memcpy(&p[2], x2 + c, sizeof(V8d));
          std::memcpy(&p[3], x3 + c, sizeof(V8d));
          std::memcpy(&q[0], y0 + c, sizeof(V8d));
          std::memcpy(&q[1], y1 + c, sizeof(V8d));
          std::memcpy(&q[2], y2 + c, sizeof(V8d));
          std::memcpy(&q[3], y3 + c, sizeof(V8d));
#pragma GCC unroll 4
          for (size_t a = 0; a < kGramTile; ++a) {
#pragma GCC unroll 4
            for (size_t b = 0; b < kGramTile; ++b) acc[a][b] += p[a] * q[b];
          }
        }
        for (size_t a = 0; a < kGramTile; ++a) {
          for (size_t b = 0; b < kGramTile; ++b) {
            const size_t i = ti + a;
            const size_t j = tj + b;
            if (i < n && j < n && i <= j) k[i * n + j] += HorizontalSum(acc[a][b]);
          }
        }
      }
    }
  }
}

TALLY_KERNEL
void AccumulateSquaredDistances(const float* batch, size_t n, size_t d, const double* center,
                                size_t begin, size_t end, double* sums) {
  // Column blocks outside, rows inside: the center's block stays in L1
  // instead of being streamed from memory once per row.
  constexpr size_t kBlock = 2048;
  for (size_t b0 = begin; b0 < end; b0 += kBlock) {
    const size_t b1 = std::min(end, b0 + kBlock);
    for (size_t i = 0; i < n; ++i) {
      const float* x = batch + i * d;
      V8d acc = {};
      size_t c = b0;
      for (; c + 8 <= b1; c += 8) {
        V8f xf;
        V8d z = {};
        std::memcpy(&xf, x + c, sizeof(V8f));
        if (center != nullptr) std::memcpy(&z, center + c, sizeof(V8d));
        const V8d diff = __builtin_convertvector(xf, V8d) - z;
        acc += diff * diff;
      }
      double sum = HorizontalSum(acc);
      for (; c < b1; ++c) {
        const double diff = static_cast<double>(x[c]) - (center != nullptr ? center[c] : 0.0);
        sum += diff * diff;
      }
      sums[i] += sum;
    }
  }
}

TALLY_KERNEL
void CombineRows(const float* const* rows, const double* coeffs, size_t m, const double* base,
                 double offset, size_t begin, size_t end, double* out) {
  constexpr size_t kBlock = 2048;  // The block of `out` stays in L1 across the rows.
  for (size_t b0 = begin; b0 < end; b0 += kBlock) {
    const size_t b1 = std::min(end, b0 + kBlock);
    if (offset == 0.0) {
      std::fill(out + b0, out + b1, 0.0);
    } else {
      for (size_t c = b0; c < b1; ++c) out[c] = offset * base[c];
    }
    for (size_t p = 0; p < m; ++p) {
      const float* x = rows[p];
      const double w = coeffs[p];
      if (w == 0.0) continue;
      for (size_t c = b0; c < b1; ++c) out[c] += w * x[c];
    }
  }
}

TALLY_KERNEL
void CombineRowsToFloat(const float* const* rows, const double* coeffs, size_t m, size_t begin,
                        size_t end, float* out) {
  constexpr size_t kBlock = 2048;  // float64 accumulators that stay in L1.
  double acc[kBlock];
  for (size_t b0 = begin; b0 < end; b0 += kBlock) {
    const size_t width = std::min(kBlock, end - b0);
    std::fill(acc, acc + width, 0.0);
    for (size_t p = 0; p < m; ++p) {
      const float* x = rows[p] + b0;
      const double w = coeffs[p];
      if (w == 0.0) continue;
      for (size_t c = 0; c < width; ++c) acc[c] += w * x[c];
    }
    for (size_t c = 0; c < width; ++c) out[b0 + c] = static_cast<float>(acc[c]);
  }
}

TALLY_KERNEL
void MixRows(const float* batch, size_t n, size_t d, const float* weights, size_t m, size_t begin,
             size_t end, float* out, size_t out_stride) {
  // Register tile: 4 outputs x 64 columns (16 accumulators); every input row
  // is loaded once per tile and used by 4 outputs.
  constexpr size_t kOutputs = 4;
  constexpr size_t kVectors = 4;
  constexpr size_t kWidth = kVectors * 16;
  size_t c = begin;
  for (; c + kWidth <= end; c += kWidth) {
    for (size_t k0 = 0; k0 < m; k0 += kOutputs) {
      const size_t outputs = std::min(kOutputs, m - k0);
      V16f acc[kOutputs][kVectors] = {};
      for (size_t j = 0; j < n; ++j) {
        V16f x[kVectors];
        std::memcpy(x, batch + j * d + c, sizeof(x));
#pragma GCC unroll 4
        for (size_t a = 0; a < kOutputs; ++a) {
          const float w = a < outputs ? weights[(k0 + a) * n + j] : 0.0f;
#pragma GCC unroll 4
          for (size_t v = 0; v < kVectors; ++v) acc[a][v] += w * x[v];
        }
      }
      for (size_t a = 0; a < outputs; ++a) {
        std::memcpy(out + (k0 + a) * out_stride + (c - begin), acc[a], sizeof(acc[a]));
      }
    }
  }
  for (; c < end; ++c) {
    for (size_t k = 0; k < m; ++k) {
      float sum = 0.0f;
      for (size_t j = 0; j < n; ++j) sum += weights[k * n + j] * batch[j * d + c];
      out[k * out_stride + (c - begin)] = sum;
    }
  }
}

std::vector<uint32_t> SortingNetwork(size_t m) {
  size_t wires = 1;
  while (wires < m) wires <<= 1;
  std::vector<uint32_t> pairs;
  for (size_t p = 1; p < wires; p <<= 1) {
    for (size_t k = p; k >= 1; k >>= 1) {
      for (size_t j = k % p; j + k < wires; j += 2 * k) {
        for (size_t i = 0; i < std::min(k, wires - j - k); ++i) {
          const size_t lo = i + j;
          const size_t hi = i + j + k;
          if (lo / (2 * p) == hi / (2 * p) && hi < m) {
            pairs.push_back(static_cast<uint32_t>(lo));
            pairs.push_back(static_cast<uint32_t>(hi));
          }
        }
      }
    }
  }
  return pairs;
}

std::vector<uint8_t> PruneMask(const std::vector<uint32_t>& network,
                               const std::vector<int>& class_of) {
  std::vector<bool> touched(class_of.size(), false);
  std::vector<uint8_t> keep(network.size() / 2, 1);
  for (size_t q = network.size() / 2; q-- > 0;) {
    const uint32_t a = network[2 * q];
    const uint32_t b = network[2 * q + 1];
    if (!touched[a] && !touched[b] && class_of[a] == class_of[b]) {
      keep[q] = 0;
      continue;
    }
    touched[a] = touched[b] = true;
  }
  return keep;
}

std::vector<uint32_t> PruneNetwork(const std::vector<uint32_t>& network,
                                   const std::vector<int>& class_of) {
  const std::vector<uint8_t> keep = PruneMask(network, class_of);
  std::vector<uint32_t> kept;
  for (size_t q = 0; q < keep.size(); ++q) {
    if (!keep[q]) continue;
    kept.push_back(network[2 * q]);
    kept.push_back(network[2 * q + 1]);
  }
  return kept;
}

namespace {

// SortingNetwork(W) for a power of two W, at compile time: the same loops.
template <size_t W>
struct Batcher {
  template <typename Fn>
  static constexpr void ForEachPair(Fn fn) {
    for (size_t p = 1; p < W; p <<= 1) {
      for (size_t k = p; k >= 1; k >>= 1) {
        for (size_t j = k % p; j + k < W; j += 2 * k) {
          for (size_t i = 0; i < std::min(k, W - j - k); ++i) {
            if ((i + j) / (2 * p) == (i + j + k) / (2 * p)) fn(i + j, i + j + k);
          }
        }
      }
    }
  }
  static constexpr size_t Count() {
    size_t count = 0;
    ForEachPair([&count](size_t, size_t) { ++count; });
    return count;
  }
  static constexpr size_t kCount = Count();
  static constexpr std::array<uint8_t, 2 * kCount> Pairs() {
    std::array<uint8_t, 2 * kCount> pairs{};
    size_t q = 0;
    ForEachPair([&pairs, &q](size_t lo, size_t hi) {
      pairs[q++] = static_cast<uint8_t>(lo);
      pairs[q++] = static_cast<uint8_t>(hi);
    });
    return pairs;
  }
  static constexpr std::array<uint8_t, 2 * kCount> kPairs = Pairs();
};

constexpr size_t kRegisterLanes = 16;  // One V16f per wire.

__attribute__((always_inline)) inline void CompareIf(V16f& a, V16f& b, uint8_t on) {
  if (on) {
    const auto less = a < b;
    const V16f min = less ? a : b;
    const V16f max = less ? b : a;
    a = min;
    b = max;
  }
}

// Wires held in a local array indexed by constants only, so the compiler
// keeps them in registers (spilling what does not fit) instead of loading and
// storing both wires of every comparator.
template <size_t W, bool kAll, size_t... Q>
__attribute__((always_inline)) inline void ApplyBatcher(V16f* w, const uint8_t* on,
                                                        std::index_sequence<Q...>) {
  (CompareIf(w[Batcher<W>::kPairs[2 * Q]], w[Batcher<W>::kPairs[2 * Q + 1]], kAll || on[Q]),
   ...);
}

template <size_t W, bool kAll, size_t... P>
__attribute__((always_inline)) inline void SortLanesImpl(const float* const* src, float* dst,
                                                         size_t groups, const uint8_t* on,
                                                         std::index_sequence<P...>) {
  for (size_t g = 0; g < groups; ++g) {
    V16f w[W];
    (std::memcpy(&w[P], src[P] + g * kRegisterLanes, sizeof(V16f)), ...);
    ApplyBatcher<W, kAll>(w, on, std::make_index_sequence<Batcher<W>::kCount>());
    (std::memcpy(dst + P * groups * kRegisterLanes + g * kRegisterLanes, &w[P], sizeof(V16f)),
     ...);
  }
}

// dst[p * 16·groups + l] for p < W, l < 16·groups = src[p][l] after
// Batcher<W>'s comparators whose flag in `on` is set (SortLanesAll: every
// comparator, no flags read, no branches). One function per W, each cloned
// per instruction set (outside the anonymous namespace: target_clones needs
// external linkage for its ifunc).
}  // namespace
#define TALLY_SORT_LANES(W)                                                            \
  TALLY_KERNEL void SortLanes##W(const float* const* src, float* dst, size_t groups,   \
                                 const uint8_t* on) {                                  \
    SortLanesImpl<W, false>(src, dst, groups, on, std::make_index_sequence<W>());      \
  }                                                                                    \
  TALLY_KERNEL void SortLanesAll##W(const float* const* src, float* dst, size_t groups, \
                                    const uint8_t* on) {                               \
    SortLanesImpl<W, true>(src, dst, groups, on, std::make_index_sequence<W>());       \
  }
TALLY_SORT_LANES(2)
TALLY_SORT_LANES(4)
TALLY_SORT_LANES(8)
TALLY_SORT_LANES(16)
TALLY_SORT_LANES(32)
#undef TALLY_SORT_LANES
namespace {

using SortLanesFn = void (*)(const float* const*, float*, size_t, const uint8_t*);

// How SortedColumnStat runs `network` (SortingNetwork(m), comparators kept
// by `keep`): SortingNetwork(m) is Batcher's network for W = m rounded up to
// a power of two, minus the comparators that touch a wire >= m. Its first
// phases sort blocks of B = min(W, 32) wires independently; those run on
// registers (`sort_block` per block of wires, flags `on[b]` for block b's
// comparators in Batcher<B>'s order), the rest, `merge`, one comparator at a
// time in memory. The same comparators in an order that only moves
// comparators of different blocks past each other, so the same result.
struct NetworkPlan {
  SortLanesFn sort_block = nullptr;  // Null: every comparator in memory.
  size_t block = 0;                  // B.
  std::vector<std::vector<uint8_t>> on;
  std::vector<SortLanesFn> sort;     // Per block: sort_block or its all-on variant.
  std::vector<uint32_t> merge;
};

template <size_t B>
void PlanBlocks(SortLanesFn fn, SortLanesFn all_on, size_t m,
                const std::vector<uint32_t>& network, const std::vector<uint8_t>& keep,
                NetworkPlan* plan) {
  size_t wires = B;
  while (wires < m) wires <<= 1;
  const std::vector<uint32_t> full = SortingNetwork(wires);
  const size_t blocks = wires / B;
  const size_t local = blocks * Batcher<B>::kCount;  // The block-sorting phases.
  plan->on.assign((m + B - 1) / B, std::vector<uint8_t>(Batcher<B>::kCount, 0));
  std::vector<size_t> seen(blocks, 0);
  size_t q = 0;
  for (size_t r = 0; r < full.size() / 2; ++r) {
    const uint32_t lo = full[2 * r];
    const uint32_t hi = full[2 * r + 1];
    const size_t b = lo / B;
    if (r < local) {
      const size_t t = seen[b]++;
      if (hi / B != b || Batcher<B>::kPairs[2 * t] != lo % B ||
          Batcher<B>::kPairs[2 * t + 1] != hi % B) {
        return;  // Not the expected structure: leave sort_block null.
      }
    }
    if (hi >= m) continue;
    if (2 * q + 1 >= network.size() || network[2 * q] != lo || network[2 * q + 1] != hi) return;
    const bool kept = keep.empty() || keep[q] != 0;
    ++q;
    if (r < local) {
      plan->on[b][seen[b] - 1] = kept ? 1 : 0;
    } else if (kept) {
      plan->merge.push_back(lo);
      plan->merge.push_back(hi);
    }
  }
  if (2 * q != network.size()) return;
  plan->block = B;
  plan->sort_block = fn;
  for (const std::vector<uint8_t>& on : plan->on) {
    const bool all = std::all_of(on.begin(), on.end(), [](uint8_t flag) { return flag != 0; });
    plan->sort.push_back(all ? all_on : fn);
  }
}

NetworkPlan PlanNetwork(size_t m, const std::vector<uint32_t>& network,
                        const std::vector<uint8_t>& keep) {
  NetworkPlan plan;
  if (m == 2) PlanBlocks<2>(&SortLanes2, &SortLanesAll2, m, network, keep, &plan);
  if (m > 2 && m <= 4) PlanBlocks<4>(&SortLanes4, &SortLanesAll4, m, network, keep, &plan);
  if (m > 4 && m <= 8) PlanBlocks<8>(&SortLanes8, &SortLanesAll8, m, network, keep, &plan);
  if (m > 8 && m <= 16) PlanBlocks<16>(&SortLanes16, &SortLanesAll16, m, network, keep, &plan);
  if (m > 16) PlanBlocks<32>(&SortLanes32, &SortLanesAll32, m, network, keep, &plan);
  if (plan.sort_block == nullptr) {
    plan.on.clear();
    plan.merge.clear();
    for (size_t q = 0; q < network.size() / 2; ++q) {
      if (!keep.empty() && !keep[q]) continue;
      plan.merge.push_back(network[2 * q]);
      plan.merge.push_back(network[2 * q + 1]);
    }
  }
  return plan;
}

}  // namespace

TALLY_KERNEL
void SortedColumnStat(const float* const* rows, size_t m, const std::vector<uint32_t>& network,
                      const std::vector<uint8_t>& keep, ColumnStat stat, size_t param,
                      size_t begin, size_t end, float* out, uint64_t* left_out) {
  // 64 columns at a time: four independent 16-lane vectors per comparator
  // keep the min/max units busy across the network's dependency chains.
  constexpr size_t kVector = 16;
  constexpr size_t kGroups = 4;
  constexpr size_t kLanes = kVector * kGroups;
  const NetworkPlan plan = PlanNetwork(m, network, keep);
  // With blocks on registers, rows are padded to whole blocks (zeros whose
  // comparators are off).
  const size_t wires = plan.sort_block != nullptr ? plan.on.size() * plan.block : m;
  // Plain floats plus memcpy: std::allocator does not honour the vector
  // type's 64-byte alignment here.
  std::vector<float> storage(wires * kLanes);
  float* const base = storage.data();
  std::vector<float> lane_values(m);
  const uint32_t* pairs = plan.merge.data();
  const size_t comparators = plan.merge.size() / 2;
  // The network reads 64 columns of every row straight from the batch (four
  // cache lines per row), while software prefetches fetch the lines
  // kPrefetch columns ahead: the hardware prefetchers do not follow 50 or
  // 100 interleaved streams. The last, partial group is copied into `tail`,
  // zero-padded; rows past m (padding of the last register block) read zeros.
  constexpr size_t kPrefetch = 512;
  constexpr size_t kFlushEvery = 16;  // Steps between count flushes (see below).
  std::vector<float> tail(m * kLanes, 0.0f);
  const std::vector<float> zeros(kLanes, 0.0f);
  std::vector<const float*> src(wires, zeros.data());
  // The kept range of each lane [low, high] and, per row and lane, how many
  // columns left that row out (only when left_out is wanted).
  float low_kept[kLanes];
  float high_kept[kLanes];
  // Counted in float lanes (compare + masked add; exact: flushed to the
  // integer totals every kFlushEvery groups of 64 columns).
  std::vector<float> lane_counts(left_out != nullptr ? m * kLanes : 0, 0.0f);
  auto flush_counts = [&] {
    for (size_t p = 0; p < m; ++p) {
      for (size_t l = 0; l < kLanes; ++l) {
        left_out[p] += static_cast<uint64_t>(lane_counts[p * kLanes + l]);
        lane_counts[p * kLanes + l] = 0.0f;
      }
    }
  };
  for (size_t c = begin, step = 1; c < end; c += kLanes, ++step) {
    const size_t lanes = std::min(kLanes, end - c);
    if (lanes == kLanes) {
      for (size_t p = 0; p < m; ++p) src[p] = rows[p] + c;
    } else {
      for (size_t p = 0; p < m; ++p) {
        std::memcpy(&tail[p * kLanes], rows[p] + c, lanes * sizeof(float));
        src[p] = &tail[p * kLanes];
      }
    }
    if (c + kPrefetch + kLanes <= end) {
      for (size_t p = 0; p < m; ++p) {
        for (size_t line = 0; line < kLanes; line += 16) {
          __builtin_prefetch(rows[p] + c + kPrefetch + line);
        }
      }
    }
    if (plan.sort_block != nullptr) {
      for (size_t b = 0; b < plan.on.size(); ++b) {
        plan.sort[b](&src[b * plan.block], base + b * plan.block * kLanes, kGroups,
                     plan.on[b].data());
      }
    } else {  // A fixed size: four vector moves, not rep movs.
      for (size_t p = 0; p < m; ++p) std::memcpy(base + p * kLanes, src[p], kLanes * sizeof(float));
    }
    for (size_t q = 0; q < comparators; ++q) {
      float* lo = base + pairs[2 * q] * kLanes;
      float* hi = base + pairs[2 * q + 1] * kLanes;
#pragma GCC unroll 4
      for (size_t g = 0; g < kGroups; ++g) {
        V16f a, b;
        std::memcpy(&a, lo + g * kVector, sizeof(V16f));
        std::memcpy(&b, hi + g * kVector, sizeof(V16f));
        const auto less = a < b;
        const V16f min = less ? a : b;
        const V16f max = less ? b : a;
        std::memcpy(lo + g * kVector, &min, sizeof(V16f));
        std::memcpy(hi + g * kVector, &max, sizeof(V16f));
      }
    }
    switch (stat) {
      case ColumnStat::kMedian: {
        const float* upper = base + (m / 2) * kLanes;
        const float* lower = base + ((m - 1) / 2) * kLanes;
        for (size_t l = 0; l < lanes; ++l) {
          out[c + l] = static_cast<float>(0.5 * (static_cast<double>(lower[l]) + upper[l]));
        }
        break;
      }
      case ColumnStat::kTrimmedMean: {
        V8d sums[2 * kGroups] = {};
        for (size_t p = param; p < m - param; ++p) {
          V8f halves[2 * kGroups];
          std::memcpy(halves, base + p * kLanes, sizeof(halves));
#pragma GCC unroll 8
          for (size_t h = 0; h < 2 * kGroups; ++h) sums[h] += __builtin_convertvector(halves[h], V8d);
        }
        const double kept = static_cast<double>(m - 2 * param);
        for (size_t l = 0; l < lanes; ++l) out[c + l] = static_cast<float>(sums[l / 8][l % 8] / kept);
        std::memcpy(low_kept, base + param * kLanes, sizeof(low_kept));
        std::memcpy(high_kept, base + (m - param - 1) * kLanes, sizeof(high_kept));
        break;
      }
      case ColumnStat::kClosestToMedian: {
        // The k = param closest values are the window [s*, s* + k) of the
        // sorted column, s* = #{s < m − k : med − v[s] > v[s + k] − med} (the
        // predicate holds on a prefix; gaps computed as the definition does).
        // Lanes where some gaps are equal for different values go to the
        // exact definition (row positions break such ties).
        const size_t k = param;
        for (size_t h = 0; h < kLanes / 8; ++h) {
          // Row p's 8 values of this half, in float64 (by pointer: a vector
          // return would change ABI between the clones).
          auto half = [&](size_t p, V8d* v) {
            V8f f;
            std::memcpy(&f, base + p * kLanes + h * 8, sizeof(V8f));
            *v = __builtin_convertvector(f, V8d);
          };
          V8d lower_mid, upper_mid;
          half((m - 1) / 2, &lower_mid);
          half(m / 2, &upper_mid);
          const V8d med = 0.5 * (lower_mid + upper_mid);
          V8d start = {};
          V8d tie = {};
          for (size_t lo = 0; lo + k < m; ++lo) {
            V8d low, high;
            half(lo, &low);
            half(lo + k, &high);
            const V8d low_gap = med - low;
            const V8d high_gap = high - med;
            start += low_gap > high_gap ? V8d{} + 1.0 : V8d{};
            tie += (low_gap == high_gap) & (low != high) ? V8d{} + 1.0 : V8d{};
          }
          V8d sum = {};
          V8d first = {};
          V8d last = {};
          const V8d stop = start + static_cast<double>(k);
          for (size_t p = 0; p < m; ++p) {
            const double position = static_cast<double>(p);
            V8d v;
            half(p, &v);
            sum += (position >= start) & (position < stop) ? v : V8d{};
            first += position == start ? v : V8d{};
            last += position == stop - 1.0 ? v : V8d{};
          }
          const V8f first_f = __builtin_convertvector(first, V8f);
          const V8f last_f = __builtin_convertvector(last, V8f);
          std::memcpy(low_kept + h * 8, &first_f, sizeof(V8f));
          std::memcpy(high_kept + h * 8, &last_f, sizeof(V8f));
          for (size_t l = 0; l < 8 && h * 8 + l < lanes; ++l) {
            const size_t column = c + h * 8 + l;
            double result = k == 0 ? 0.0 : sum[l] / static_cast<double>(k);
            if (tie[l] != 0.0) {
              for (size_t p = 0; p < m; ++p) lane_values[p] = rows[p][column];
              result = ClosestToMedianExact(lane_values.data(), m, k);
            }
            out[column] = static_cast<float>(result);
          }
        }
        break;
      }
    }
    if (left_out == nullptr || stat == ColumnStat::kMedian) continue;
    // A row is left out of a column when its value lies outside the kept
    // range (rows equal to a bound count as kept). Lanes past the end keep
    // everything.
    for (size_t l = lanes; l < kLanes; ++l) {
      low_kept[l] = -std::numeric_limits<float>::infinity();
      high_kept[l] = std::numeric_limits<float>::infinity();
    }
    const V16f one = V16f{} + 1.0f;
    for (size_t p = 0; p < m; ++p) {
#pragma GCC unroll 4
      for (size_t g = 0; g < kGroups; ++g) {
        V16f x, low, high, count;
        std::memcpy(&x, src[p] + g * kVector, sizeof(V16f));
        std::memcpy(&low, low_kept + g * kVector, sizeof(V16f));
        std::memcpy(&high, high_kept + g * kVector, sizeof(V16f));
        std::memcpy(&count, &lane_counts[p * kLanes + g * kVector], sizeof(V16f));
        count += x < low ? one : V16f{};
        count += x > high ? one : V16f{};
        std::memcpy(&lane_counts[p * kLanes + g * kVector], &count, sizeof(V16f));
      }
    }
    if (step % kFlushEvery == 0 || c + kLanes >= end) flush_counts();
  }
}

}  // namespace tally::aggregators
