// ExactSum: the one summing primitive of every mean path (synchronous rounds,
// asynchronous flushes, relays' batches). It holds, per coordinate j,
//
//   S[j] = sum_u  round(w_u * x_u[j] * 2^kExactFractionBits)
//
// where w_u is an integer weight (num_samples, or a fixed-point weight), x_u
// a float32 value and round() is round-half-to-even: each product is exact
// before its one rounding (in double for |w| < 2^29, in integers above). S
// is an integer in two's complement modulo 2^128, so:
//   - adding then subtracting the same update (weight -w) restores S bit for
//     bit, whatever happened in between: undoing a rejected upload is exact;
//   - the sum does not depend on the order of the additions, on how updates
//     are cut into chunks or on the number of threads: a round is
//     bit-reproducible;
//   - the result is the true sum as long as the true sum fits in 127 bits;
//     with |x| <= kMaxExactAbsValue (2^22) and weights up to kMaxExactWeight
//     (2^40) a product is below 2^102, and 2^24 updates of maximal weight and
//     value still fit.
// A masked modular sum (secure aggregation) is the same lane arithmetic with
// masks added modulo a power of two.
//
// Storage: a block of kExactBlockLanes coordinates keeps 64-bit lanes (8 bytes
// a coordinate) while a running bound on |S| in it stays below 2^62, so no
// 64-bit lane can overflow; the first addition that could cross it widens
// that block to 128 bits (8 more bytes a coordinate, until Clear). Typical
// updates (|w * x| well below 2^22) never widen; hostile ones at the limits
// widen the blocks they touch. Both forms hold the same integer.
//
// Precision (docs/aggregation.md): each product w * x is rounded once, to a
// multiple of 2^-40, so with integer weights (each >= 1) the weighted mean
// S / (2^40 * sum w) differs from the exact weighted mean of the float32
// inputs by at most 2^-41 before the final rounding to float32.
//
// Callers validate values first: x must be finite with |x| <= kMaxExactAbsValue
// (AllWithinBytes in core/vector_ops.h). Thread-compatible: concurrent Adds
// must touch disjoint blocks (aggregators/rules/striped_accumulator.h locks
// stripes of whole blocks for that).
#ifndef TALLY_CORE_EXACT_SUM_H_
#define TALLY_CORE_EXACT_SUM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"

namespace tally {

// Fixed-point scale of the values: q(x) = round(x * 2^40).
inline constexpr int kExactFractionBits = 40;
// Largest |x| whose q(x) fits in 63 bits with room to spare (2^62).
inline constexpr float kMaxExactAbsValue = 4194304.0f;  // 2^22
// Largest integer weight of one update.
inline constexpr uint64_t kMaxExactWeight = uint64_t{1} << 40;
// Fractional bits of the fixed-point weights of asynchronous flushes
// (QuantizeWeight): a coefficient w becomes round(w * 2^32).
inline constexpr int kExactWeightFractionBits = 32;
// Largest |w| QuantizeWeight accepts (so that |w * 2^32| < 2^52).
inline constexpr double kMaxExactFractionalWeight = 1048576.0;  // 2^20
// Coordinates per storage block (narrow or wide as a whole).
inline constexpr size_t kExactBlockLanes = 4096;

// One coordinate's sum as a 128-bit two's complement integer.
using ExactLane = unsigned __int128;

class ExactSum {
 public:
  ExactSum() = default;
  explicit ExactSum(size_t size) { Reset(size); }

  size_t size() const { return lo_.size(); }
  // Sets every lane to 0 (and the size to `size`).
  void Reset(size_t size);
  // Sets lanes [offset, offset + count) to 0; offset and offset + count must
  // be multiples of kExactBlockLanes or size().
  void Clear(uint64_t offset, size_t count);

  // S[offset + i] += round(weight * x[i] * 2^40) for i < count; x is `count` float32
  // values at `bytes` (little-endian, any alignment). A negative weight
  // subtracts. Requires offset + count <= size(), |weight| <= 2^62 and
  // validated x.
  void AddBytes(uint64_t offset, const char* bytes, size_t count, int64_t weight);
  void Add(uint64_t offset, const float* x, size_t count, int64_t weight);
  // S[offset + i] += values[i] for i < count: integers already in lane units
  // (2^-40), e.g. privacy noise on the grid (core/privacy/mechanism.h).
  // Requires offset + count <= size().
  void AddIntegers(uint64_t offset, const int64_t* values, size_t count);

  // out[i] = S[offset + i] * 2^-kExactFractionBits / divisor, rounded to float
  // (through double: S converted to the nearest double, one multiplication
  // by a power of two, one division, one conversion to float; the same bits
  // on every IEEE platform).
  void Extract(uint64_t offset, double divisor, absl::Span<float> out) const;

  ExactLane Lane(size_t j) const;
  std::vector<ExactLane> Lanes() const;
  // Blocks currently 128 bits wide (for tests and metrics).
  size_t wide_blocks() const;

 private:
  // Gives block b its high 64 bits (no-op if it has them).
  void WidenBlock(size_t b);
  template <typename Load>
  void AddBlocks(uint64_t offset, size_t count, int64_t weight, const Load& load);

  std::vector<uint64_t> lo_;  // Low 64 bits of every lane (all of it if narrow).
  // Per block: null while narrow, else the high 64 bits of its lanes.
  std::vector<std::unique_ptr<int64_t[]>> hi_;
  // Per block: an upper bound on |S| of its lanes since the last Clear (sum
  // of |w| * (max |q| + 1) over the additions; grows on subtractions too).
  std::vector<double> bound_;
};

// round(x * 2^40) and round(w * x * 2^40) for one value (the kernels'
// rounding, for tests and references).
int64_t QuantizeValue(float x);
__int128 QuantizeProduct(int64_t w, float x);
// round(w * 2^kExactWeightFractionBits) for an asynchronous coefficient with
// |w| <= kMaxExactFractionalWeight (checked by the caller).
int64_t QuantizeWeight(double w);

}  // namespace tally

#endif  // TALLY_CORE_EXACT_SUM_H_
