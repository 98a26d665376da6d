#include "compress/dgc.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compress/half.h"
#include "core/status_macros.h"

namespace tally::compress {
namespace {

bool IsRatio(double r) { return r > 0.0 && r <= 1.0; }  // False for NaN.

absl::Status ValidateTensors(const std::vector<DgcTensor>& tensors, size_t* d) {
  if (tensors.empty()) return absl::InvalidArgumentError("DGC: no tensors");
  uint64_t end = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const DgcTensor& t = tensors[i];
    if (t.offset != end) {
      return absl::InvalidArgumentError(absl::StrCat("DGC: tensor ", i, " starts at ", t.offset,
                                                     ", the previous one ends at ", end));
    }
    if (t.size == 0 || t.size > kMaxDim - end) {
      return absl::InvalidArgumentError(absl::StrCat("DGC: tensor ", i, " has size ", t.size,
                                                     " (must be >= 1, total <= ", kMaxDim, ")"));
    }
    end += t.size;
  }
  *d = static_cast<size_t>(end);
  return absl::OkStatus();
}

absl::Status ValidateOptions(const DgcOptions& o) {
  if (!(o.momentum >= 0.0f && o.momentum <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DGC: momentum = ", o.momentum, " must be in [0, 1]"));
  }
  if (!(o.clip_norm >= 0.0 && std::isfinite(o.clip_norm))) {
    return absl::InvalidArgumentError(absl::StrCat("DGC: clip_norm = ", o.clip_norm,
                                                   " must be finite and >= 0 (0: no clipping)"));
  }
  if (!IsRatio(o.compress_ratio)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DGC: compress_ratio = ", o.compress_ratio, " must be in (0, 1]"));
  }
  if (!o.warmup_ratios.empty() && o.warmup_ratios.size() != o.warmup_steps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DGC: ", o.warmup_ratios.size(), " warmup_ratios for warmup_steps = ", o.warmup_steps,
        " (give one per warm-up step, or none)"));
  }
  for (size_t e = 0; e < o.warmup_ratios.size(); ++e) {
    if (!IsRatio(o.warmup_ratios[e])) {
      return absl::InvalidArgumentError(
          absl::StrCat("DGC: warmup_ratios[", e, "] = ", o.warmup_ratios[e], " must be in (0, 1]"));
    }
  }
  return absl::OkStatus();
}

CodecSpec WireSpec(const DgcOptions& o, uint64_t k) {
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  spec.k = k;
  spec.half_values = o.half_values;
  spec.zstd = o.zstd;
  spec.zstd_level = o.zstd_level;
  return spec;
}

uint32_t AbsKey(float v) { return FloatBits(v) & 0x7fffffffu; }  // Orders like |v|.

}  // namespace

double DgcCompressRatio(const DgcOptions& options, uint64_t step) {
  const double base = options.compress_ratio;
  if (step >= options.warmup_steps) return base;
  if (!options.warmup_ratios.empty()) return options.warmup_ratios[step];
  // synxlin/deep-gradient-compression dgc/compression.py (warmup_coeff =
  // base^(1/(E+1))); the paper's schedule differs (compress/dgc.h).
  const double c = std::pow(base, 1.0 / (static_cast<double>(options.warmup_steps) + 1.0));
  return std::max(std::pow(c, static_cast<double>(step) + 1.0), base);
}

absl::StatusOr<DgcCompressor> DgcCompressor::Create(std::vector<DgcTensor> tensors,
                                                    DgcOptions options) {
  size_t d = 0;
  TALLY_RETURN_IF_ERROR(ValidateTensors(tensors, &d));
  TALLY_RETURN_IF_ERROR(ValidateOptions(options));
  TALLY_RETURN_IF_ERROR(ValidateSpec(WireSpec(options, 1), d));
  return DgcCompressor(std::move(tensors), std::move(options), d);
}

DgcCompressor::DgcCompressor(std::vector<DgcTensor> tensors, DgcOptions options, size_t d)
    : tensors_(std::move(tensors)),
      options_(std::move(options)),
      momentum_(d, 0.0f),
      velocity_(d, 0.0f) {}

float DgcCompressor::NextMomentum(float u, float g) const {
  const float m = options_.momentum;
  return options_.nesterov ? m * (u + g) : m * u + g;
}

float DgcClipScale(absl::Span<const float> g, double clip_norm) {
  if (!(clip_norm > 0.0)) return 1.0f;
  // Squares of float32 values are exact in double; summed in index order.
  double sum = 0.0;
  for (float x : g) sum += static_cast<double>(x) * static_cast<double>(x);
  const double norm = std::sqrt(sum);
  if (!(norm > clip_norm)) return 1.0f;
  return static_cast<float>(clip_norm / norm);
}

bool DgcCompressor::Compressed(const DgcTensor& t) const {
  return t.ndim > 1 || options_.compress_1d;
}

