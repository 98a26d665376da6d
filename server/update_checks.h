// The checks every update passes whatever the sink or driver (pure
// functions): its header against the model and limits, each chunk's shape,
// the values' range, the decoding of a compressed payload. Errors are
// INVALID_ARGUMENT / RESOURCE_EXHAUSTED with *reason for the metrics.
#ifndef TALLY_SERVER_UPDATE_CHECKS_H_
#define TALLY_SERVER_UPDATE_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compress/codec.h"
#include "core/model_layout.h"
#include "server/coordinator_types.h"
#include "server/reject_reason.h"

namespace tally::server {

// What the checks read (from the plan: limits.* and compression.upload).
struct UpdateLimits {
  uint64_t max_update_bytes = 0;
  uint64_t max_num_samples = 0;
  uint32_t max_chunk_bytes = 0;
  float max_abs_value = 0;
  const std::vector<compress::CodecSpec>* codecs = nullptr;  // compression.upload.
};

// The header after the session, id and duplicate checks: the codec is one
// this server accepts, the layout is the model's, payload_bytes fits the
// codec and limits.max_update_bytes, num_samples is in [1, max_num_samples].
absl::Status CheckUpdateHeader(const UpdateHeaderInfo& h, const ModelLayout& layout,
                               const UpdateLimits& limits, RejectReason* reason);

// A chunk of `size` bytes at `byte_offset` of an upload that has `received`
// of `payload_bytes` bytes: in order, 1 .. max_chunk_bytes (whole float32
// values when `streamed`), not past the payload.
absl::Status CheckChunkShape(uint64_t received, uint64_t payload_bytes, bool streamed,
                             uint64_t byte_offset, size_t size, uint32_t max_chunk_bytes,
                             RejectReason* reason);

// Whether the `count` floats at `bytes` are finite and within `max_abs`;
// if not, INVALID_ARGUMENT naming the first bad parameter (`first` + its
// index) and *reason (non_finite or value_range).
absl::Status CheckValues(const char* bytes, size_t count, uint64_t first, float max_abs,
                         RejectReason* reason);

// Decodes a whole compressed payload into `target` and checks it as
// CheckValues (on error *reason: malformed, non_finite or value_range, and
// `target` holds garbage).
absl::Status DecodeChecked(const compress::CodecSpec& codec, absl::string_view payload,
                           float max_abs, absl::Span<float> target, RejectReason* reason);

}  // namespace tally::server

#endif  // TALLY_SERVER_UPDATE_CHECKS_H_
