// RunFederation: the tally-sim demo over real gRPC. One thread per simulated
// client, each with its own tally::Client, trains on its own shard of the
// synthetic data whenever the server hands it a task; the calling thread
// watches for new global model versions, evaluates each on the test set and
// reports a line per round.
//
// Knows nothing about how the server was started: it only needs its address.
// Not thread-safe; call from one thread.
#ifndef TALLY_SIM_FEDERATION_H_
#define TALLY_SIM_FEDERATION_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sim/attacks.h"
#include "sim/local_training.h"
#include "sim/report.h"
#include "sim/softmax_model.h"
#include "sim/synthetic_data.h"

namespace tally::sim {

struct FederationOptions {
  std::string target;            // Server address, "host:port".
  int max_rounds = 30;           // Stop after this many rounds (or at the server's DONE).
  TrainOptions train;            // Local training; train.seed is the run's base seed.
  size_t chunk_bytes = 1 << 20;  // Upload chunk size (the server may cap it).
  // Round lines go here (flushed per line); null = nowhere.
  std::FILE* out = stdout;
  // Live "\r"-updated progress line goes here; null = none.
  std::FILE* progress = nullptr;
  // How often the progress line is refreshed while a round runs.
  absl::Duration progress_interval = absl::Milliseconds(200);
  // Byzantine clients: the first `byzantine` clients run `attack` (see
  // sim/attacks.h). Each trains honestly first (on flipped labels for
  // label_flip); for alie/ipm the honest mean/std is estimated from all
  // Byzantine clients' honest deltas of the round, which each Byzantine client
  // recomputes deterministically (they collude, so no barrier is needed).
  int byzantine = 0;
  Attack attack = Attack::kNone;
  // num_clients / num_byzantine (for ALIE's z) are filled in when 0.
  AttackOptions attack_options;
  // Compressed uploads: the codecs every simulated client offers at Join
  // (ClientOptions::upload_codecs, e.g. {"topk"}; empty = float32 only) and
  // whether it keeps an error-feedback residual. The server assigns the
  // codec and its parameters (its compression.upload config).
  std::vector<std::string> upload_codecs;
  bool error_feedback = true;
  // Evaluate every round: a client starts training for round r only once the
  // driver has evaluated round r - 1's model. Otherwise a round may be
  // published before the driver looks, and one record covers several rounds
  // (RoundRecord::rounds_covered). Costs one evaluation per round of wall
  // time; for servers that wait for every client in every round.
  bool evaluate_every_round = false;
  // Non-zero: every client's SDK seed derives from it (and its id), so that
  // update ids, and the qsgd / randk codec seeds derived from them, repeat
  // from run to run. Only against a server that has not seen these ids
  // before (a fresh one): a server deduplicates by (client id, update id).
  // 0 (default): random.
  uint64_t sdk_seed = 0;
};

struct FederationResult {
  std::vector<RoundRecord> rounds;  // rounds[0] is the initial model.
  absl::Duration total_time;        // From round 0's evaluation to the last round.
  bool server_done = false;         // The server reported DONE.
  // Byzantine pushes the server refused with INVALID_ARGUMENT (e.g. the NaN
  // sender's): expected, counted, and the client carries on.
  int rejected_updates = 0;
  // The upload codec the server assigned at Join (the first client's; they
  // all offer the same codecs).
  std::string upload_codec = "float32";
  // Sum of PushResult::payload_bytes (update bytes sent, after compression)
  // over the pushes the server acknowledged, and their number.
  uint64_t upload_payload_bytes = 0;
  uint64_t updates_pushed = 0;

  // Mean upload per update: upload_payload_bytes / updates_pushed (0 if none).
  double UploadBytesPerUpdate() const;
};

// The client_id of client `index` ("sim-client-007"); clients 0 ..
// byzantine - 1 are the Byzantine ones.
std::string SimClientId(int index);

// Runs the federation with data.clients.size() clients (INVALID_ARGUMENT if
// options.byzantine is negative or more than that). FAILED_PRECONDITION if
// the server's model is not `model`'s layout; any client's or the observer's
// error ends the run and is returned.
absl::StatusOr<FederationResult> RunFederation(const FederationOptions& options,
                                               const SoftmaxRegression& model,
                                               const FederatedData& data);

}  // namespace tally::sim

#endif  // TALLY_SIM_FEDERATION_H_
