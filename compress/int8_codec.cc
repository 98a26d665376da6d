// int8: per block a float32 scale s = max|x_block| / 127 and
// q = round-half-even(x / s) in [-127, 127]; x̂ = s · q.
// Payload: the nb = NumBlocks scales (4 bytes each), then the d q bytes.
// The decoder checks the length, every scale (sign bit clear, s·127 finite)
// and every q byte (-128 is never emitted), then writes: validate-then-write.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "compress/codec_internal.h"
#include "compress/kernels.h"

namespace tally::compress::internal {
namespace {

absl::Status ValidateInt8(const CodecSpec&, size_t) { return absl::OkStatus(); }

size_t Int8Bytes(const CodecSpec& spec, size_t d) { return 4 * NumBlocks(spec.block_size, d) + d; }

absl::Status EncodeInt8Payload(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  const size_t d = x.size();
  const size_t blocks = NumBlocks(spec.block_size, d);
  const size_t length = BlockLength(spec.block_size, d);
  out->resize(Int8Bytes(spec, d));
  char* q = out->data() + 4 * blocks;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * length;
    const size_t n = std::min(length, d - begin);
    float scale = MaxAbs(x.data() + begin, n) / 127.0f;
    // Near FLT_MAX, s · 127 may round up to inf; the decoder refuses that.
    if (!std::isfinite(scale * 127.0f)) scale = std::nextafter(scale, 0.0f);
    StoreF32(out->data() + 4 * b, scale);
    if (scale == 0.0f) {
      std::memset(q + begin, 0, n);  // All zeros, or max|x| < 127 · 2^-150.
    } else {
      EncodeInt8(x.data() + begin, n, scale, q + begin);
    }
  }
  return absl::OkStatus();
}

absl::Status DecodeInt8Payload(const CodecSpec& spec, absl::string_view payload,
                               const DecodeTarget& t) {
  const size_t d = t.d;
  const size_t blocks = NumBlocks(spec.block_size, d);
  const size_t length = BlockLength(spec.block_size, d);
  const absl::Status size = CheckLength("int8", payload, Int8Bytes(spec, d), d);
  if (!size.ok()) return size;
  for (size_t b = 0; b < blocks; ++b) {
    const float scale = LoadF32(payload.data() + 4 * b);
    if (std::signbit(scale) || !std::isfinite(scale * 127.0f)) {
      return PayloadError("int8", "scale of block ", b, " = ", scale,
                          " is negative, NaN or too large (scale * 127 must be finite)");
    }
  }
  const char* q = payload.data() + 4 * blocks;
  if (!Int8BytesValid(q, d)) {
    for (size_t j = 0; j < d; ++j) {
      if (static_cast<uint8_t>(q[j]) == 0x80u) {
        return PayloadError("int8", "value ", j, " is -128 (outside [-127, 127])");
      }
    }
  }
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * length;
    const size_t n = std::min(length, d - begin);
    DecodeInt8(q + begin, n, LoadF32(payload.data() + 4 * b), t.weight, t.accumulate,
               t.data + begin);
  }
  return absl::OkStatus();
}

}  // namespace

const CodecOps kInt8Ops = {ValidateInt8, Int8Bytes, EncodeInt8Payload, DecodeInt8Payload};

}  // namespace tally::compress::internal
