// randk: the entries are chosen by the shared seed, not sent. Entry j of a
// d-vector is selected iff RngBits(seed, j) < floor(k · 2^64 / d) (every
// entry when k = d): each independently with probability p = k/d (up to
// 2^-64), so the count varies around k = EffectiveK.
// Payload: varint n (the number of selected entries), then their n values
// in ascending index order, float32 or (half_values) float16.
// Decoded value: value · float32(double(d) / double(k)) with `rescale`
// (unbiased), the value itself without.
// The decoder checks n <= d and the exact length, every value (and its
// rescaled value) finite, then regenerates the selection into a temporary
// list of indices (at most n of them), checks it has exactly n entries, and
// scatters: decode-to-temp (indices only, O(n)).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "compress/codec_internal.h"
#include "compress/half.h"
#include "compress/kernels.h"
#include "core/varint.h"

namespace tally::compress::internal {
namespace {

constexpr size_t kMaskBlock = 2048;

size_t RandKBytes(const CodecSpec& spec, size_t d) {
  return VarintLength(d) + d * SparseValueBytes(spec);
}

// Calls fn(j) for every selected j in ascending order while fn returns true;
// false if fn stopped it.
template <typename Fn>
bool ForEachSelected(uint64_t seed, uint64_t k, size_t d, Fn fn) {
  if (k >= d) {
    for (size_t j = 0; j < d; ++j) {
      if (!fn(j)) return false;
    }
    return true;
  }
  const uint64_t threshold = static_cast<uint64_t>((static_cast<unsigned __int128>(k) << 64) / d);
  uint8_t mask[kMaskBlock];
  for (size_t begin = 0; begin < d; begin += kMaskBlock) {
    const size_t n = std::min(kMaskBlock, d - begin);
    RandkMask(seed, begin, n, threshold, mask);
    for (size_t i = 0; i < n; i += 8) {
      uint64_t eight = 0;
      std::memcpy(&eight, mask + i, std::min<size_t>(8, n - i));
      for (; eight != 0; eight &= eight - 1) {
        if (!fn(begin + i + __builtin_ctzll(eight) / 8)) return false;
      }
    }
  }
  return true;
}

float Scale(const CodecSpec& spec, size_t d) {
  return spec.rescale
             ? static_cast<float>(static_cast<double>(d) / static_cast<double>(EffectiveK(spec, d)))
             : 1.0f;
}

absl::Status EncodeRandK(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  std::vector<size_t> indices;
  ForEachSelected(spec.seed, EffectiveK(spec, x.size()), x.size(), [&](size_t j) {
    indices.push_back(j);
    return true;
  });
  const float scale = Scale(spec, x.size());
  out->clear();
  AppendVarint(indices.size(), out);
  const size_t start = out->size();
  out->resize(start + indices.size() * SparseValueBytes(spec));
  char* dst = out->data() + start;
  for (size_t i = 0; i < indices.size(); ++i) {
    const float v = x[indices[i]];
    const uint16_t h = FloatToHalfBits(v);
    if (spec.half_values && !HalfBitsFinite(h)) {
      out->clear();
      return absl::InvalidArgumentError(absl::StrCat("randk cannot send x[", indices[i], "] = ", v,
                                                     " as float16: rounds to infinity"));
    }
    // The decoder refuses values whose rescaled value is not finite.
    if (!std::isfinite((spec.half_values ? HalfBitsToFloat(h) : v) * scale)) {
      out->clear();
      return absl::InvalidArgumentError(absl::StrCat("randk cannot send x[", indices[i], "] = ", v,
                                                     ": rescaled by d/k = ", scale,
                                                     " it overflows float32"));
    }
    if (spec.half_values) {
      std::memcpy(dst + 2 * i, &h, 2);
    } else {
      StoreF32(dst + 4 * i, v);
    }
  }
  return absl::OkStatus();
}

absl::Status DecodeRandK(const CodecSpec& spec, absl::string_view payload, const DecodeTarget& t) {
  const size_t value_bytes = SparseValueBytes(spec);
  const char* why = "";
  size_t pos = 0;
  uint64_t count;
  if (!ReadVarint(payload.data(), payload.size(), &pos, &count, &why)) {
    return PayloadError("randk", "count: ", why);
  }
  if (count > t.d) return PayloadError("randk", "count ", count, " exceeds d = ", t.d);
  if (payload.size() - pos != count * value_bytes) {
    return PayloadError("randk", payload.size() - pos, " value bytes, expected ",
                        count * value_bytes, " for ", count, " values");
  }
  const char* values = payload.data() + pos;
  const float scale = Scale(spec, t.d);
  for (uint64_t i = 0; i < count; ++i) {
    const float v = LoadSparseValue(values + i * value_bytes, spec.half_values);
    if (!std::isfinite(v * scale)) {
      return PayloadError("randk", "value ", i, " = ", v, " (times ", scale, ") is not finite");
    }
  }
  std::vector<uint64_t> indices;
  indices.reserve(count);
  const bool fits = ForEachSelected(spec.seed, EffectiveK(spec, t.d), t.d, [&](size_t j) {
    if (indices.size() == count) return false;
    indices.push_back(j);
    return true;
  });
  if (!fits || indices.size() != count) {
    return PayloadError("randk", "count ", count, ", but seed ", spec.seed, " selects ",
                        fits ? absl::StrCat(indices.size()) : absl::StrCat("more than ", count),
                        " of the d = ", t.d, " entries");
  }
  if (!t.accumulate) std::fill(t.data, t.data + t.d, 0.0f);
  for (uint64_t i = 0; i < count; ++i) {
    const float v = LoadSparseValue(values + i * value_bytes, spec.half_values) * scale;
    if (t.accumulate) {
      t.data[indices[i]] += t.weight * v;
    } else {
      t.data[indices[i]] = v;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const CodecOps kRandKOps = {ValidateSparseK, RandKBytes, EncodeRandK, DecodeRandK};

}  // namespace tally::compress::internal
