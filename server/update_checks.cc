#include "server/update_checks.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/vector_ops.h"

namespace tally::server {
namespace {

absl::Status CheckCodec(const UpdateHeaderInfo& h, size_t num_params,
                        const std::vector<compress::CodecSpec>& codecs) {
  if (!h.codec_known) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", h.codec_id, " is not one this server knows"));
  }
  const compress::CodecInfo* info = compress::FindCodec(h.codec.id);
  bool accepted = h.codec.id == compress::CodecId::kFloat32;
  for (const compress::CodecSpec& spec : codecs) accepted |= spec.id == h.codec.id;
  if (!accepted) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", info->name,
                     " is not accepted here: use the one Join assigned (the server "
                     "accepts float32 and its compression.upload codecs)"));
  }
  if (absl::Status valid = compress::ValidateSpec(h.codec, num_params); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("codec_params: ", valid.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckPayloadBytes(const UpdateHeaderInfo& h, size_t d, uint64_t max_update_bytes) {
  if (!compress::IsPlainFloat32(h.codec)) {
    const uint64_t most = compress::MaxEncodedBytes(h.codec, d);
    if (h.payload_bytes == 0 || h.payload_bytes > most) {
      return absl::InvalidArgumentError(
          absl::StrCat("payload_bytes is ", h.payload_bytes, ", a ",
                       compress::FindCodec(h.codec.id)->name, " update of ", d,
                       " parameters takes 1 .. ", most));
    }
  } else if (h.payload_bytes != 4 * d) {
    return absl::InvalidArgumentError(absl::StrCat("payload_bytes is ", h.payload_bytes,
                                                   ", a dense float32 update of ", d,
                                                   " parameters is ", 4 * d));
  }
  if (h.payload_bytes > max_update_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("payload_bytes ", h.payload_bytes,
                     " exceeds the server's limits.max_update_bytes = ", max_update_bytes,
                     " (not worth retrying: raise the limit or compress more)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckUpdateHeader(const UpdateHeaderInfo& h, const ModelLayout& layout,
                               const UpdateLimits& limits, RejectReason* reason) {
  *reason = RejectReason::kMalformed;
  TALLY_RETURN_IF_ERROR(CheckCodec(h, layout.NumParams(), *limits.codecs));
  if (h.layout_hash != layout.Hash() || h.num_params != layout.NumParams()) {
    *reason = RejectReason::kLayoutMismatch;
    return absl::InvalidArgumentError(absl::StrCat(
        "model layout mismatch: update has hash ", absl::Hex(h.layout_hash), " and ",
        h.num_params, " parameters, the server's model has hash ", absl::Hex(layout.Hash()),
        " and ", layout.NumParams()));
  }
  *reason = RejectReason::kLength;
  TALLY_RETURN_IF_ERROR(CheckPayloadBytes(h, layout.NumParams(), limits.max_update_bytes));
  if (h.num_samples == 0 || h.num_samples > limits.max_num_samples) {
    *reason = RejectReason::kMalformed;
    return absl::InvalidArgumentError(absl::StrCat(
        "num_samples must be in [1, ", limits.max_num_samples, "], got ", h.num_samples));
  }
  return absl::OkStatus();
}

absl::Status CheckChunkShape(uint64_t received, uint64_t payload_bytes, bool streamed,
                             uint64_t byte_offset, size_t size, uint32_t max_chunk_bytes,
                             RejectReason* reason) {
  if (byte_offset != received) {
    *reason = RejectReason::kChunkOrder;
    return absl::InvalidArgumentError(
        absl::StrCat("chunk offset ", byte_offset, ", expected ", received));
  }
  if (size == 0 || (streamed && size % 4 != 0) || size > max_chunk_bytes) {
    *reason = RejectReason::kMalformed;
    return absl::InvalidArgumentError(
        streamed ? absl::StrCat("chunk of ", size, " bytes: chunks must hold 1 .. ",
                                max_chunk_bytes / 4, " whole float32 values")
                 : absl::StrCat("chunk of ", size, " bytes: chunks must hold 1 .. ",
                                max_chunk_bytes, " bytes"));
  }
  if (received + size > payload_bytes) {
    *reason = RejectReason::kLength;
    return absl::InvalidArgumentError(
        absl::StrCat("update is longer than its declared payload_bytes ", payload_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckValues(const char* bytes, size_t count, uint64_t first, float max_abs,
                         RejectReason* reason) {
  if (AllWithinBytes(bytes, count, max_abs)) return absl::OkStatus();
  const size_t bad = FirstOutsideBytes(bytes, count, max_abs);
  float value;
  std::memcpy(&value, bytes + 4 * bad, 4);
  if (!std::isfinite(value)) {
    *reason = RejectReason::kNonFinite;
    return absl::InvalidArgumentError(
        absl::StrCat("non-finite value (NaN or Inf) at parameter ", first + bad));
  }
  *reason = RejectReason::kValueRange;
  return absl::InvalidArgumentError(absl::StrCat("value ", value, " at parameter ", first + bad,
                                                 " exceeds limits.max_abs_value ", max_abs));
}

absl::Status DecodeChecked(const compress::CodecSpec& codec, absl::string_view payload,
                           float max_abs, absl::Span<float> target, RejectReason* reason) {
  *reason = RejectReason::kMalformed;
  TALLY_RETURN_IF_ERROR(compress::Decode(codec, payload, target));
  return CheckValues(reinterpret_cast<const char*>(target.data()), target.size(), 0, max_abs,
                     reason);
}

}  // namespace tally::server
