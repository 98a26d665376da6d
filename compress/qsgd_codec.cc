// qsgd (docs/algorithms.md#qsgd, Alistarh et al. 2017), s = spec.levels, buckets
// of spec.block_size entries (0 = one bucket).
//
// Encoder, for bucket v with norm = float32(sqrt(Σ double(v_j)²)) (summed in
// index order) and entry j (its index in the whole vector):
//   f = double(s) / double(norm);  r = min(double(s), double(|v_j|) · f);
//   l = floor(r);  level = l + (double(RngUniform(seed, j)) < r − l ? 1 : 0),
// neg = (v_j < 0 and level > 0); norm = 0 gives level 0 everywhere.
// Decoder: x̂_j = ±(norm / float32(s)) · float32(level), float32 arithmetic.
//
// Payload: the nb bucket norms (float32), then one bit stream of d codes of
// w = 1 + ceil(log2(s + 1)) bits, code_j = (level_j << 1) | neg_j, written
// least significant bit first from bit j·w (stream bit p = bit p mod 8 of
// byte p / 8), zero-padded to a whole byte: 4·nb + ceil(d·w / 8) bytes.
// The decoder checks the length, every norm (finite, >= 0, norm / s · s
// finite, sign bit clear), every code (level <= s, no sign on level 0) and
// the padding, then writes: validate-then-write (unpacking the codes twice,
// through a fixed 4 KiB buffer).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "compress/codec_internal.h"
#include "compress/codec_rng.h"
#include "compress/kernels.h"