absl::Status DgcCompressor::Compress(absl::Span<const float> update, std::string* payload,
                                     CodecSpec* spec) {
  const size_t d = dim();
  if (update.size() != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("DGC: the update has ", update.size(), " entries, the model ", d));
  }
  for (size_t j = 0; j < d; ++j) {
    if (!std::isfinite(update[j])) {
      return absl::InvalidArgumentError(
          absl::StrCat("DGC: g[", j, "] = ", update[j], ": the update must be finite"));
    }
  }
  // Clipping of the whole update (g ← g · min(1, C / ‖g‖₂)), into clipped_.
  absl::Span<const float> g = update;
  const float scale = DgcClipScale(update, options_.clip_norm);
  if (scale != 1.0f) {
    clipped_.resize(d);
    for (size_t j = 0; j < d; ++j) clipped_[j] = update[j] * scale;
    g = clipped_;
  }
  // The next v of the compressed entries, into scratch_ (u, v untouched
  // until the payload exists).
  scratch_.resize(d);
  for (const DgcTensor& t : tensors_) {
    if (!Compressed(t)) continue;
    for (uint64_t j = t.offset; j < t.offset + t.size; ++j) {
      const float u = NextMomentum(momentum_[j], g[j]);
      const float v = options_.nesterov ? (velocity_[j] + u) + g[j] : velocity_[j] + u;
      if (!std::isfinite(u) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat("DGC: the momentum or velocity of entry ", j,
                                                       " overflows float32 (g[j] = ", g[j],
                                                       "); Reset() to start over"));
      }
      scratch_[j] = v;
    }
  }
  const double ratio = DgcCompressRatio(options_, step_);
  indices_.clear();
  values_.clear();
  for (const DgcTensor& t : tensors_) Select(t, g, ratio);
  const CodecSpec wire = WireSpec(options_, indices_.size());
  TALLY_RETURN_IF_ERROR(EncodeSparse(wire, indices_, values_, d, payload));
  Commit(g);
  ++step_;
  *spec = wire;
  return absl::OkStatus();
}

void DgcCompressor::Select(const DgcTensor& t, absl::Span<const float> g, double ratio) {
  const uint64_t begin = t.offset;
  const uint64_t end = t.offset + t.size;
  if (!Compressed(t)) {
    for (uint64_t j = begin; j < end; ++j) {
      indices_.push_back(j);
      values_.push_back(g[j]);
    }
    return;
  }
  const float* v = scratch_.data();
  const double want = std::ceil(static_cast<double>(t.size) * ratio);  // >= 1: ratio > 0.
  const uint64_t k = want >= static_cast<double>(t.size) ? t.size : static_cast<uint64_t>(want);
  // The k-th largest |v| (threshold) and how many entries equal to it fit.
  uint32_t threshold = 0;
  uint64_t take_equal = t.size;
  if (k < t.size) {
    keys_.resize(t.size);
    for (uint64_t j = begin; j < end; ++j) keys_[j - begin] = AbsKey(v[j]);
    std::nth_element(keys_.begin(), keys_.begin() + (k - 1), keys_.end(), std::greater<uint32_t>());
    threshold = keys_[k - 1];
    uint64_t above = 0;
    for (uint64_t j = begin; j < end; ++j) above += AbsKey(v[j]) > threshold ? 1 : 0;
    take_equal = k - above;
  }
  for (uint64_t j = begin; j < end; ++j) {
    const uint32_t key = AbsKey(v[j]);
    if (key < threshold || (key == threshold && take_equal == 0)) continue;
    if (key == threshold) --take_equal;  // Ties: the lowest indices.
    indices_.push_back(j);
    values_.push_back(v[j]);
  }
}

void DgcCompressor::Commit(absl::Span<const float> g) {
  size_t sent = 0;  // Walks indices_ / values_ alongside the tensors.
  for (const DgcTensor& t : tensors_) {
    const uint64_t end = t.offset + t.size;
    if (!Compressed(t)) {
      sent += t.size;
      continue;
    }
    for (uint64_t j = t.offset; j < end; ++j) {
      momentum_[j] = NextMomentum(momentum_[j], g[j]);
      velocity_[j] = scratch_[j];
    }
    for (; sent < indices_.size() && indices_[sent] < end; ++sent) {
      const uint64_t j = indices_[sent];
      if (options_.momentum_masking) momentum_[j] = 0.0f;
      // What the server decodes: v_j, or v_j rounded to float16.
      const float decoded =
          options_.half_values ? HalfBitsToFloat(FloatToHalfBits(values_[sent])) : values_[sent];
      velocity_[j] -= decoded;
    }
  }
}

void DgcCompressor::Reset() {
  std::fill(momentum_.begin(), momentum_.end(), 0.0f);
  std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  step_ = 0;
}

}  // namespace tally::compress
