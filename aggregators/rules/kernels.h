// The inner loops of the rules, over one column range [begin, end) of a batch
// (n rows of d floats, row-major): callers split columns over threads
// (parallel.h) and combine per-task partial results. Each kernel is compiled
// for AVX-512, AVX2 and baseline x86-64 and picks one at load time (GCC
// target_clones), so one binary runs everywhere and uses the wide units where
// they exist. (Clones are named by ISA feature: an "arch=haswell" clone is
// chosen only when the CPU model is recognised, which virtual CPUs often
// are not.)
#ifndef TALLY_AGGREGATORS_RULES_KERNELS_H_
#define TALLY_AGGREGATORS_RULES_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tally::aggregators {

// k[i * n + j] += Σ_{c ∈ [begin, end)} x_i[c] · x_j[c] for i <= j (the upper
// triangle only), products and sums in float64.
void AccumulateGram(const float* batch, size_t n, size_t d, size_t begin, size_t end, double* k);

// sums[i] += Σ_{c ∈ [begin, end)} (x_i[c] − center[c])², in float64; a null
// center is the origin (squared norms).
void AccumulateSquaredDistances(const float* batch, size_t n, size_t d, const double* center,
                                size_t begin, size_t end, double* sums);

// out[c] = offset · base[c] + Σ_p coeffs[p] · rows[p][c] for c ∈ [begin, end),
// accumulated in float64 (base may be null when offset is 0).
void CombineRows(const float* const* rows, const double* coeffs, size_t m, const double* base,
                 double offset, size_t begin, size_t end, double* out);
// The same, rounded to float.
void CombineRowsToFloat(const float* const* rows, const double* coeffs, size_t m, size_t begin,
                        size_t end, float* out);

// out[k * out_stride + (c − begin)] = Σ_j weights[k * n + j] · x_j[c] for
// k < m, c ∈ [begin, end): m mixtures of the n rows, in float32 (as the
// byzfl torch path). `out` must not overlap the batch.
void MixRows(const float* batch, size_t n, size_t d, const float* weights, size_t m, size_t begin,
             size_t end, float* out, size_t out_stride);

// A sorting network for m values: comparator pairs (lo, hi), lo < hi, applied
// in order (min to lo, max to hi). Batcher's odd–even merge sort for the next
// power of two, pruned to the first m wires: sound because every comparator
// sends its max to the higher wire, so wires >= m only ever hold the +inf
// padding.
std::vector<uint32_t> SortingNetwork(size_t m);

// Which comparators of `network` to keep once those that only order values
// within one class of final positions (class_of[p] for output wire p) are
// dropped: scanning backwards, a comparator whose two wires see no later
// comparator and end in the same class only swaps two values of that class,
// so dropping it keeps every class's multiset. E.g. a trimmed mean only needs
// {lowest f}, {middle}, {highest f}. One flag per comparator (1 = keep).
std::vector<uint8_t> PruneMask(const std::vector<uint32_t>& network,
                               const std::vector<int>& class_of);
// `network` without the comparators PruneMask drops.
std::vector<uint32_t> PruneNetwork(const std::vector<uint32_t>& network,
                                   const std::vector<int>& class_of);

// Per-column statistics of m rows computed by sorting each column.
enum class ColumnStat {
  kMedian,             // Even m: mean of the two middle values (np.median).
  kTrimmedMean,        // Drop `param` smallest and largest, mean of the rest.
  kClosestToMedian,    // Mean of the `param` values closest to the median,
                       // ties by (|v − med|, row position) (Meamed, Bulyan).
};

// out[c] for c ∈ [begin, end) = stat of {rows[p][c] : p < m}. `network` is
// SortingNetwork(m) and `keep` one flag per comparator (PruneMask; empty =
// keep all): the comparators applied, in this order, to every column. Sums in
// float64, in the order of the network's output wires. If `left_out` is not
// null (m counters), left_out[p] += the number of columns whose statistic
// left row p out: its value outside the range of the kept values (trimmed
// mean, closest-to-median; a value equal to a bound counts as kept). Median
// counts nothing. The network's first phases, which sort blocks of up to 32
// wires independently, run on registers (code generated per block size); the
// result is the same as applying the comparators one by one in memory.
void SortedColumnStat(const float* const* rows, size_t m, const std::vector<uint32_t>& network,
                      const std::vector<uint8_t>& keep, ColumnStat stat, size_t param,
                      size_t begin, size_t end, float* out, uint64_t* left_out);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_KERNELS_H_
