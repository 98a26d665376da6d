#include "compress/kernels.h"

#include <cmath>
#include <cstring>

#include "compress/codec_rng.h"
#include "compress/half.h"

// One definition per instruction set, chosen by the dynamic loader (ifunc),
// as core/vector_ops.cc, but by feature ("avx512f", "avx2") rather than
// "arch=haswell": an arch= clone is picked only when __builtin_cpu_is
// recognises the CPU model, which a VM reporting a generic "Intel Xeon
// Processor" defeats (the default clone then runs). Not under clang (the
// fuzz build). The whole of compress/ is built with -ffp-contract=off: GCC
// contracts a * b + c into an FMA in C++ even with -std=c++17 once FMA is
// available (-mavx512f implies it), which would make DecodeAccumulate differ
// from acc + weight * Decode and encoders differ between builds and SDKs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TALLY_COMPRESS_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TALLY_COMPRESS_KERNEL
#endif

namespace tally::compress::internal {
namespace {

inline uint16_t Load16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline void Store16(char* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Codes of W bits (W divides 8): 8 / W per byte, none straddling bytes.
template <uint32_t W>
inline void PackByteAligned(const uint16_t* codes, size_t n, uint8_t* out) {
  constexpr uint32_t kPerByte = 8 / W;
  const size_t full = n / kPerByte;
  for (size_t b = 0; b < full; ++b) {
    uint32_t byte = 0;
    for (uint32_t k = 0; k < kPerByte; ++k) {
      byte |= static_cast<uint32_t>(codes[b * kPerByte + k]) << (k * W);
    }
    out[b] = static_cast<uint8_t>(byte);
  }
  if (full * kPerByte < n) {
    uint32_t byte = 0;
    for (size_t i = full * kPerByte; i < n; ++i) {
      byte |= static_cast<uint32_t>(codes[i]) << ((i - full * kPerByte) * W);
    }
    out[full] = static_cast<uint8_t>(byte);
  }
}

template <uint32_t W>
inline void UnpackByteAligned(const uint8_t* bytes, size_t n, uint16_t* codes) {
  constexpr uint32_t kPerByte = 8 / W;
  constexpr uint32_t kMask = (1u << W) - 1;
  const size_t full = n / kPerByte;
  for (size_t b = 0; b < full; ++b) {
    const uint32_t byte = bytes[b];
    for (uint32_t k = 0; k < kPerByte; ++k) {
      codes[b * kPerByte + k] = static_cast<uint16_t>((byte >> (k * W)) & kMask);
    }
  }
  for (size_t i = full * kPerByte; i < n; ++i) {
    codes[i] = static_cast<uint16_t>((bytes[full] >> ((i - full * kPerByte) * W)) & kMask);
  }
}

}  // namespace

TALLY_COMPRESS_KERNEL void DecodeFloat32Bytes(const char* bytes, size_t n, float weight,
                                              bool accumulate, float* out) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, bytes + 4 * i, 4);
      out[i] += weight * v;
    }
  } else {
    std::memcpy(out, bytes, 4 * n);
  }
}

TALLY_COMPRESS_KERNEL bool HalfBytesFinite(const char* bytes, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= (Load16(bytes + 2 * i) & 0x7c00u) == 0x7c00u;
  return bad == 0;
}

TALLY_COMPRESS_KERNEL bool Bfloat16BytesFinite(const char* bytes, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= (Load16(bytes + 2 * i) & 0x7f80u) == 0x7f80u;
  return bad == 0;
}

TALLY_COMPRESS_KERNEL void DecodeHalfBytes(const char* bytes, size_t n, float weight,
                                           bool accumulate, float* out) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) out[i] += weight * HalfBitsToFloat(Load16(bytes + 2 * i));
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = HalfBitsToFloat(Load16(bytes + 2 * i));
  }
}

TALLY_COMPRESS_KERNEL void DecodeBfloat16Bytes(const char* bytes, size_t n, float weight,
                                               bool accumulate, float* out) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) out[i] += weight * Bfloat16BitsToFloat(Load16(bytes + 2 * i));
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = Bfloat16BitsToFloat(Load16(bytes + 2 * i));
  }
}

