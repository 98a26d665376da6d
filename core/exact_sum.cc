#include "core/exact_sum.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/vector_ops.h"

// Built with -fno-math-errno and -ffp-contract=off (CMakeLists.txt): the
// rounding is nearbyint's (half to even in the default rounding mode), the
// same in every clone and on every IEEE platform.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TALLY_EXACT_OP __attribute__((target_clones("arch=skylake-avx512", "avx2", "default")))
#else
#define TALLY_EXACT_OP
#endif

namespace tally {
namespace {

constexpr double kValueScale = 0x1p40;  // 2^kExactFractionBits
static_assert(kExactFractionBits == 40, "kValueScale must be 2^kExactFractionBits");
// A narrow block stays narrow while the bound on |S| stays below this.
constexpr double kNarrowLimit = 0x1p62;

// Weights below this make w * x * 2^40 exact in double (24 + 29 bits).
constexpr int64_t kDoubleWeightLimit = int64_t{1} << 29;

// round(w * x * 2^40), |w| < 2^29: the product of a float and such an
// integer times a power of two is exact in double, so the only rounding is
// nearbyint's.
inline int64_t ProductSmall(double scaled_weight, float x) {
  return static_cast<int64_t>(std::nearbyint(static_cast<double>(x) * scaled_weight));
}

// round(w * x * 2^40) for any weight, in integers: x = +-m * 2^e with an
// integer mantissa m < 2^24, so w * x * 2^40 = +-(w * m) * 2^(e + 40),
// shifted with round-half-to-even. |w| <= 2^62 and |x| <= 2^22 keep it in
// 127 bits.
inline __int128 ProductExact(int64_t w, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const int biased = static_cast<int>((bits >> 23) & 0xff);
  uint64_t m = bits & 0x7fffffu;
  if (biased != 0) m |= 0x800000u;
  const int shift = (biased == 0 ? 1 : biased) - 127 - 23 + kExactFractionBits;
  const bool negative = ((bits >> 31) != 0) != (w < 0);
  const ExactLane magnitude = static_cast<ExactLane>(w < 0 ? -static_cast<uint64_t>(w)
                                                           : static_cast<uint64_t>(w)) * m;
  ExactLane r;
  if (shift >= 0) {
    r = magnitude << shift;
  } else if (-shift >= 127) {
    r = 0;  // Below half of 2^-40 for any weight: rounds to 0.
  } else {
    const int s = -shift;
    r = magnitude >> s;
    const ExactLane rest = magnitude & ((ExactLane{1} << s) - 1);
    const ExactLane half = ExactLane{1} << (s - 1);
    if (rest > half || (rest == half && (r & 1))) ++r;
  }
  const __int128 v = static_cast<__int128>(r);
  return negative ? -v : v;
}

// The 128-bit lane of a wide block's high and low words.
inline ExactLane JoinLane(int64_t hi, uint64_t lo) {
  return (static_cast<ExactLane>(static_cast<uint64_t>(hi)) << 64) | lo;
}

inline float LoadFloat(const char* bytes, size_t i) {
  float v;
  std::memcpy(&v, bytes + 4 * i, 4);
  return v;
}

// lo[i] += round(w * x[i] * 2^40) where every product and the running sums
// are known to stay below 2^62 (the block's bound), |w| < 2^29: one double
// product, one rounding and one 64-bit add a value (vectorised).
TALLY_EXACT_OP void AddNarrowSmall(uint64_t* lo, const char* bytes, size_t n, int64_t w) {
  const double scaled = static_cast<double>(w) * kValueScale;
  for (size_t i = 0; i < n; ++i) {
    lo[i] += static_cast<uint64_t>(ProductSmall(scaled, LoadFloat(bytes, i)));
  }
}

// The same for any weight (the products in integers).
void AddNarrowExact(uint64_t* lo, const char* bytes, size_t n, int64_t w) {
  for (size_t i = 0; i < n; ++i) {
    lo[i] += static_cast<uint64_t>(ProductExact(w, LoadFloat(bytes, i)));
  }
}

// (hi, lo)[i] += round(w * x[i] * 2^40) in 128 bits, modulo 2^128. `small`:
// |w| < 2^29 and every product below 2^62 (the double path is exact and
// fits 64 bits).
void AddWide(uint64_t* lo, int64_t* hi, const char* bytes, size_t n, int64_t w, bool small) {
  const double scaled = static_cast<double>(w) * kValueScale;
  for (size_t i = 0; i < n; ++i) {
    const float x = LoadFloat(bytes, i);
    const __int128 p = small ? static_cast<__int128>(ProductSmall(scaled, x)) : ProductExact(w, x);
    const ExactLane s = JoinLane(hi[i], lo[i]) + static_cast<ExactLane>(p);
    lo[i] = static_cast<uint64_t>(s);
    hi[i] = static_cast<int64_t>(static_cast<uint64_t>(s >> 64));
  }
}

TALLY_EXACT_OP void ExtractNarrow(const uint64_t* lo, size_t n, double divisor, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const double s = static_cast<double>(static_cast<int64_t>(lo[i]));
    out[i] = static_cast<float>(s * (1.0 / kValueScale) / divisor);
  }
}

void ExtractWide(const uint64_t* lo, const int64_t* hi, size_t n, double divisor, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const __int128 lane = static_cast<__int128>(JoinLane(hi[i], lo[i]));
    // Correctly rounded either way, so narrow and wide give the same double.
    const double s = hi[i] == (static_cast<int64_t>(lo[i]) >> 63)
                         ? static_cast<double>(static_cast<int64_t>(lo[i]))
                         : static_cast<double>(lane);
    out[i] = static_cast<float>(s * (1.0 / kValueScale) / divisor);
  }
}

}  // namespace

