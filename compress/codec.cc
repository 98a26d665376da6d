#include "compress/codec.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compress/codec_internal.h"
#include "compress/codec_rng.h"
#include "core/vector_ops.h"

namespace tally::compress {
namespace {

using internal::CodecOps;
using internal::DecodeTarget;

// In id order: kCodecs[i].id == i + 1.
constexpr CodecInfo kCodecs[] = {
    {CodecId::kFloat32, "float32", /*sparse=*/false, /*lossless=*/true, /*seeded=*/false},
    {CodecId::kFloat16, "float16", false, false, false},
    {CodecId::kBfloat16, "bfloat16", false, false, false},
    {CodecId::kInt8, "int8", false, false, false},
    {CodecId::kQsgd, "qsgd", false, false, true},
    {CodecId::kSign, "sign", false, false, false},
    {CodecId::kTopK, "topk", true, false, false},
    {CodecId::kRandK, "randk", true, false, true},
    {CodecId::kSpsa, "spsa", false, false, true},
};

const CodecOps* const kOps[] = {
    &internal::kFloat32Ops, &internal::kFloat16Ops, &internal::kBfloat16Ops,
    &internal::kInt8Ops,    &internal::kQsgdOps,    &internal::kSignOps,
    &internal::kTopKOps,    &internal::kRandKOps,   &internal::kSpsaOps,
};
static_assert(sizeof(kOps) / sizeof(kOps[0]) == sizeof(kCodecs) / sizeof(kCodecs[0]));

constexpr uint32_t kZstdMagic = 0xFD2FB528u;

const CodecOps* FindOps(CodecId id) {
  const size_t index = static_cast<size_t>(id) - 1;
  return index < sizeof(kOps) / sizeof(kOps[0]) ? kOps[index] : nullptr;
}

absl::Status CheckFiniteInput(absl::Span<const float> x) {
  if (AllFinite(x.data(), x.size())) return absl::OkStatus();
  for (size_t j = 0; j < x.size(); ++j) {
    if (!std::isfinite(x[j])) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot encode x[", j, "] = ", x[j], ": the input must be finite"));
    }
  }
  return absl::OkStatus();
}

// The inner codec's payload from a zstd frame, refusing, before allocating, a
// declared size above the inner codec's MaxEncodedBytes.
absl::Status Unframe(const CodecOps& ops, const CodecSpec& spec, size_t d,
                     absl::string_view payload, std::string* inner) {
  if (payload.size() < 4 || internal::LoadU32(payload.data()) != kZstdMagic) {
    return internal::PayloadError("zstd", "not a zstd frame (no magic number 28 b5 2f fd)");
  }
  const unsigned long long declared = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return internal::PayloadError("zstd", "malformed frame header");
  }
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
    return internal::PayloadError("zstd", "the frame does not declare its decompressed size");
  }
  const size_t limit = ops.max_bytes(spec, d);
  if (declared > limit) {
    return internal::PayloadError("zstd", "declared decompressed size ", declared,
                                  " exceeds the inner codec's maximum ", limit, " for d = ", d);
  }
  const size_t frame = ZSTD_findFrameCompressedSize(payload.data(), payload.size());
  if (ZSTD_isError(frame)) {
    return internal::PayloadError("zstd", "malformed frame: ", ZSTD_getErrorName(frame));
  }
  if (frame != payload.size()) {
    return internal::PayloadError("zstd", payload.size() - frame,
                                  " trailing bytes after the zstd frame");
  }
  inner->resize(declared);
  const size_t got = ZSTD_decompress(inner->data(), inner->size(), payload.data(), payload.size());
  if (ZSTD_isError(got)) {
    return internal::PayloadError("zstd", "decompression failed: ", ZSTD_getErrorName(got));
  }
  if (got != declared) {
    return internal::PayloadError("zstd", "decompressed to ", got, " bytes, the frame declares ",
                                  declared);
  }
  return absl::OkStatus();
}