TALLY_COMPRESS_KERNEL size_t EncodeHalfBytes(const float* x, size_t n, char* out) {
  constexpr size_t kBlock = 1024;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = start + kBlock < n ? start + kBlock : n;
    uint32_t bad = 0;
    for (size_t i = start; i < end; ++i) {
      const uint16_t h = FloatToHalfBits(x[i]);
      bad |= (h & 0x7c00u) == 0x7c00u;
      Store16(out + 2 * i, h);
    }
    if (bad != 0) {
      for (size_t i = start; i < end; ++i) {
        if (!HalfBitsFinite(FloatToHalfBits(x[i]))) return i;
      }
    }
  }
  return n;
}

TALLY_COMPRESS_KERNEL size_t EncodeBfloat16Bytes(const float* x, size_t n, char* out) {
  constexpr size_t kBlock = 1024;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = start + kBlock < n ? start + kBlock : n;
    uint32_t bad = 0;
    for (size_t i = start; i < end; ++i) {
      const uint16_t b = FloatToBfloat16Bits(x[i]);
      bad |= (b & 0x7f80u) == 0x7f80u;
      Store16(out + 2 * i, b);
    }
    if (bad != 0) {
      for (size_t i = start; i < end; ++i) {
        if (!Bfloat16BitsFinite(FloatToBfloat16Bits(x[i]))) return i;
      }
    }
  }
  return n;
}

TALLY_COMPRESS_KERNEL bool Int8BytesValid(const char* q, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= static_cast<uint8_t>(q[i]) == 0x80u;
  return bad == 0;
}

TALLY_COMPRESS_KERNEL void DecodeInt8(const char* q, size_t n, float scale, float weight,
                                      bool accumulate, float* out) {
  const int8_t* v = reinterpret_cast<const int8_t*>(q);
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) out[i] += weight * (scale * static_cast<float>(v[i]));
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = scale * static_cast<float>(v[i]);
  }
}

TALLY_COMPRESS_KERNEL void EncodeInt8(const float* x, size_t n, float scale, char* q) {
  // |x / scale| stays below 2^22, where adding and subtracting 1.5 · 2^23
  // rounds to the nearest integer, ties to even (the FPU's mode).
  constexpr float kRound = 0x1.8p23f;
  for (size_t i = 0; i < n; ++i) {
    float r = (x[i] / scale + kRound) - kRound;
    r = r > 127.0f ? 127.0f : r;
    r = r < -127.0f ? -127.0f : r;
    q[i] = static_cast<char>(static_cast<int>(r));
  }
}

TALLY_COMPRESS_KERNEL float MaxAbs(const float* x, size_t n) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t a;
    std::memcpy(&a, x + i, 4);
    a &= 0x7fffffffu;  // For finite floats, the bit order is the value order.
    m = a > m ? a : m;
  }
  return BitsFloat(m);
}

// The RNG loops hash every entry; SplitMix64's 64-bit multiplies need
// AVX-512DQ (vpmullq) to vectorise well, which no single target_clones
// feature name gives, so they dispatch by hand.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TALLY_HASH_KERNEL(name, params, args)                                                 \
  __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static void name##Dq params { \
    name##Body args;                                                                          \
  }                                                                                           \
  __attribute__((target("avx2"))) static void name##Avx2 params { name##Body args; }          \
  static void name##Generic params { name##Body args; }                                       \
  void name params {                                                                          \
    static const auto impl = __builtin_cpu_supports("avx512dq") ? name##Dq                    \
                             : __builtin_cpu_supports("avx2")   ? name##Avx2                  \
                                                                : name##Generic;                \
    impl args;                                                                                \
  }
