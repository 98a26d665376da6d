// The PullModel side of the server: every answer is built from segments (a
// header message, then data chunks; tally.proto's ModelHeader) that are
// encoded once per model version and download codec, and shared by every
// puller. For dense float32 the snapshot's parameter array is the payload
// (its slices hold a reference to the snapshot): no copy at all.
//
// Delta chains (compression.download_delta). For a download codec whose
// rounding P is a projection (float32, float16, bfloat16) the server keeps R,
// the model its delta clients hold, and for each new version v:
//   d = Decode(delta codec, Encode(delta codec, M_v - R))
//   R = P(R + d)            (float32 sum, then P)
// The delta segment carries the encoding of M_v - R, the full segment of v
// is R in the download codec (exact: R is on P's grid). A client applying
// the deltas does the same sums and so holds R bit for bit: whatever a lossy
// delta drops stays in M - R and goes out with a later delta, and the error
// never accumulates. A client further behind than the kept deltas, or one
// for which the chain would be larger than the full model, gets the full
// segment.
//
// Thread-safe. Memory per chain: R (4 bytes per parameter), its full
// encoding, and the kept deltas (at most the full model's size in all).
#ifndef TALLY_SERVER_ENCODED_MODEL_H_
#define TALLY_SERVER_ENCODED_MODEL_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "compress/codec.h"
#include "core/model_store.h"
#include "core/sync.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/config.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {

// One segment of a PullModel stream. Immutable once built.
struct ModelSegment {
  uint64_t version = 0;
  uint64_t base_version = 0;  // 0: a full model.
  compress::CodecId codec = compress::CodecId::kFloat32;
  uint64_t payload_bytes = 0;
  // messages[0] is ModelChunk{header}; messages[i > 0] are data chunks.
  std::vector<grpc::ByteBuffer> messages;
};

using SegmentList = std::vector<std::shared_ptr<const ModelSegment>>;

class ModelDownloads {
 public:
  ModelDownloads(tally::v1::ModelSpec spec, size_t chunk_bytes, DownloadCodecs codecs);

  // The segments answering a pull of `snapshot` in `codec` (CODEC_UNSPECIFIED
  // = float32), from the chain of `delta_codec` if set, for a client holding
  // `have_version` of chain `have_chain` (0 = nothing). INVALID_ARGUMENT for
  // a codec the server does not serve that way.
  absl::StatusOr<SegmentList> Get(std::shared_ptr<const ModelSnapshot> snapshot,
                                  tally::v1::Codec codec, tally::v1::Codec delta_codec,
                                  uint64_t have_version, uint64_t have_chain);

  // The codecs offered at Join, in order of preference (float32 not listed
  // unless configured), and the delta codec if any.
  const DownloadCodecs& codecs() const { return codecs_; }

 private:
  // The encodings of one (download codec, with or without deltas) pair.
  struct Channel {
    compress::CodecSpec full;
    std::optional<compress::CodecSpec> delta;  // Set: a delta chain.
    tally::Mutex mu;
    // The full segment of the newest version encoded.
    std::shared_ptr<const ModelSegment> current ABSL_GUARDED_BY(mu);
    // Delta chain: R and the version it stands for (null: not started or
    // reset), a random id per start, and the newest deltas, oldest first,
    // consecutive.
    std::shared_ptr<const std::vector<float>> recon ABSL_GUARDED_BY(mu);
    uint64_t recon_version ABSL_GUARDED_BY(mu) = 0;
    uint64_t chain_id ABSL_GUARDED_BY(mu) = 0;
    std::deque<std::shared_ptr<const ModelSegment>> deltas ABSL_GUARDED_BY(mu);
  };

  SegmentList Serve(Channel& channel, std::shared_ptr<const ModelSnapshot> snapshot,
                    uint64_t have_version, uint64_t have_chain) ABSL_LOCKS_EXCLUDED(channel.mu);
  // Encodes `snapshot`, the newest version, into the channel.
  void Advance(Channel& channel, const std::shared_ptr<const ModelSnapshot>& snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(channel.mu);
  absl::Status AdvanceChain(Channel& channel, const ModelSnapshot& snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(channel.mu);
  // A full segment of the exact model in the channel's codec (float32 if
  // that codec cannot hold it); delta_base stays unset.
  std::shared_ptr<const ModelSegment> PlainSegment(const Channel& channel,
                                                   const std::shared_ptr<const ModelSnapshot>& s);

  const tally::v1::ModelSpec spec_;
  const size_t chunk_bytes_;
  const DownloadCodecs codecs_;
  std::vector<std::unique_ptr<Channel>> channels_;  // Fixed after construction.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_ENCODED_MODEL_H_