namespace tally::compress::internal {
namespace {

constexpr uint32_t kMaxLevels = 32767;

uint32_t LevelBits(uint32_t s) {  // ceil(log2(s + 1)) = bit width of s.
  uint32_t bits = 0;
  while ((s >> bits) != 0) ++bits;
  return bits;
}

absl::Status ValidateQsgd(const CodecSpec& spec, size_t) {
  if (spec.levels < 1 || spec.levels > kMaxLevels) {
    return absl::InvalidArgumentError(
        absl::StrCat("qsgd levels = ", spec.levels, " is outside 1..", kMaxLevels));
  }
  return absl::OkStatus();
}

size_t QsgdBytes(const CodecSpec& spec, size_t d) {
  const uint64_t width = 1 + LevelBits(spec.levels);
  return 4 * NumBlocks(spec.block_size, d) + (d * width + 7) / 8;
}

// Entries are processed in chunks of kChunk (a multiple of 8, so that each
// chunk's codes start on a byte boundary: 8 codes are exactly `width` bytes).
constexpr size_t kChunk = 2048;

// `uniforms(begin, n, u)` fills u[0..n) with the uniforms of entries
// begin..begin+n.
template <typename Uniforms>
absl::Status EncodeWith(const CodecSpec& spec, absl::Span<const float> x, Uniforms uniforms,
                        std::string* out) {
  const size_t d = x.size();
  const uint32_t s = spec.levels;
  const uint32_t width = 1 + LevelBits(s);
  const size_t blocks = NumBlocks(spec.block_size, d);
  const size_t length = BlockLength(spec.block_size, d);
  out->assign(QsgdBytes(spec, d), '\0');
  std::vector<double> factors(blocks);
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * length;
    const size_t end = std::min(d, begin + length);
    double sum = 0.0;
    for (size_t j = begin; j < end; ++j) sum += static_cast<double>(x[j]) * x[j];
    const float norm = static_cast<float>(std::sqrt(sum));
    if (!std::isfinite(norm / static_cast<float>(s) * static_cast<float>(s))) {
      out->clear();
      return absl::InvalidArgumentError(
          absl::StrCat("qsgd cannot encode bucket ", b, ": its norm overflows float32"));
    }
    StoreF32(out->data() + 4 * b, norm);
    factors[b] = norm > 0.0f ? static_cast<double>(s) / norm : 0.0;
  }
  char* packed = out->data() + 4 * blocks;
  float u[kChunk];
  uint16_t codes[kChunk];
  for (size_t c = 0; c < d; c += kChunk) {
    const size_t n = std::min(kChunk, d - c);
    uniforms(c, n, u);
    // The buckets overlapping this chunk.
    for (size_t j = c; j < c + n;) {
      const size_t b = j / length;
      const size_t stop = std::min(c + n, (b + 1) * length);
      QsgdCodes(x.data() + j, u + (j - c), stop - j, factors[b], s, codes + (j - c));
      j = stop;
    }
    PackCodes(codes, n, width, packed + c / 8 * width);
  }
  return absl::OkStatus();
}

absl::Status EncodeQsgd(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  const uint64_t seed = spec.seed;
  return EncodeWith(
      spec, x, [seed](size_t begin, size_t n, float* u) { FillUniforms(seed, begin, n, u); }, out);
}

absl::Status DecodeQsgd(const CodecSpec& spec, absl::string_view payload, const DecodeTarget& t) {
  const size_t d = t.d;
  const uint32_t s = spec.levels;
  const uint32_t width = 1 + LevelBits(s);
  const size_t blocks = NumBlocks(spec.block_size, d);
  const size_t length = BlockLength(spec.block_size, d);
  const absl::Status size = CheckLength("qsgd", payload, QsgdBytes(spec, d), d);
  if (!size.ok()) return size;
  const float levels = static_cast<float>(s);
  for (size_t b = 0; b < blocks; ++b) {
    const float norm = LoadF32(payload.data() + 4 * b);
    if (std::signbit(norm) || !std::isfinite(norm / levels * levels)) {
      return PayloadError("qsgd", "norm of bucket ", b, " = ", norm,
                          " is negative, NaN or too large");
    }
  }
  const char* packed = payload.data() + 4 * blocks;
  uint16_t codes[kChunk];
  for (size_t c = 0; c < d; c += kChunk) {
    const size_t n = std::min(kChunk, d - c);
    UnpackCodes(packed + c / 8 * width, n, width, codes);
    if (!QsgdCodesValid(codes, n, s)) {
      for (size_t i = 0; i < n; ++i) {
        if ((codes[i] >> 1) > s) {
          return PayloadError("qsgd", "level ", codes[i] >> 1, " of entry ", c + i,
                              " exceeds s = ", s);
        }
        if (codes[i] == 1)
          return PayloadError("qsgd", "entry ", c + i, " has level 0 with a sign bit");
      }
    }
  }
  const size_t used_bits = d * width % 8;
  if (used_bits != 0 && (static_cast<uint8_t>(payload.back()) >> used_bits) != 0) {
    return PayloadError("qsgd", "non-zero padding bits");
  }
  for (size_t c = 0; c < d; c += kChunk) {
    const size_t n = std::min(kChunk, d - c);
    UnpackCodes(packed + c / 8 * width, n, width, codes);
    for (size_t j = c; j < c + n;) {
      const size_t b = j / length;
      const size_t stop = std::min(c + n, (b + 1) * length);
      const float scale = LoadF32(payload.data() + 4 * b) / levels;
      DecodeQsgdCodes(codes + (j - c), stop - j, scale, t.weight, t.accumulate, t.data + j);
      j = stop;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EncodeQsgdWithUniforms(const CodecSpec& spec, absl::Span<const float> x,
                                    absl::Span<const float> uniforms, std::string* out) {
  if (uniforms.size() < x.size()) {
    return absl::InvalidArgumentError("EncodeQsgdWithUniforms: fewer uniforms than entries");
  }
  return EncodeWith(
      spec, x,
      [uniforms](size_t begin, size_t n, float* u) {
        std::copy(uniforms.begin() + begin, uniforms.begin() + begin + n, u);
      },
      out);
}

const CodecOps kQsgdOps = {ValidateQsgd, QsgdBytes, EncodeQsgd, DecodeQsgd};

}  // namespace tally::compress::internal
