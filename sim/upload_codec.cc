#include "sim/upload_codec.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tally::sim {

using compress::CodecId;

std::string UploadCodec::Name() const {
  const compress::CodecInfo* info = compress::FindCodec(spec.id);
  return info != nullptr ? info->name : absl::StrCat("codec ", static_cast<int>(spec.id));
}

std::string UploadCodec::Label() const {
  std::string label = Name();
  switch (spec.id) {
    case CodecId::kInt8:
      absl::StrAppend(&label, " (block ", spec.block_size, ")");
      break;
    case CodecId::kQsgd:
      absl::StrAppend(&label, " s=", spec.levels, " (block ", spec.block_size, ")");
      break;
    case CodecId::kSign:
      if (spec.block_size != 0) absl::StrAppend(&label, " (block ", spec.block_size, ")");
      break;
    case CodecId::kTopK:
    case CodecId::kRandK:
      if (spec.k != 0) {
        absl::StrAppend(&label, " k=", spec.k);
      } else {
        absl::StrAppendFormat(&label, " %g%%", spec.ratio * 100.0);
      }
      if (spec.half_values) absl::StrAppend(&label, " f16");
      if (spec.id == CodecId::kRandK && !spec.rescale) absl::StrAppend(&label, " biased");
      break;
    default:
      break;
  }
  if (spec.zstd) absl::StrAppend(&label, " + zstd");
  return label;
}

std::vector<UploadCodec> CodecCompareRuns() {
  auto run = [](CodecId id, bool error_feedback) {
    UploadCodec codec;
    codec.spec = compress::DefaultSpec(id);
    codec.error_feedback = error_feedback;
    return codec;
  };
  UploadCodec randk = run(CodecId::kRandK, true);
  randk.spec.rescale = false;
  return {run(CodecId::kFloat32, true), run(CodecId::kFloat16, true), run(CodecId::kBfloat16, true),
          run(CodecId::kInt8, true),    run(CodecId::kQsgd, false),   run(CodecId::kSign, true),
          run(CodecId::kTopK, true),    run(CodecId::kTopK, false),   randk};
}

namespace {

// Whole numbers as such, means of varying sizes (randk) with one decimal.
std::string FormatByteCount(double bytes) {
  if (bytes == std::floor(bytes)) return absl::StrFormat("%.0f", bytes);
  return absl::StrFormat("%.1f", bytes);
}

std::string FormatRow(const CodecCompareRow& row, const CodecCompareRow& baseline) {
  const bool lossless = row.codec.spec.id == CodecId::kFloat32;
  std::string out = absl::StrFormat("| %s | %s |", row.codec.Label(),
                                    lossless ? "–" : (row.codec.error_feedback ? "on" : "off"));
  if (!row.ok) return out + " error | | | | |\n";
  const bool compared = baseline.ok && row.upload_bytes_per_update > 0;
  absl::StrAppendFormat(
      &out, " %s | %s | %.4f | %s | %s |\n", FormatByteCount(row.upload_bytes_per_update),
      compared
          ? absl::StrFormat("%.1f×", baseline.upload_bytes_per_update / row.upload_bytes_per_update)
          : "–",
      row.final_accuracy,
      baseline.ok ? absl::StrFormat("%+.2f", 100 * (row.final_accuracy - baseline.final_accuracy))
                  : "–",
      row.rounds_to_target >= 0 ? absl::StrCat(row.rounds_to_target) : "never");
  return out;
}

}  // namespace

std::string FormatCodecCompareTable(absl::Span<const CodecCompareRow> rows,
                                    const CodecCompareRow& baseline, double target_accuracy) {
  std::string out = absl::StrFormat(
      "| codec | error feedback | upload bytes/client/round | fewer bytes than float32 | final "
      "accuracy | Δ accuracy vs float32 (points) | rounds to %.2f |\n"
      "|---|---|---|---|---|---|---|\n",
      target_accuracy);
  for (const CodecCompareRow& row : rows) out += FormatRow(row, baseline);
  return out;
}

}  // namespace tally::sim
