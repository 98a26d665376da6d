// The payload side of the two chunked transfers: ModelAssembler rebuilds a
// PullModel stream into a Model; BuildUpdateHeader fills the first message of
// a PushUpdate stream. Internal to client/ (not installed).
#ifndef TALLY_CLIENT_MODEL_STREAM_H_
#define TALLY_CLIENT_MODEL_STREAM_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "tally/client.h"
#include "tally/v1/tally.pb.h"

namespace tally {
namespace client_internal {

// Checks and copies the messages of one PullModel stream, in order, into a
// Model: the first message must be the header (dense float32, same layout hash
// and num_params as the session joined, payload_bytes == 4 * num_params), the
// rest data chunks at contiguous byte offsets.
//
// Not thread-safe; one per stream. Writes only into `*model`, which it does
// not own and which must outlive it.
class ModelAssembler {
 public:
  ModelAssembler(const ModelInfo& joined, Model* model) : joined_(joined), model_(model) {}

  // The first error found in `chunk` (FAILED_PRECONDITION for a layout that
  // differs from the joined one, DATA_LOSS for a malformed stream,
  // UNIMPLEMENTED for an unknown codec); the stream should then be cancelled.
  absl::Status Add(const v1::ModelChunk& chunk);

  // After the stream ended cleanly: DATA_LOSS unless the header and exactly
  // payload_bytes bytes were received.
  absl::Status Complete() const;

 private:
  absl::Status AddHeader(const v1::ModelHeader& header);

  const ModelInfo& joined_;
  Model* model_;
  bool have_header_ = false;
  uint64_t expected_bytes_ = 0;
  uint64_t received_bytes_ = 0;
};

// The header of an upload of `update` (dense float32, whole model).
v1::UpdateHeader BuildUpdateHeader(const std::string& client_id, const std::string& session_token,
                                   const ModelInfo& model, const Update& update,
                                   const std::string& update_id);

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_MODEL_STREAM_H_