absl::Status DecodeTo(const CodecSpec& spec, absl::string_view payload, const DecodeTarget& t) {
  const absl::Status valid = ValidateSpec(spec, t.d);
  if (!valid.ok()) return valid;
  const CodecOps& ops = *FindOps(spec.id);
  if (!spec.zstd) return ops.decode(spec, payload, t);
  std::string inner;
  const absl::Status unframed = Unframe(ops, spec, t.d, payload, &inner);
  if (!unframed.ok()) return unframed;
  return ops.decode(spec, inner, t);
}

}  // namespace

const CodecInfo* FindCodec(absl::string_view name) {
  for (const CodecInfo& info : kCodecs) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

const CodecInfo* FindCodec(CodecId id) {
  return FindOps(id) == nullptr ? nullptr : &kCodecs[static_cast<size_t>(id) - 1];
}

absl::Span<const CodecInfo> AllCodecs() { return kCodecs; }

std::vector<std::string> CodecNames() {
  std::vector<std::string> names;
  for (const CodecInfo& info : kCodecs) names.emplace_back(info.name);
  return names;
}

CodecSpec DefaultSpec(CodecId id) {
  CodecSpec spec;
  spec.id = id;
  switch (id) {
    case CodecId::kInt8:
      spec.block_size = 256;
      break;
    case CodecId::kQsgd:
      spec.levels = 7;
      spec.block_size = 512;
      break;
    case CodecId::kTopK:
      spec.ratio = 0.01f;
      break;
    case CodecId::kRandK:
      spec.ratio = 0.01f;
      spec.rescale = true;
      break;
    case CodecId::kSpsa:
      spec.k = 1;
      break;
    default:
      break;
  }
  return spec;
}

absl::Status ValidateSpec(const CodecSpec& spec, size_t d) {
  const CodecOps* ops = FindOps(spec.id);
  if (ops == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec id ", static_cast<int>(spec.id), " is unknown"));
  }
  if (d == 0 || d > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("d = ", d, " is outside the codecs' range 1..", kMaxDim));
  }
  if (spec.zstd && (spec.zstd_level < ZSTD_minCLevel() || spec.zstd_level > ZSTD_maxCLevel())) {
    return absl::InvalidArgumentError(absl::StrCat("zstd_level = ", spec.zstd_level,
                                                   " is outside zstd's range ", ZSTD_minCLevel(),
                                                   "..", ZSTD_maxCLevel()));
  }
  return ops->validate(spec, d);
}

uint64_t EffectiveK(const CodecSpec& spec, size_t d) {
  switch (spec.id) {
    case CodecId::kTopK:
    case CodecId::kRandK: {
      if (spec.k > 0) return spec.k;
      const double k = std::ceil(static_cast<double>(spec.ratio) * static_cast<double>(d));
      return k < 1.0 ? 1 : k > static_cast<double>(d) ? d : static_cast<uint64_t>(k);
    }
    case CodecId::kSpsa:
      return spec.k;
    default:
      return 0;
  }
}

size_t MaxEncodedBytes(const CodecSpec& spec, size_t d) {
  const size_t inner = FindOps(spec.id)->max_bytes(spec, d);
  return spec.zstd ? ZSTD_compressBound(inner) : inner;
}

size_t WorstCaseEncodedBytes(CodecId id, size_t d, uint64_t spsa_pairs) {
  CodecSpec spec = DefaultSpec(id);
  spec.zstd = true;
  spec.half_values = false;
  switch (id) {
    case CodecId::kInt8:
    case CodecId::kSign:
      spec.block_size = 1;
      break;
    case CodecId::kQsgd:
      spec.block_size = 1;
      spec.levels = 32767;
      break;
    case CodecId::kTopK:
    case CodecId::kRandK:
      spec.k = d;
      break;
    case CodecId::kSpsa:
      spec.k = std::max<uint64_t>(spsa_pairs, 1);
      break;
    default:
      break;
  }
  return MaxEncodedBytes(spec, d);
}

