#include "compress/error_feedback.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::compress {

bool ErrorFeedbackSuits(const CodecSpec& spec) {
  switch (spec.id) {
    case CodecId::kFloat16:
    case CodecId::kBfloat16:
    case CodecId::kInt8:
    case CodecId::kSign:
    case CodecId::kTopK:
      return true;
    case CodecId::kRandK:
      return !spec.rescale;
    default:
      return false;
  }
}

ErrorFeedback::ErrorFeedback(size_t d, ErrorFeedbackOptions options)
    : options_(options), residual_(d, 0.0f) {}

absl::Status ErrorFeedback::Compress(const CodecSpec& spec, absl::Span<const float> x,
                                     std::string* payload) {
  if (!options_.enabled) return CompressPending(spec, x, payload, nullptr);
  const absl::Status compressed = CompressPending(spec, x, payload, &scratch_);
  if (compressed.ok()) residual_.swap(scratch_);
  return compressed;
}

absl::Status ErrorFeedback::CompressPending(const CodecSpec& spec, absl::Span<const float> x,
                                            std::string* payload, std::vector<float>* next) const {
  if (x.size() != residual_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback: the update has ", x.size(),
                                                   " entries, the residual ", residual_.size()));
  }
  if (!options_.enabled) {
    if (next != nullptr) next->assign(x.size(), 0.0f);
    return Encode(spec, x, payload);
  }
  std::vector<float>& p = *next;
  p.resize(x.size());
  for (size_t j = 0; j < x.size(); ++j) p[j] = x[j] + residual_[j];
  const absl::Status encoded = Encode(spec, p, payload);
  if (!encoded.ok()) return encoded;
  const CodecInfo* info = FindCodec(spec.id);  // Valid: Encode checked the spec.
  if (info->lossless) {
    std::fill(p.begin(), p.end(), 0.0f);
    return absl::OkStatus();
  }
  // e = p + (−1)·Decode(payload), which DecodeAccumulate computes exactly as
  // p − Decode(payload) (negation is exact), without a dense temporary for
  // the sparse codecs.
  const absl::Status decoded = DecodeAccumulate(spec, *payload, -1.0f, absl::MakeSpan(p));
  if (!decoded.ok()) {  // Our own encoder's output: cannot happen.
    return absl::InternalError(
        absl::StrCat("error feedback: decoding our own payload failed: ", decoded.message()));
  }
  return absl::OkStatus();
}

absl::Status ErrorFeedback::Adopt(std::vector<float> residual) {
  if (residual.size() != residual_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback: adopting ", residual.size(),
                                                   " entries, the residual has ",
                                                   residual_.size()));
  }
  residual_ = std::move(residual);
  return absl::OkStatus();
}

void ErrorFeedback::Reset() { std::fill(residual_.begin(), residual_.end(), 0.0f); }

}  // namespace tally::compress
