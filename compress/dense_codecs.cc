// float32, float16, bfloat16: d little-endian values, nothing else.
// Decoders validate the whole payload (length, every value finite), then
// write: validate-then-write.
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "compress/codec_internal.h"
#include "compress/half.h"
#include "compress/kernels.h"
#include "core/vector_ops.h"

namespace tally::compress::internal {
namespace {

absl::Status NoParameters(const CodecSpec&, size_t) { return absl::OkStatus(); }

size_t Float32Bytes(const CodecSpec&, size_t d) { return 4 * d; }
size_t HalfBytes(const CodecSpec&, size_t d) { return 2 * d; }

absl::Status EncodeFloat32(const CodecSpec&, absl::Span<const float> x, std::string* out) {
  out->assign(reinterpret_cast<const char*>(x.data()), 4 * x.size());
  return absl::OkStatus();
}

absl::Status DecodeFloat32(const CodecSpec&, absl::string_view payload, const DecodeTarget& t) {
  const absl::Status length = CheckLength("float32", payload, 4 * t.d, t.d);
  if (!length.ok()) return length;
  if (!AllFiniteBytes(payload.data(), t.d)) {
    for (size_t j = 0; j < t.d; ++j) {
      const float v = LoadF32(payload.data() + 4 * j);
      if (!(v - v == 0.0f)) return PayloadError("float32", "value ", j, " = ", v, " is not finite");
    }
  }
  DecodeFloat32Bytes(payload.data(), t.d, t.weight, t.accumulate, t.data);
  return absl::OkStatus();
}

// float16 and bfloat16 differ only in their conversion kernels.
struct HalfFormat {
  const char* name;
  size_t (*encode)(const float* x, size_t n, char* out);
  bool (*finite)(const char* bytes, size_t n);
  void (*decode)(const char* bytes, size_t n, float weight, bool accumulate, float* out);
  bool (*value_finite)(uint16_t bits);
  const char* overflow_hint;
};

const HalfFormat kHalf = {"float16",       EncodeHalfBytes, HalfBytesFinite,
                          DecodeHalfBytes, HalfBitsFinite,  "|x| >= 65520"};
const HalfFormat kBfloat16 = {"bfloat16",          EncodeBfloat16Bytes, Bfloat16BytesFinite,
                              DecodeBfloat16Bytes, Bfloat16BitsFinite,  "|x| >= 0x1.ff8p127"};

absl::Status EncodeHalfFormat(const HalfFormat& f, absl::Span<const float> x, std::string* out) {
  out->resize(2 * x.size());
  const size_t bad = f.encode(x.data(), x.size(), out->data());
  if (bad < x.size()) {
    out->clear();
    return absl::InvalidArgumentError(absl::StrCat("cannot encode x[", bad, "] = ", x[bad], " as ",
                                                   f.name, ": ", f.overflow_hint,
                                                   " rounds to infinity"));
  }
  return absl::OkStatus();
}

absl::Status DecodeHalfFormat(const HalfFormat& f, absl::string_view payload,
                              const DecodeTarget& t) {
  const absl::Status length = CheckLength(f.name, payload, 2 * t.d, t.d);
  if (!length.ok()) return length;
  if (!f.finite(payload.data(), t.d)) {
    for (size_t j = 0; j < t.d; ++j) {
      uint16_t bits;
      std::memcpy(&bits, payload.data() + 2 * j, 2);
      if (!f.value_finite(bits)) {
        return PayloadError(f.name, "value ", j, " (bits 0x", absl::Hex(bits), ") is inf or NaN");
      }
    }
  }
  f.decode(payload.data(), t.d, t.weight, t.accumulate, t.data);
  return absl::OkStatus();
}

absl::Status EncodeFloat16(const CodecSpec&, absl::Span<const float> x, std::string* out) {
  return EncodeHalfFormat(kHalf, x, out);
}
absl::Status DecodeFloat16(const CodecSpec&, absl::string_view payload, const DecodeTarget& t) {
  return DecodeHalfFormat(kHalf, payload, t);
}
absl::Status EncodeBfloat16(const CodecSpec&, absl::Span<const float> x, std::string* out) {
  return EncodeHalfFormat(kBfloat16, x, out);
}
absl::Status DecodeBfloat16(const CodecSpec&, absl::string_view payload, const DecodeTarget& t) {
  return DecodeHalfFormat(kBfloat16, payload, t);
}

}  // namespace

const CodecOps kFloat32Ops = {NoParameters, Float32Bytes, EncodeFloat32, DecodeFloat32};
const CodecOps kFloat16Ops = {NoParameters, HalfBytes, EncodeFloat16, DecodeFloat16};
const CodecOps kBfloat16Ops = {NoParameters, HalfBytes, EncodeBfloat16, DecodeBfloat16};

}  // namespace tally::compress::internal