#else
#define TALLY_HASH_KERNEL(name, params, args) \
  void name params { name##Body args; }
#endif

namespace {

__attribute__((always_inline)) inline void FillUniformsBody(uint64_t seed, uint64_t first, size_t n,
                                                            float* u) {
  for (size_t i = 0; i < n; ++i) u[i] = RngUniform(seed, first + i);
}

__attribute__((always_inline)) inline void RandkMaskBody(uint64_t seed, uint64_t first, size_t n,
                                                         uint64_t threshold, uint8_t* mask) {
  for (size_t i = 0; i < n; ++i) mask[i] = RngBits(seed, first + i) < threshold ? 1 : 0;
}

}  // namespace

TALLY_HASH_KERNEL(FillUniforms, (uint64_t seed, uint64_t first, size_t n, float* u),
                  (seed, first, n, u))
TALLY_HASH_KERNEL(RandkMask,
                  (uint64_t seed, uint64_t first, size_t n, uint64_t threshold, uint8_t* mask),
                  (seed, first, n, threshold, mask))

TALLY_COMPRESS_KERNEL void QsgdCodes(const float* x, const float* u, size_t n, double factor,
                                     uint32_t s, uint16_t* codes) {
  const double top = static_cast<double>(s);
  for (size_t i = 0; i < n; ++i) {
    double r = std::fabs(static_cast<double>(x[i])) * factor;
    r = r < top ? r : top;  // Clamped, level s: r − floor(r) = 0 never rounds up.
    const double floor = std::floor(r);
    const uint32_t level =
        static_cast<uint32_t>(floor) + (static_cast<double>(u[i]) < r - floor ? 1u : 0u);
    const uint32_t negative = x[i] < 0.0f && level > 0 ? 1u : 0u;
    codes[i] = static_cast<uint16_t>((level << 1) | negative);
  }
}

// Widths dividing 8 (qsgd s = 1, 4..7, 64..127) and 16 (s >= 128) have
// byte-aligned codes and straight loops; the others go through 128-bit
// groups of 8 codes.
TALLY_COMPRESS_KERNEL void PackCodes(const uint16_t* codes, size_t n, uint32_t width, char* out) {
  uint8_t* o = reinterpret_cast<uint8_t*>(out);
  if (width == 16) {
    std::memcpy(out, codes, 2 * n);
    return;
  }
  if (width == 8) return PackByteAligned<8>(codes, n, o);
  if (width == 4) return PackByteAligned<4>(codes, n, o);
  if (width == 2) return PackByteAligned<2>(codes, n, o);
  size_t i = 0;
  for (; i + 8 <= n; i += 8, out += width) {
    unsigned __int128 group = 0;
    for (uint32_t k = 0; k < 8; ++k)
      group |= static_cast<unsigned __int128>(codes[i + k]) << (k * width);
    std::memcpy(out, &group, width);
  }
  if (i < n) {
    unsigned __int128 group = 0;
    for (uint32_t k = 0; i + k < n; ++k)
      group |= static_cast<unsigned __int128>(codes[i + k]) << (k * width);
    std::memcpy(out, &group, ((n - i) * width + 7) / 8);
  }
}

TALLY_COMPRESS_KERNEL void UnpackCodes(const char* in, size_t n, uint32_t width, uint16_t* codes) {
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(in);
  const uint32_t mask = (1u << width) - 1;
  if (width == 16) {
    std::memcpy(codes, in, 2 * n);
    return;
  }
  if (width == 8) return UnpackByteAligned<8>(bytes, n, codes);
  if (width == 4) return UnpackByteAligned<4>(bytes, n, codes);
  if (width == 2) return UnpackByteAligned<2>(bytes, n, codes);
  size_t i = 0;
  for (; i + 8 <= n; i += 8, in += width) {
    unsigned __int128 group = 0;
    std::memcpy(&group, in, width);
    for (uint32_t k = 0; k < 8; ++k)
      codes[i + k] = static_cast<uint16_t>((group >> (k * width)) & mask);
  }
  if (i < n) {
    unsigned __int128 group = 0;
    std::memcpy(&group, in, ((n - i) * width + 7) / 8);
    for (uint32_t k = 0; i + k < n; ++k)
      codes[i + k] = static_cast<uint16_t>((group >> (k * width)) & mask);
  }
}

TALLY_COMPRESS_KERNEL bool QsgdCodesValid(const uint16_t* codes, size_t n, uint32_t s) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    bad |= static_cast<uint32_t>((codes[i] >> 1) > s) | (codes[i] == 1);
  return bad == 0;
}

