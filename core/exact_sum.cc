#include "core/exact_sum.h"

#include <cmath>
#include <cstring>

// Built with -fno-math-errno (CMakeLists.txt) so that llrint is one
// instruction (cvtsd2si / frintx + fcvtzs) rounding half to even in the
// default rounding mode.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TALLY_EXACT_OP __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TALLY_EXACT_OP
#endif

namespace tally {
namespace {

constexpr double kValueScale = 0x1p40;  // 2^kExactFractionBits
static_assert(kExactFractionBits == 40, "kValueScale must be 2^kExactFractionBits");

inline int64_t Quantize(float x) {
  // x * 2^40 is exact in double (a power-of-two scaling of a float), so the
  // only rounding is llrint's.
  return static_cast<int64_t>(std::llrint(static_cast<double>(x) * kValueScale));
}

// lanes[i] += weight * q(x[i]) modulo 2^128.
template <typename Load>
inline void AccumulateLanes(ExactLane* lanes, size_t count, int64_t weight, Load load) {
  const __int128 w = weight;
  for (size_t i = 0; i < count; ++i) {
    lanes[i] += static_cast<ExactLane>(w * Quantize(load(i)));
  }
}

TALLY_EXACT_OP void AddFloatBytes(ExactLane* lanes, const char* bytes, size_t count,
                                  int64_t weight) {
  AccumulateLanes(lanes, count, weight, [bytes](size_t i) {
    float v;
    std::memcpy(&v, bytes + 4 * i, 4);
    return v;
  });
}

TALLY_EXACT_OP void AddFloats(ExactLane* lanes, const float* x, size_t count, int64_t weight) {
  AccumulateLanes(lanes, count, weight, [x](size_t i) { return x[i]; });
}

}  // namespace

int64_t QuantizeValue(float x) { return Quantize(x); }

int64_t QuantizeWeight(double w) {
  return static_cast<int64_t>(std::llrint(w * 0x1p32));
}
static_assert(kExactWeightFractionBits == 32, "QuantizeWeight scales by 2^32");

void ExactSum::Reset(size_t size) {
  lanes_.resize(size);
  std::memset(static_cast<void*>(lanes_.data()), 0, size * sizeof(ExactLane));
}

void ExactSum::Clear(uint64_t offset, size_t count) {
  std::memset(static_cast<void*>(lanes_.data() + offset), 0, count * sizeof(ExactLane));
}

void ExactSum::AddBytes(uint64_t offset, const char* bytes, size_t count, int64_t weight) {
  AddFloatBytes(lanes_.data() + offset, bytes, count, weight);
}

void ExactSum::Add(uint64_t offset, const float* x, size_t count, int64_t weight) {
  AddFloats(lanes_.data() + offset, x, count, weight);
}

void ExactSum::Extract(uint64_t offset, double divisor, absl::Span<float> out) const {
  const ExactLane* lanes = lanes_.data() + offset;
  for (size_t i = 0; i < out.size(); ++i) {
    const double s = static_cast<double>(static_cast<__int128>(lanes[i]));
    out[i] = static_cast<float>(s * (1.0 / kValueScale) / divisor);
  }
}

}  // namespace tally
