// sign (docs/algorithms.md#sign, scaled sign of EF-signSGD): per block the scale
// c = float32(Σ double(|x_j|) / n) (summed in index order, n = block length)
// and one bit per entry, 1 iff x_j >= 0 (so 0 and -0 decode to +c; a 1-bit
// code cannot carry 0). x̂_j = bit ? +c : −c.
// Payload: the nb block scales (float32), then ceil(d / 8) bytes of bits,
// entry j at bit j mod 8 (least significant first) of byte j / 8, padding
// bits zero. The decoder checks the length, every scale (finite, sign bit
// clear) and
// the padding, then writes: validate-then-write.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "compress/codec_internal.h"
#include "compress/kernels.h"

namespace tally::compress::internal {
namespace {

absl::Status ValidateSign(const CodecSpec&, size_t) { return absl::OkStatus(); }

size_t SignBytes(const CodecSpec& spec, size_t d) {
  return 4 * NumBlocks(spec.block_size, d) + (d + 7) / 8;
}

absl::Status EncodeSign(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  const size_t d = x.size();
  const size_t blocks = NumBlocks(spec.block_size, d);
  const size_t length = BlockLength(spec.block_size, d);
  out->assign(SignBytes(spec, d), '\0');
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * length;
    const size_t end = std::min(d, begin + length);
    double sum = 0.0;
    for (size_t j = begin; j < end; ++j) sum += std::fabs(static_cast<double>(x[j]));
    StoreF32(out->data() + 4 * b, static_cast<float>(sum / static_cast<double>(end - begin)));
  }
  EncodeSignBits(x.data(), d, reinterpret_cast<uint8_t*>(out->data() + 4 * blocks));
  return absl::OkStatus();
}

absl::Status DecodeSign(const CodecSpec& spec, absl::string_view payload, const DecodeTarget& t) {
  const size_t d = t.d;
  const size_t blocks = NumBlocks(spec.block_size, d);
  const size_t length = BlockLength(spec.block_size, d);
  const absl::Status size = CheckLength("sign", payload, SignBytes(spec, d), d);
  if (!size.ok()) return size;
  for (size_t b = 0; b < blocks; ++b) {
    const float scale = LoadF32(payload.data() + 4 * b);
    if (std::signbit(scale) || !std::isfinite(scale)) {
      return PayloadError("sign", "scale of block ", b, " = ", scale, " is negative or not finite");
    }
  }
  const uint8_t* bits = reinterpret_cast<const uint8_t*>(payload.data() + 4 * blocks);
  if (d % 8 != 0 && (bits[d / 8] >> (d % 8)) != 0) {
    return PayloadError("sign", "non-zero padding bits");
  }
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * length;
    const size_t end = std::min(d, begin + length);
    DecodeSignBits(bits, begin, end - begin, LoadF32(payload.data() + 4 * b), t.weight,
                   t.accumulate, t.data + begin);
  }
  return absl::OkStatus();
}

}  // namespace

const CodecOps kSignOps = {ValidateSign, SignBytes, EncodeSign, DecodeSign};

}  // namespace tally::compress::internal
