// spsa: seeded perturbations. Payload: n <= k pairs of 12 bytes, (uint64
// seed, float32 scalar); x̂ = Σ_i scalar_i · z(seed_i), z the codec RNG's
// Rademacher vector (codec_rng.h), summed in float32 in payload order
// starting from +0.
// Encode(x) sends k pairs with seed_i = RngBits(spec.seed, i) and
// scalar_i = float32(Σ_j z_ij · double(x_j) / k) (summed in index order).
// The decoder checks the length (a multiple of 12, at most 12·k), every
// scalar finite and Σ|scalar_i| <= 2^127 (so every decoded entry is finite),
// then writes, block by block of 2048 entries through a fixed 8 KiB buffer:
// validate-then-write.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "compress/codec_internal.h"
#include "compress/codec_rng.h"
#include "compress/kernels.h"

namespace tally::compress {
namespace internal {
namespace {

constexpr uint64_t kMaxPairs = uint64_t{1} << 20;
constexpr size_t kPairBytes = 12;
constexpr size_t kWordsPerBlock = 32;  // 2048 entries.
constexpr double kMaxScalarSum = 0x1p127;

absl::Status ValidateSpsa(const CodecSpec& spec, size_t) {
  if (spec.k < 1 || spec.k > kMaxPairs) {
    return absl::InvalidArgumentError(
        absl::StrCat("spsa k (pairs) = ", spec.k, " is outside 1..", kMaxPairs));
  }
  return absl::OkStatus();
}

size_t SpsaBytes(const CodecSpec& spec, size_t) { return kPairBytes * spec.k; }

void WritePairs(absl::Span<const SpsaPair> pairs, std::string* out) {
  out->resize(kPairBytes * pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    StoreU64(out->data() + kPairBytes * i, pairs[i].seed);
    StoreF32(out->data() + kPairBytes * i + 8, pairs[i].scalar);
  }
}

absl::Status EncodeSpsa(const CodecSpec& spec, absl::Span<const float> x, std::string* out) {
  const size_t d = x.size();
  std::vector<SpsaPair> pairs(spec.k);
  double scalar_sum = 0.0;
  for (uint64_t i = 0; i < spec.k; ++i) {
    pairs[i].seed = RngBits(spec.seed, i);
    double dot = 0.0;
    for (size_t word = 0; word * 64 < d; ++word) {
      const uint64_t bits = RngBits(pairs[i].seed, word);
      const size_t n = std::min<size_t>(64, d - word * 64);
      for (size_t b = 0; b < n; ++b) {
        const double v = x[word * 64 + b];
        dot += ((bits >> b) & 1) != 0 ? -v : v;
      }
    }
    pairs[i].scalar = static_cast<float>(dot / static_cast<double>(spec.k));
    scalar_sum += std::fabs(static_cast<double>(pairs[i].scalar));
  }
  if (!(scalar_sum <= kMaxScalarSum)) {
    return absl::InvalidArgumentError("spsa cannot encode x: the projections exceed 2^127");
  }
  WritePairs(pairs, out);
  return absl::OkStatus();
}

absl::Status DecodeSpsa(const CodecSpec& spec, absl::string_view payload, const DecodeTarget& t) {
  if (payload.size() % kPairBytes != 0) {
    return PayloadError("spsa", payload.size(), " bytes is not a whole number of 12-byte pairs");
  }
  const size_t n = payload.size() / kPairBytes;
  if (n > spec.k) return PayloadError("spsa", n, " pairs exceed k = ", spec.k);
  double scalar_sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const float s = LoadF32(payload.data() + kPairBytes * i + 8);
    if (!std::isfinite(s)) return PayloadError("spsa", "scalar ", i, " = ", s, " is not finite");
    scalar_sum += std::fabs(static_cast<double>(s));
  }
  if (scalar_sum > kMaxScalarSum) {
    return PayloadError("spsa", "the scalars' absolute sum ", scalar_sum, " exceeds 2^127");
  }
  float tmp[64 * kWordsPerBlock];
  for (size_t begin = 0; begin < t.d; begin += 64 * kWordsPerBlock) {
    const size_t entries = std::min<size_t>(64 * kWordsPerBlock, t.d - begin);
    const size_t words = (entries + 63) / 64;
    std::fill(tmp, tmp + 64 * words, 0.0f);
    for (size_t i = 0; i < n; ++i) {
      AddRademacher(LoadU64(payload.data() + kPairBytes * i), begin / 64, words,
                    LoadF32(payload.data() + kPairBytes * i + 8), tmp);
    }
    StoreOrAccumulate(tmp, entries, t.weight, t.accumulate, t.data + begin);
  }
  return absl::OkStatus();
}

}  // namespace

const CodecOps kSpsaOps = {ValidateSpsa, SpsaBytes, EncodeSpsa, DecodeSpsa};

}  // namespace internal

absl::Status EncodeSpsaPairs(const CodecSpec& spec, absl::Span<const SpsaPair> pairs,
                             std::string* out) {
  if (spec.id != CodecId::kSpsa) {
    return absl::InvalidArgumentError("EncodeSpsaPairs needs an spsa codec spec");
  }
  const absl::Status valid = ValidateSpec(spec, 1);
  if (!valid.ok()) return valid;
  if (pairs.size() > spec.k) {
    return absl::InvalidArgumentError(
        absl::StrCat(pairs.size(), " spsa pairs exceed k = ", spec.k));
  }
  double scalar_sum = 0.0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (!std::isfinite(pairs[i].scalar)) {
      return absl::InvalidArgumentError(
          absl::StrCat("spsa scalar ", i, " = ", pairs[i].scalar, " is not finite"));
    }
    scalar_sum += std::fabs(static_cast<double>(pairs[i].scalar));
  }
  if (scalar_sum > internal::kMaxScalarSum) {
    return absl::InvalidArgumentError("spsa scalars: their absolute sum exceeds 2^127");
  }
  if (!spec.zstd) {
    internal::WritePairs(pairs, out);
    return absl::OkStatus();
  }
  std::string inner;
  internal::WritePairs(pairs, &inner);
  return internal::ZstdCompress(spec.zstd_level, inner, out);
}

}  // namespace tally::compress