int64_t QuantizeValue(float x) { return ProductSmall(kValueScale, x); }

__int128 QuantizeProduct(int64_t w, float x) { return ProductExact(w, x); }

int64_t QuantizeWeight(double w) {
  return static_cast<int64_t>(std::nearbyint(w * 0x1p32));
}
static_assert(kExactWeightFractionBits == 32, "QuantizeWeight scales by 2^32");

void ExactSum::Reset(size_t size) {
  lo_.assign(size, 0);
  const size_t blocks = (size + kExactBlockLanes - 1) / kExactBlockLanes;
  hi_.clear();
  hi_.resize(blocks);
  bound_.assign(blocks, 0.0);
}

void ExactSum::Clear(uint64_t offset, size_t count) {
  const uint64_t end = offset + count;
  std::memset(static_cast<void*>(lo_.data() + offset), 0, count * sizeof(uint64_t));
  for (size_t b = offset / kExactBlockLanes; b * kExactBlockLanes < end; ++b) {
    const uint64_t begin = b * kExactBlockLanes;
    const uint64_t stop = std::min<uint64_t>(lo_.size(), begin + kExactBlockLanes);
    if (offset <= begin && end >= stop) {
      hi_[b].reset();
      bound_[b] = 0;
    } else if (hi_[b] != nullptr) {
      // Part of a block: its lanes are zero, its bound stays (still an upper
      // bound).
      const uint64_t from = std::max(offset, begin), to = std::min(end, stop);
      std::memset(hi_[b].get() + (from - begin), 0, (to - from) * sizeof(int64_t));
    }
  }
}

void ExactSum::AddBytes(uint64_t offset, const char* bytes, size_t count, int64_t weight) {
  size_t done = 0;
  const double abs_weight = std::fabs(static_cast<double>(weight));
  while (done < count) {
    const uint64_t pos = offset + done;
    const size_t b = pos / kExactBlockLanes;
    const size_t n = std::min<size_t>(count - done, (b + 1) * kExactBlockLanes - pos);
    const char* x = bytes + 4 * done;
    // An upper bound on every |round(w * x * 2^40)| of the piece, and on
    // what it adds to |S|: |w| * max |x| * 2^40 + 1 (the +1 covers the
    // rounding), with a margin for the double arithmetic.
    const double increment =
        (abs_weight * static_cast<double>(MaxAbsBytes(x, n)) * kValueScale + 1.0) * (1 + 0x1p-40);
    if (hi_[b] == nullptr && bound_[b] + increment < kNarrowLimit) {
      if (weight > -kDoubleWeightLimit && weight < kDoubleWeightLimit) {
        AddNarrowSmall(lo_.data() + pos, x, n, weight);
      } else {
        AddNarrowExact(lo_.data() + pos, x, n, weight);
      }
    } else {
      const uint64_t begin = b * kExactBlockLanes;
      WidenBlock(b);
      const bool small = weight > -kDoubleWeightLimit && weight < kDoubleWeightLimit &&
                         increment < kNarrowLimit;
      AddWide(lo_.data() + pos, hi_[b].get() + (pos - begin), x, n, weight, small);
    }
    bound_[b] += increment;
    done += n;
  }
}