absl::Status Encode(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  const absl::Status valid = ValidateSpec(spec, x.size());
  if (!valid.ok()) return valid;
  const absl::Status finite = CheckFiniteInput(x);
  if (!finite.ok()) return finite;
  const CodecOps& ops = *FindOps(spec.id);
  if (!spec.zstd) return ops.encode(spec, x, out);
  std::string inner;
  const absl::Status encoded = ops.encode(spec, x, &inner);
  if (!encoded.ok()) return encoded;
  return internal::ZstdCompress(spec.zstd_level, inner, out);
}

absl::Status DecodeAccumulate(const CodecSpec& spec, absl::string_view payload, float weight,
                              absl::Span<float> acc) {
  if (!std::isfinite(weight)) {
    return absl::InvalidArgumentError(absl::StrCat("decode weight ", weight, " is not finite"));
  }
  return DecodeTo(spec, payload, DecodeTarget{acc.data(), acc.size(), weight, true});
}

absl::Status Decode(const CodecSpec& spec, absl::string_view payload, absl::Span<float> out) {
  return DecodeTo(spec, payload, DecodeTarget{out.data(), out.size(), 1.0f, false});
}

bool RandkSelected(uint64_t seed, uint64_t k, uint64_t d, uint64_t j) {
  if (k >= d) return true;
  const uint64_t threshold = static_cast<uint64_t>((static_cast<unsigned __int128>(k) << 64) / d);
  return RngBits(seed, j) < threshold;
}

void FillRademacher(uint64_t seed, uint64_t first, absl::Span<float> z) {
  uint64_t word = first >> 6;
  uint64_t bits = RngBits(seed, word);
  for (size_t i = 0; i < z.size(); ++i) {
    const uint64_t j = first + i;
    if ((j >> 6) != word) bits = RngBits(seed, word = j >> 6);
    z[i] = ((bits >> (j & 63)) & 1) != 0 ? -1.0f : 1.0f;
  }
}

namespace internal {

absl::Status ZstdCompress(int level, absl::string_view inner, std::string* out) {
  out->resize(ZSTD_compressBound(inner.size()));
  // ZSTD_compress writes the content size into the frame header.
  const size_t n = ZSTD_compress(out->data(), out->size(), inner.data(), inner.size(), level);
  if (ZSTD_isError(n)) {
    out->clear();
    return absl::InternalError(absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
  }
  out->resize(n);
  return absl::OkStatus();
}

bool ReadVarint(const char* data, size_t size, size_t* pos, uint64_t* value, const char** why) {
  uint64_t v = 0;
  size_t p = *pos;
  for (int i = 0; i < 10; ++i) {
    if (p >= size) {
      *why = "truncated varint";
      return false;
    }
    const uint8_t byte = static_cast<uint8_t>(data[p++]);
    if (i == 9 && byte > 1) {
      *why = "varint overflows 64 bits";
      return false;
    }
    v |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if (byte < 0x80) {
      if (byte == 0 && i > 0) {
        *why = "overlong varint (non-canonical trailing zero byte)";
        return false;
      }
      *pos = p;
      *value = v;
      return true;
    }
  }
  *why = "varint overflows 64 bits";  // Unreachable: the 10th byte was checked.
  return false;
}

absl::Status ValidateSparseK(const CodecSpec& spec, size_t d) {
  if (spec.k > d) {
    return absl::InvalidArgumentError(absl::StrCat("k = ", spec.k, " exceeds d = ", d));
  }
  if (spec.k == 0 && !(spec.ratio > 0.0f && spec.ratio <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ratio = ", spec.ratio, " must be in (0, 1] when k = 0"));
  }
  return absl::OkStatus();
}

absl::Status CheckLength(absl::string_view codec, absl::string_view payload, size_t expected,
                         size_t d) {
  if (payload.size() == expected) return absl::OkStatus();
  return PayloadError(codec, payload.size(), " bytes, expected ", expected, " for d = ", d,
                      payload.size() < expected ? " (truncated)" : " (trailing bytes)");
}

}  // namespace internal
}  // namespace tally::compress
