#include "core/vector_ops.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

// Memory-bound passes over whole models: built for AVX-512, AVX2 and
// baseline x86-64, chosen at load time (as aggregators/rules/kernels.cc).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TALLY_VECTOR_OP __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TALLY_VECTOR_OP
#endif

namespace tally {
namespace {

// |x| as ordered bits: for non-negative floats the bit patterns order like the
// values, and NaN patterns lie above +Inf.
inline uint32_t AbsBits(uint32_t bits) { return bits & 0x7fffffffu; }

inline uint32_t FloatBits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return bits;
}

}  // namespace

bool AllFinite(const float* x, size_t n) {
  return AllFiniteBytes(reinterpret_cast<const char*>(x), n);
}

bool AllFiniteBytes(const char* bytes, size_t n) {
  return AllWithinBytes(bytes, n, std::numeric_limits<float>::max());
}

TALLY_VECTOR_OP void Axpy(float a, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

TALLY_VECTOR_OP void AxpyBytes(float a, const char* x_bytes, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, x_bytes + 4 * i, 4);
    y[i] += a * v;
  }
}

bool CopyAllFiniteBytes(const char* bytes, float* out, size_t n) {
  return CopyAllWithinBytes(bytes, out, n, std::numeric_limits<float>::max());
}

TALLY_VECTOR_OP float MaxAbsBytes(const char* bytes, size_t n) {
  uint32_t max_bits = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, bytes + 4 * i, 4);
    max_bits = std::max(max_bits, AbsBits(bits));
  }
  float m;
  std::memcpy(&m, &max_bits, 4);
  return m;
}

bool AllWithinBytes(const char* bytes, size_t n, float max_abs) {
  return MaxAbsBytes(bytes, n) <= max_abs;  // False for NaN.
}

TALLY_VECTOR_OP bool CopyAllWithinBytes(const char* bytes, float* out, size_t n, float max_abs) {
  const uint32_t limit = AbsBits(FloatBits(max_abs));
  constexpr size_t kBlock = 1024;
  uint32_t bad = 0;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = start + kBlock < n ? start + kBlock : n;
    for (size_t i = start; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, bytes + 4 * i, 4);
      bad |= static_cast<uint32_t>(AbsBits(bits) > limit);
      std::memcpy(out + i, &bits, 4);
    }
    if (bad) return false;
  }
  return true;
}

size_t FirstOutsideBytes(const char* bytes, size_t n, float max_abs) {
  const uint32_t limit = AbsBits(FloatBits(max_abs));
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, bytes + 4 * i, 4);
    if (AbsBits(bits) > limit) return i;
  }
  return n;
}

}  // namespace tally
