// The payload side of the two chunked transfers: ModelAssembler rebuilds a
// PullModel stream (full models and deltas) into a Model; BuildUpdateHeader fills the first message
// of a PushUpdate stream. Internal to client/ (not installed).
#ifndef TALLY_CLIENT_MODEL_STREAM_H_
#define TALLY_CLIENT_MODEL_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "compress/codec.h"
#include "tally/client.h"
#include "tally/v1/tally.pb.h"

namespace tally {
namespace client_internal {

// A model this client holds on the server's delta chain: what a delta
// segment may start from.
struct HeldModel {
  uint64_t version = 0;
  uint64_t chain_id = 0;
  std::vector<float> params;
};

// Checks and decodes the messages of one PullModel stream, in order, into a
// Model: segments (tally.proto's ModelHeader) each a header, then data chunks
// at contiguous offsets. Full segments are decoded; deltas are added to the
// model so far (the held model for the first) and rounded by P, the
// `download` codec's precision, exactly as the server does. The header must
// name the joined layout, a codec with valid parameters, and a payload no
// larger than that codec's largest encoding (dense float32: exactly
// 4 * num_params).
//
// Not thread-safe; one per stream. Writes only into `*model`, which it does
// not own and which must outlive it, as must `held` (may be null).
class ModelAssembler {
 public:
  ModelAssembler(const ModelInfo& joined, const compress::CodecSpec& download,
                 const HeldModel* held, Model* model)
      : joined_(joined), download_(download), held_(held), model_(model) {}

  // The first error found in `chunk` (FAILED_PRECONDITION for a layout that
  // differs from the joined one, DATA_LOSS for a malformed stream or
  // payload, UNIMPLEMENTED for an unknown codec); the stream should then be
  // cancelled.
  absl::Status Add(const v1::ModelChunk& chunk);

  // After the stream ended cleanly: DATA_LOSS unless it held at least one
  // segment and the last one was whole.
  absl::Status Complete() const;

  // The last segment's delta_base / chain_id (the model may be held for
  // the next pull's deltas).
  bool delta_base() const { return delta_base_; }
  uint64_t chain_id() const { return chain_id_; }

 private:
  absl::Status AddHeader(const v1::ModelHeader& header);
  // The segment's payload is complete: decode it into the model.
  absl::Status FinishSegment();

  const ModelInfo& joined_;
  const compress::CodecSpec download_;
  const HeldModel* const held_;
  Model* const model_;
  bool in_segment_ = false;    // A header arrived; its payload is incomplete.
  bool have_model_ = false;    // model_->params hold model_->version.
  compress::CodecSpec codec_;  // Of the current segment.
  bool delta_ = false;
  bool direct_ = false;  // Dense float32 full model: chunks go straight into params.
  std::string payload_;
  uint64_t expected_bytes_ = 0;
  uint64_t received_bytes_ = 0;
  bool delta_base_ = false;
  uint64_t chain_id_ = 0;
};

// The header of an upload of `update` (dense float32, whole model).
v1::UpdateHeader BuildUpdateHeader(const std::string& client_id, const std::string& session_token,
                                   const ModelInfo& model, const Update& update,
                                   const std::string& update_id);

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_MODEL_STREAM_H_
