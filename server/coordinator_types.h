// The values the Coordinator and its parts exchange with the RPC edge and
// with each other: a session, a task, an update's header, a commit. Plain
// structs, no gRPC and no protos (server/service.cc translates them).
#ifndef TALLY_SERVER_COORDINATOR_TYPES_H_
#define TALLY_SERVER_COORDINATOR_TYPES_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "compress/codec.h"

namespace tally::v1 {
class Task;
}

namespace tally::server {

struct SessionInfo {
  std::string token;
  uint64_t model_version = 0;
};

struct TaskInfo {
  enum class Kind { kTrain, kWait, kDone, kEvaluate };
  Kind kind = Kind::kWait;
  uint64_t round = 0;
  uint64_t model_version = 0;
  uint32_t local_steps = 0;
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration retry_after = absl::ZeroDuration();
  // kEvaluate: the whole task, as the workflow wrote it (server/workflow.h).
  std::shared_ptr<const tally::v1::Task> evaluate;
};

using TaskCallback = std::function<void(absl::StatusOr<TaskInfo>)>;

// What an update's first message declares (already decoded from the wire).
struct UpdateHeaderInfo {
  std::string client_id;
  std::string session_token;
  std::string update_id;
  uint64_t base_version = 0;
  uint64_t round = 0;
  uint64_t num_samples = 0;
  uint32_t local_steps = 0;  // Informational (the schedule uses its own plan).
  int codec_id = 0;          // As sent, for messages.
  bool codec_known = false;  // codec_id is a codec this build has; `codec` holds it.
  compress::CodecSpec codec;
  uint64_t layout_hash = 0;
  uint64_t num_params = 0;
  uint64_t payload_bytes = 0;
  // The header's fit metrics, already checked (Workflow::CheckMetrics).
  std::map<std::string, double> metrics;
};

struct CommitInfo {
  uint64_t round = 0;
  uint64_t model_version = 0;
  // Sync: updates accepted in the round so far. Asynchronous schedules:
  // updates accepted and not yet applied (buffered or queued).
  uint32_t accepted_in_round = 0;
  uint64_t staleness = 0;  // Asynchronous schedules: the staleness charged.
};

// Central DP's ledger (server/privacy_state.h), for the status, the metrics
// and the log line.
struct PrivacyProgress {
  bool central = false;
  double epsilon = 0;
  int order = 0;
  double delta = 0;
  uint64_t steps = 0;
  double target_epsilon = 0;
  double clip_norm = 0;
};

struct CoordinatorStatus {
  uint64_t model_version = 0;
  uint64_t round = 0;
  uint64_t rounds_completed = 0;
  uint64_t rounds_failed = 0;
  uint32_t connected_clients = 0;
  uint32_t updates_in_round = 0;
  uint32_t uploads_in_flight = 0;
  uint64_t updates_accepted = 0;
  uint64_t bytes_received = 0;
  bool done = false;
  absl::Duration last_round_duration;
  // Model-sized buffers allocated so far (the pool recycles them; this stops
  // growing once the pool is warm).
  uint64_t buffer_allocations = 0;
  uint64_t checkpoint_version = 0;  // Newest version written (or restored); 0: none.
  PrivacyProgress privacy;  // Central DP only (privacy.central).
};

}  // namespace tally::server

#endif  // TALLY_SERVER_COORDINATOR_TYPES_H_
