// CounterRng: seeded random numbers addressed by position, for rules that
// need a random d-vector (or d x r matrix) at d = 1e6-1e7 without storing it:
// value k of a stream is a pure function of (seed, stream, k), so a vector is
// generated block by block, in any order, and regenerated when needed again
// (CAF's start vectors, the Flag Aggregator's random Y_raw;
// docs/algorithms.md#caf, docs/algorithms.md#flag-initial-subspace).
//
// The generator is SplitMix64 (Steele, Lea, Flood, OOPSLA 2014) evaluated at
// a counter; normals come from Box–Muller pairs. It is not numpy's or
// PyTorch's generator, so randomised rules cannot bit-match the Python
// references, only agree in distribution.
//
// Immutable after construction; thread-safe.
#ifndef TALLY_AGGREGATORS_RULES_COUNTER_RNG_H_
#define TALLY_AGGREGATORS_RULES_COUNTER_RNG_H_

#include <cstdint>

#include "absl/types/span.h"

namespace tally::aggregators {

class CounterRng {
 public:
  // Stream `stream` of the generator seeded with `seed`; different streams of
  // one seed are independent for all practical purposes.
  CounterRng(uint64_t seed, uint64_t stream);

  // 64 random bits at position `counter`.
  uint64_t Bits(uint64_t counter) const;
  // Uniform in [0, 1), 53 random bits, at position `counter`.
  double Uniform(uint64_t counter) const;

  // out[k] = lo + (hi − lo) · Uniform(first + k).
  void FillUniform(uint64_t first, double lo, double hi, absl::Span<double> out) const;
  // out[k] = the standard normal at position first + k of the stream's normal
  // sequence (positions 2m and 2m + 1 are one Box–Muller pair, made from
  // Uniform(2m) and Uniform(2m + 1)).
  void FillNormal(uint64_t first, absl::Span<double> out) const;

 private:
  uint64_t key_;
};

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_RULES_COUNTER_RNG_H_