TALLY_COMPRESS_KERNEL void DecodeQsgdCodes(const uint16_t* codes, size_t n, float scale,
                                           float weight, bool accumulate, float* out) {
  // Setting the sign bit negates (the magnitude is never NaN).
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) {
      const float magnitude = scale * static_cast<float>(codes[i] >> 1);
      out[i] += weight * BitsFloat(FloatBits(magnitude) | (static_cast<uint32_t>(codes[i]) << 31));
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const float magnitude = scale * static_cast<float>(codes[i] >> 1);
      out[i] = BitsFloat(FloatBits(magnitude) | (static_cast<uint32_t>(codes[i]) << 31));
    }
  }
}

TALLY_COMPRESS_KERNEL void EncodeSignBits(const float* x, size_t n, uint8_t* bits) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint32_t word = 0;
    for (uint32_t k = 0; k < 32; ++k) word |= static_cast<uint32_t>(x[i + k] >= 0.0f) << k;
    std::memcpy(bits + i / 8, &word, 4);
  }
  for (; i < n; ++i) bits[i >> 3] |= static_cast<uint8_t>((x[i] >= 0.0f ? 1u : 0u) << (i & 7));
}

TALLY_COMPRESS_KERNEL void DecodeSignBits(const uint8_t* bits, size_t first, size_t n, float scale,
                                          float weight, bool accumulate, float* out) {
  const uint32_t scale_bits = FloatBits(scale);
  // A clear bit sets the sign bit.
  auto value = [&](size_t j) {
    return BitsFloat(scale_bits | ((~static_cast<uint32_t>(bits[j >> 3]) >> (j & 7)) << 31));
  };
  size_t i = 0;
  for (; i < n && (first + i) % 32 != 0; ++i) {
    out[i] = accumulate ? out[i] + weight * value(first + i) : value(first + i);
  }
  for (; i + 32 <= n; i += 32) {
    uint32_t word;
    std::memcpy(&word, bits + (first + i) / 8, 4);
    word = ~word;
    float* o = out + i;
    if (accumulate) {
      for (uint32_t k = 0; k < 32; ++k)
        o[k] += weight * BitsFloat(scale_bits | ((word >> k) << 31));
    } else {
      for (uint32_t k = 0; k < 32; ++k) o[k] = BitsFloat(scale_bits | ((word >> k) << 31));
    }
  }
  for (; i < n; ++i) {
    out[i] = accumulate ? out[i] + weight * value(first + i) : value(first + i);
  }
}

TALLY_COMPRESS_KERNEL void AddRademacher(uint64_t seed, uint64_t first_word, size_t words, float s,
                                         float* tmp) {
  const uint32_t s_bits = FloatBits(s);
  for (size_t w = 0; w < words; ++w) {
    const uint64_t h = RngBits(seed, first_word + w);
    const uint32_t lo = static_cast<uint32_t>(h);
    const uint32_t hi = static_cast<uint32_t>(h >> 32);
    float* t = tmp + 64 * w;
    // Bit b of the word flips the sign of entry b.
    for (uint32_t b = 0; b < 32; ++b) t[b] += BitsFloat(s_bits ^ ((lo >> b) << 31));
    for (uint32_t b = 0; b < 32; ++b) t[32 + b] += BitsFloat(s_bits ^ ((hi >> b) << 31));
  }
}

TALLY_COMPRESS_KERNEL void StoreOrAccumulate(const float* tmp, size_t n, float weight,
                                             bool accumulate, float* out) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) out[i] += weight * tmp[i];
  } else {
    std::memcpy(out, tmp, n * sizeof(float));
  }
}

}  // namespace tally::compress::internal
