// The Aggregator messages that tally-bench's own clients (EncodedClient and
// the callback driver) send and read, built and checked in one place.
// Internal to bench/.
#ifndef TALLY_BENCH_BENCH_MESSAGES_H_
#define TALLY_BENCH_BENCH_MESSAGES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "compress/codec.h"
#include "grpcpp/support/status.h"
#include "tally/client.h"
#include "tally/v1/tally.pb.h"

namespace tally::bench {

// What a bench client keeps of its session.
struct BenchSession {
  std::string client_id;
  std::string token;
  uint64_t layout_hash = 0;
  uint64_t num_params = 0;
  size_t chunk_bytes = 0;  // The upload chunk size, capped by the server at Join.
};

// `status` as an absl::Status whose message names `rpc`.
absl::Status FromGrpc(absl::string_view rpc, const grpc::Status& status);

// Join offering dense float32 and `codec`.
v1::JoinRequest JoinRequestFor(const std::string& client_id, const compress::CodecSpec& codec);
// FAILED_PRECONDITION unless the server assigned `codec`; fills in the
// token, the layout and the chunk size of `session` (client_id and
// chunk_bytes already set).
absl::StatusOr<JoinResult> JoinResultFrom(const v1::JoinResponse& response,
                                          const compress::CodecSpec& codec,
                                          BenchSession* session);

v1::GetTaskRequest GetTaskRequestFor(const BenchSession& session, absl::Duration wait);
Task TaskFrom(const v1::Task& task);

// A pull of the float32 model at `version` (0 = latest).
v1::PullModelRequest PullRequestFor(const BenchSession& session, uint64_t version);

// The header of a push of `payload_bytes` bytes in `spec` with weight 1.
v1::UpdateHeader UpdateHeaderFor(const BenchSession& session, std::string update_id,
                                 uint64_t round, uint64_t base_version,
                                 const compress::CodecSpec& spec, size_t payload_bytes);

v1::LeaveRequest LeaveRequestFor(const BenchSession& session);

// A prefix of update ids that does not repeat across runs against one
// server (which deduplicates by client and update id).
std::string RandomUpdateIdPrefix();

}  // namespace tally::bench

#endif  // TALLY_BENCH_BENCH_MESSAGES_H_
