// EncodedClient: the few Aggregator calls tally-bench needs to push updates
// that were compressed before the measurement began.
//
// The SDK (tally/client.h) encodes inside PushUpdate, so a benchmark through
// it would time the client's encoder (top-k selection over 10M floats costs
// ~90 ms) on the same cores as the server. This client pushes a ready
// payload instead: Join offering one codec, GetTask, PushUpdate of the
// payload with its codec header, Leave. Plaintext only, no TLS or tokens; a
// push is retried (same update id) on RESOURCE_EXHAUSTED and UNAVAILABLE.
// For benchmarks only; applications use the SDK.
//
// Thread-compatible: one per client thread.
#ifndef TALLY_BENCH_ENCODED_CLIENT_H_
#define TALLY_BENCH_ENCODED_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "compress/codec.h"
#include "tally/client.h"

namespace tally::bench {

// The text-proto `compression { ... }` block of a ServerConfig that accepts
// uploads in `spec` (its parameters sent to the clients at Join).
std::string CompressionConfigText(const compress::CodecSpec& spec);

class EncodedClient {
 public:
  // A channel to `target` ("host:port"), on a TCP connection of its own if
  // `own_connection` (ClientOptions::own_connection); nothing is sent yet.
  static absl::StatusOr<std::unique_ptr<EncodedClient>> Create(const std::string& target,
                                                               const std::string& client_id,
                                                               size_t chunk_bytes,
                                                               bool own_connection = false);
  virtual ~EncodedClient() = default;

  // Opens a session offering `codec`'s id. FAILED_PRECONDITION if the server
  // assigns another codec (it does not accept this one).
  virtual absl::StatusOr<JoinResult> Join(const compress::CodecSpec& codec) = 0;
  virtual absl::StatusOr<Task> GetTask(absl::Duration wait) = 0;
  // Pulls the model at `version` as float32 and returns the bytes of model
  // payload received (its chunks are counted, not decoded).
  virtual absl::StatusOr<uint64_t> Pull(uint64_t version) = 0;
  // Pushes `payload`, which must be an encoding in `spec` of a delta of the
  // joined model's size, for `round` from `base_version` with weight 1.
  // PushResult::payload_bytes is payload.size().
  virtual absl::StatusOr<PushResult> Push(uint64_t round, uint64_t base_version,
                                          const compress::CodecSpec& spec,
                                          absl::string_view payload) = 0;
  virtual absl::Status Leave() = 0;
};

}  // namespace tally::bench

#endif  // TALLY_BENCH_ENCODED_CLIENT_H_