void ExactSum::WidenBlock(size_t b) {
  if (hi_[b] != nullptr) return;
  // Every lane is still its true value as a signed 64-bit number.
  const uint64_t begin = b * kExactBlockLanes;
  const size_t len = std::min<size_t>(lo_.size(), begin + kExactBlockLanes) - begin;
  hi_[b].reset(new int64_t[len]);
  for (size_t j = 0; j < len; ++j) hi_[b][j] = static_cast<int64_t>(lo_[begin + j]) >> 63;
}

void ExactSum::AddIntegers(uint64_t offset, const int64_t* values, size_t count) {
  size_t done = 0;
  while (done < count) {
    const uint64_t pos = offset + done;
    const size_t b = pos / kExactBlockLanes;
    const size_t n = std::min<size_t>(count - done, (b + 1) * kExactBlockLanes - pos);
    uint64_t max_abs = 0;
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = values[done + i];
      max_abs = std::max<uint64_t>(max_abs, v < 0 ? 0 - static_cast<uint64_t>(v) : v);
    }
    const double increment = (static_cast<double>(max_abs) + 1.0) * (1 + 0x1p-40);
    if (hi_[b] == nullptr && bound_[b] + increment < kNarrowLimit) {
      for (size_t i = 0; i < n; ++i) lo_[pos + i] += static_cast<uint64_t>(values[done + i]);
    } else {
      WidenBlock(b);
      int64_t* hi = hi_[b].get() + (pos - b * kExactBlockLanes);
      for (size_t i = 0; i < n; ++i) {
        const ExactLane s = JoinLane(hi[i], lo_[pos + i]) +
                            static_cast<ExactLane>(static_cast<__int128>(values[done + i]));
        lo_[pos + i] = static_cast<uint64_t>(s);
        hi[i] = static_cast<int64_t>(static_cast<uint64_t>(s >> 64));
      }
    }
    bound_[b] += increment;
    done += n;
  }
}

void ExactSum::Add(uint64_t offset, const float* x, size_t count, int64_t weight) {
  AddBytes(offset, reinterpret_cast<const char*>(x), count, weight);
}

void ExactSum::Extract(uint64_t offset, double divisor, absl::Span<float> out) const {
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t pos = offset + done;
    const size_t b = pos / kExactBlockLanes;
    const size_t n = std::min<size_t>(out.size() - done, (b + 1) * kExactBlockLanes - pos);
    if (hi_[b] == nullptr) {
      ExtractNarrow(lo_.data() + pos, n, divisor, out.data() + done);
    } else {
      ExtractWide(lo_.data() + pos, hi_[b].get() + (pos - b * kExactBlockLanes), n, divisor,
                  out.data() + done);
    }
    done += n;
  }
}

ExactLane ExactSum::Lane(size_t j) const {
  const size_t b = j / kExactBlockLanes;
  const int64_t hi = hi_[b] != nullptr ? hi_[b][j - b * kExactBlockLanes]
                                       : static_cast<int64_t>(lo_[j]) >> 63;
  return JoinLane(hi, lo_[j]);
}

std::vector<ExactLane> ExactSum::Lanes() const {
  std::vector<ExactLane> lanes(size());
  for (size_t j = 0; j < lanes.size(); ++j) lanes[j] = Lane(j);
  return lanes;
}

size_t ExactSum::wide_blocks() const {
  size_t wide = 0;
  for (const auto& hi : hi_) wide += hi != nullptr;
  return wide;
}

}  // namespace tally
