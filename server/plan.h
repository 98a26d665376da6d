// The server's typed plan: what a validated ServerConfig means, as the
// options of each part (docs/server.md, "Parts and seams"). MakePlan is the
// one place the config proto is translated; ValidateConfig is its status.
// The Coordinator and its parts take these options, never the proto.
#ifndef TALLY_SERVER_PLAN_H_
#define TALLY_SERVER_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "aggregators/schedules/schedule.h"
#include "aggregators/step/aggregation_step.h"
#include "compress/codec.h"
#include "core/model_layout.h"
#include "server/admission.h"
#include "server/privacy_params.h"
#include "server/sessions.h"

namespace tally::v1 {
class ServerConfig;
}  // namespace tally::v1

namespace tally::server {

// What compression.download / download_delta configure.
struct DownloadCodecs {
  // Full-model codecs in order of preference (float32 is served besides).
  std::vector<compress::CodecSpec> full;
  std::optional<compress::CodecSpec> delta;  // None: no deltas.
  size_t delta_history = 8;
};

// Synchronous rounds (rounds.*, docs/rounds.md).
struct RoundPlan {
  uint32_t clients_per_round = 2;
  uint32_t min_clients = 1;
  double over_selection = 0;
  uint32_t selected_per_round = 2;  // clients_per_round plus over_selection of it.
  absl::Duration task_lease = absl::Seconds(60);
  absl::Duration round_timeout = absl::Seconds(60);
  uint32_t local_steps = 1;
  uint64_t total_rounds = 0;  // 0: unbounded. Also bounds asynchronous steps.
  std::string trusted_client;  // monna's trusted client (strategy.trusted_client).
};

// What an upload must satisfy (limits.*) and what may carry it.
struct UploadPlan {
  uint64_t max_update_bytes = 0;
  uint64_t max_num_samples = 0;
  uint32_t max_chunk_bytes = 0;
  float max_abs_value = 0;
  uint64_t undo_memory_bytes = 0;
  std::string spool_dir;
  // compression.upload, in order of preference (float32 is accepted besides).
  std::vector<compress::CodecSpec> codecs;
};

// Checkpoints and the end of a run.
struct PersistPlan {
  std::string checkpoint_dir;  // Empty: no checkpoints.
  absl::Duration checkpoint_interval;
  std::string final_model_path;  // Empty: none.
};

struct ServerPlan {
  ModelLayout layout;
  SessionLimits sessions;
  AdmissionOptions admission;
  UploadPlan uploads;
  RoundPlan rounds;
  // The aggregation step (rule, pre-steps, optimizer); robust: a rule other
  // than the streaming mean.
  aggregators::AggregationStepOptions step;
  bool robust = false;
  int rule_threads = 0;  // strategy.threads (robust rules).
  // Asynchronous schedule (schedule.name other than sync); none: rounds.
  std::optional<aggregators::ScheduleOptions> schedule;
  uint64_t max_staleness = 0;
  // Idle model-sized buffers the pool keeps (uploads, buffered updates,
  // aggregates and models in flight at once).
  size_t idle_buffers = 1;
  PersistPlan persist;
  bool relay = false;  // relay.upstream set: the upstream publishes.
  DownloadCodecs downloads;
  std::string strategy_label;  // "schedule/rule/optimizer", for GetStatus.
  // privacy { } with its defaults; central: the PrivateSink and the
  // PrivacyDriver run (server/private_sink.h, server/privacy_driver.h).
  PrivacyParams privacy;
};

// Checks a defaulted config (the error message starts with the field's
// name) and translates it. The only translation of the config's aggregation
// and admission parts.
absl::StatusOr<ServerPlan> MakePlan(const tally::v1::ServerConfig& config);

}  // namespace tally::server

#endif  // TALLY_SERVER_PLAN_H_
