// Internal to compress/: the per-codec operations behind codec.h's
// dispatcher, and the small helpers they share. Not for other parts.
#ifndef TALLY_COMPRESS_CODEC_INTERNAL_H_
#define TALLY_COMPRESS_CODEC_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compress/codec.h"
#include "compress/half.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the codecs copy little-endian wire values with memcpy");

namespace tally::compress::internal {

// Where decoded values go: data[j] += weight * v (accumulate) or
// data[j] = v, for j < d.
struct DecodeTarget {
  float* data;
  size_t d;
  float weight;
  bool accumulate;
};

// One codec. The dispatcher has already checked ValidateSpec(spec, d), that
// the input is finite (encode), the weight, and removed any zstd frame.
struct CodecOps {
  // Codec-specific spec checks (d is already in 1..kMaxDim).
  absl::Status (*validate)(const CodecSpec& spec, size_t d);
  size_t (*max_bytes)(const CodecSpec& spec, size_t d);
  absl::Status (*encode)(const CodecSpec& spec, absl::Span<const float> x, std::string* out);
  // Must leave target.data unchanged when it returns an error.
  absl::Status (*decode)(const CodecSpec& spec, absl::string_view payload,
                         const DecodeTarget& target);
};

extern const CodecOps kFloat32Ops;
extern const CodecOps kFloat16Ops;
extern const CodecOps kBfloat16Ops;
extern const CodecOps kInt8Ops;
extern const CodecOps kQsgdOps;
extern const CodecOps kSignOps;
extern const CodecOps kTopKOps;
extern const CodecOps kRandKOps;
extern const CodecOps kSpsaOps;

// qsgd's encoder with given uniforms (uniforms[j] for entry j, in [0, 1))
// instead of RngUniform(spec.seed, j): the test seam for the worked example
// of docs/algorithms.md#qsgd. Requires ValidateSpec and finite x.
absl::Status EncodeQsgdWithUniforms(const CodecSpec& spec, absl::Span<const float> x,
                                    absl::Span<const float> uniforms, std::string* out);

// *out = one zstd frame (declaring its content size) holding `inner`.
absl::Status ZstdCompress(int level, absl::string_view inner, std::string* out);

// --- shared helpers ----------------------------------------------------------

inline uint32_t LoadU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t LoadU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline float LoadF32(const char* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void StoreF32(char* p, float v) { std::memcpy(p, &v, 4); }
inline void StoreU64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }

// Blocks of `block_size` entries over d (block_size 0 = one block of d).
inline size_t NumBlocks(uint32_t block_size, size_t d) {
  return block_size == 0 ? 1 : (d + block_size - 1) / block_size;
}
inline size_t BlockLength(uint32_t block_size, size_t d) {
  return block_size == 0 ? d : block_size;
}

// Bytes of an unsigned LEB128 varint for v (1..10).
inline size_t VarintLength(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Reads a canonical unsigned LEB128 varint at data[*pos..size): at most 10
// bytes, the 10th at most 1 (no overflow), and no final 0x00 byte after the
// first (no overlong forms). Advances *pos. On failure returns false and
// sets *why.
bool ReadVarint(const char* data, size_t size, size_t* pos, uint64_t* value, const char** why);

// "<codec> payload: <message>" as INVALID_ARGUMENT.
template <typename... Args>
absl::Status PayloadError(absl::string_view codec, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(codec, " payload: ", args...));
}

// topk and randk: k <= d, and a ratio in (0, 1] when k is 0.
absl::Status ValidateSparseK(const CodecSpec& spec, size_t d);
// topk and randk: bytes per value (float16 or float32).
inline size_t SparseValueBytes(const CodecSpec& spec) { return spec.half_values ? 2 : 4; }
// topk and randk: one value (float16 if `half`, else float32) at p.
inline float LoadSparseValue(const char* p, bool half) {
  if (!half) return LoadF32(p);
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfBitsToFloat(h);
}

// INVALID_ARGUMENT unless payload.size() == expected.
absl::Status CheckLength(absl::string_view codec, absl::string_view payload, size_t expected,
                         size_t d);

}  // namespace tally::compress::internal

#endif  // TALLY_COMPRESS_CODEC_INTERNAL_H_
