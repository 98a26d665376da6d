// topk: the k = EffectiveK entries of largest |x| (ties: lowest index), in
// ascending index order.
// Payload: varint n (n <= k; the encoder writes n = k), then n varints for
// the indices (the first absolute, then each minus its predecessor minus 1,
// so the indices are strictly increasing by construction), then n values,
// float32 or (half_values) float16. The decoder parses the indices checking
// each is < d, checks the values' byte length is exactly n·(4 or 2) and every
// value finite, then parses the indices again to write: validate-then-write
// (no temporary). Decode zero-fills `out` after validation.
// EncodeSparse (codec.h) writes the same format for a given index list.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "compress/codec_internal.h"
#include "compress/half.h"
#include "core/varint.h"

namespace tally::compress {
namespace internal {
namespace {

size_t TopKBytes(const CodecSpec& spec, size_t d) {
  const uint64_t k = EffectiveK(spec, d);
  return VarintLength(k) + k * (VarintLength(d - 1) + SparseValueBytes(spec));
}

// The k-th largest of the keys (|x| bit patterns, which order like |x| for
// finite x), and how many entries equal to it are kept: a two-pass radix
// select on the high and low 16 bits.
void KthLargestKey(absl::Span<const float> x, uint64_t k, uint32_t* key, uint64_t* take_equal) {
  const std::unique_ptr<uint64_t[]> storage(new uint64_t[1 << 16]());
  uint64_t* histogram = storage.get();
  uint32_t high = 0;  // Walks start at the largest bin in use.
  for (float v : x) {
    const uint32_t bin = (FloatBits(v) & 0x7fffffffu) >> 16;
    ++histogram[bin];
    high = std::max(high, bin);
  }
  uint64_t above = 0;
  while (above + histogram[high] < k) above += histogram[high--];
  if (x.size() >= (size_t{1} << 16)) {
    std::memset(histogram, 0, sizeof(uint64_t) << 16);
  } else {
    for (float v : x) histogram[(FloatBits(v) & 0x7fffffffu) >> 16] = 0;  // Only bins in use.
  }
  uint32_t low = 0;
  for (float v : x) {
    const uint32_t bits = FloatBits(v) & 0x7fffffffu;
    if ((bits >> 16) == high) {
      ++histogram[bits & 0xffffu];
      low = std::max(low, bits & 0xffffu);
    }
  }
  while (above + histogram[low] < k) above += histogram[low--];
  *key = (high << 16) | low;
  *take_equal = k - above;
}

// Appends the values, float32 or (half_values) float16; on a value that
// rounds to infinity in float16, clears *out and fails.
absl::Status AppendSparseValues(const CodecSpec& spec, absl::Span<const float> values,
                                std::string* out) {
  const size_t start = out->size();
  out->resize(start + values.size() * SparseValueBytes(spec));
  char* dst = out->data() + start;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!spec.half_values) {
      StoreF32(dst + 4 * i, values[i]);
      continue;
    }
    const uint16_t h = FloatToHalfBits(values[i]);
    if (!HalfBitsFinite(h)) {
      out->clear();
      return absl::InvalidArgumentError(
          absl::StrCat("topk cannot send ", values[i], " as float16: rounds to infinity"));
    }
    std::memcpy(dst + 2 * i, &h, 2);
  }
  return absl::OkStatus();
}

absl::Status EncodeTopK(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  const uint64_t k = EffectiveK(spec, x.size());
  uint32_t threshold;
  uint64_t take_equal;
  KthLargestKey(x, k, &threshold, &take_equal);
  out->clear();
  AppendVarint(k, out);
  std::vector<float> values;
  values.reserve(k);
  uint64_t next = 0;  // Smallest index the next one may have.
  for (size_t j = 0; j < x.size(); ++j) {
    const uint32_t key = FloatBits(x[j]) & 0x7fffffffu;
    if (key > threshold || (key == threshold && take_equal > 0)) {
      if (key == threshold) --take_equal;
      AppendVarint(j - next, out);
      next = j + 1;
      values.push_back(x[j]);
    }
  }
  return AppendSparseValues(spec, values, out);
}

absl::Status DecodeTopK(const CodecSpec& spec, absl::string_view payload, const DecodeTarget& t) {
  const char* data = payload.data();
  const size_t size = payload.size();
  const uint64_t k = EffectiveK(spec, t.d);
  const size_t value_bytes = SparseValueBytes(spec);
  const char* why = "";
  size_t pos = 0;
  uint64_t count;
  if (!ReadVarint(data, size, &pos, &count, &why)) return PayloadError("topk", "count: ", why);
  if (count > k) return PayloadError("topk", "count ", count, " exceeds k = ", k);
  if (size - pos < count) {
    return PayloadError("topk", size, " bytes cannot hold ", count, " indices (truncated)");
  }
  const size_t indices_begin = pos;
  uint64_t next = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t gap;
    if (!ReadVarint(data, size, &pos, &gap, &why))
      return PayloadError("topk", "index ", i, ": ", why);
    if (gap >= t.d - next) {
      return PayloadError("topk", "index ", i, " is out of range (>= d = ", t.d, ")");
    }
    next += gap + 1;
  }
  if (size - pos != count * value_bytes) {
    return PayloadError("topk", size - pos, " value bytes after the indices, expected ",
                        count * value_bytes, " for ", count, " values",
                        size - pos < count * value_bytes ? " (truncated)" : " (trailing bytes)");
  }
  const char* values = data + pos;
  for (uint64_t i = 0; i < count; ++i) {
    const float v = LoadSparseValue(values + i * value_bytes, spec.half_values);
    if (!std::isfinite(v)) return PayloadError("topk", "value ", i, " = ", v, " is not finite");
  }
  if (!t.accumulate) std::fill(t.data, t.data + t.d, 0.0f);
  pos = indices_begin;
  next = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t gap;
    ReadVarint(data, size, &pos, &gap, &why);  // Validated above.
    const uint64_t j = next + gap;
    next = j + 1;
    const float v = LoadSparseValue(values + i * value_bytes, spec.half_values);
    if (t.accumulate) {
      t.data[j] += t.weight * v;
    } else {
      t.data[j] = v;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const CodecOps kTopKOps = {ValidateSparseK, TopKBytes, EncodeTopK, DecodeTopK};

}  // namespace internal

absl::Status EncodeSparse(const CodecSpec& spec, absl::Span<const uint64_t> indices,
                          absl::Span<const float> values, size_t d, std::string* out) {
  if (spec.id != CodecId::kTopK) {
    return absl::InvalidArgumentError("EncodeSparse needs a topk codec spec");
  }
  const absl::Status valid = ValidateSpec(spec, d);
  if (!valid.ok()) return valid;
  if (indices.size() != values.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeSparse: ", indices.size(), " indices but ", values.size(), " values"));
  }
  const uint64_t k = EffectiveK(spec, d);
  if (indices.size() > k) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeSparse: ", indices.size(), " entries exceed k = ", k));
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] >= d || (i > 0 && indices[i] <= indices[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("EncodeSparse: index ", i, " = ", indices[i],
                       " is not above the previous one or not below d = ", d));
    }
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("EncodeSparse: value ", i, " = ", values[i], " is not finite"));
    }
  }
  std::string inner;
  std::string* target = spec.zstd ? &inner : out;
  target->clear();
  AppendVarint(indices.size(), target);
  uint64_t next = 0;  // Smallest index the next one may have.
  for (const uint64_t j : indices) {
    AppendVarint(j - next, target);
    next = j + 1;
  }
  const absl::Status appended = internal::AppendSparseValues(spec, values, target);
  if (!appended.ok() || !spec.zstd) return appended;
  return internal::ZstdCompress(spec.zstd_level, inner, out);
}

}  // namespace tally::compress
