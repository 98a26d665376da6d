// EncodedModel: the PullModel stream of one model version, encoded once and
// shared by every puller: a header message, then chunk messages whose payload
// slices point straight into the immutable ModelSnapshot (each slice holds a
// reference to it), so no puller costs an encode or a copy of the model. For
// the dense float32 codec the snapshot's parameter array is the payload.
//
// Immutable once built; safe to share across threads.
#ifndef TALLY_SERVER_ENCODED_MODEL_H_
#define TALLY_SERVER_ENCODED_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/model_store.h"
#include "core/sync.h"
#include "grpcpp/support/byte_buffer.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {

struct EncodedModel {
  uint64_t version = 0;
  // messages[0] is ModelChunk{header}; messages[i > 0] are data chunks whose
  // payload sizes are chunk_bytes[i].
  std::vector<grpc::ByteBuffer> messages;
  std::vector<size_t> chunk_bytes;
};

std::shared_ptr<const EncodedModel> EncodeModel(std::shared_ptr<const ModelSnapshot> snapshot,
                                                const tally::v1::ModelSpec& spec,
                                                size_t chunk_bytes);

// Keeps the encoding of the newest version pulled. Thread-safe.
class EncodedModelCache {
 public:
  EncodedModelCache(tally::v1::ModelSpec spec, size_t chunk_bytes)
      : spec_(std::move(spec)), chunk_bytes_(chunk_bytes) {}

  std::shared_ptr<const EncodedModel> Get(std::shared_ptr<const ModelSnapshot> snapshot)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const tally::v1::ModelSpec spec_;
  const size_t chunk_bytes_;
  tally::Mutex mu_;
  std::shared_ptr<const EncodedModel> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::server

#endif  // TALLY_SERVER_ENCODED_MODEL_H_
