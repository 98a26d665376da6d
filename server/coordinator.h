// Coordinator: sessions, tasks and synchronous FedAvg rounds, independent of
// gRPC (the service layer in server/service.cc translates calls and streams
// into the methods below).
//
// Round life cycle (docs/rounds.md). Round r starts OPEN with base version
// v. GetTask hands a TRAIN task (round r, version v) to at most
// clients_per_round x (1 + over_selection) clients, each under a lease: a
// task no upload has used within rounds.task_lease_ms gives its slot back
// (that client gets no other task this round); the round deadline starts
// with the first task. Each PushUpdate is an Upload:
// BeginUpload checks the header, AddChunk folds each chunk into the round's
// exact weighted sum as it arrives (core/exact_sum.h: integers, so the sum
// does not depend on arrival order; O(model) memory for any number of
// uploads), FinishUpload commits it. The round closes when clients_per_round
// updates are committed (the surplus of over-selection still uploading is
// aborted, reason "surplus"), or at the deadline: in-flight uploads are then
// aborted and their partial sums subtracted exactly (UndoJournal replays
// their bytes with weight -w); with >= min_clients commits the
// optimizer applies the weighted mean and a new version is published,
// otherwise the round fails and the model is unchanged. Then round r+1 opens.
//
// Asynchronous schedules (config `schedule.name` fedasync, fedbuff, fedfix,
// fedcompass; aggregators/schedules/schedule.h). There are no rounds to
// join: GetTask asks the schedule for the client's plan (TRAIN with its local
// steps and deadline on the current model, or WAIT while its update waits in
// a FedCompass group or FedFix window, answered through the same long-poll
// waiters as rounds). An upload is received whole into a pooled model-sized
// buffer (validated as it arrives); FinishUpload computes its staleness —
// versions decided so far (published plus flushes queued for the worker)
// minus the base version, which must be a version the server gave this
// client (its task's version or a later one it pulled) — rejects it with
// ABORTED above schedule.max_staleness, and hands it to the schedule. The
// schedule's decisions are queued and executed in order by the worker thread
// (each flush: g = sum of weight * delta, or a robust rule over the flush's
// updates; the optimizer; one new version), which also runs the schedule's
// timers. No gRPC thread ever waits for a group or window.
//
// Thread safety: every method is thread-safe. AddChunk runs concurrently for
// different uploads; closing a round waits for running AddChunks. Closing and
// aggregation run on the coordinator's own worker thread, never on the
// caller's. Callbacks (task waiters) are invoked without internal locks held.
#ifndef TALLY_SERVER_COORDINATOR_H_
#define TALLY_SERVER_COORDINATOR_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "aggregators/optimizers/optimizer.h"
#include "aggregators/rules/rule.h"
#include "aggregators/rules/striped_accumulator.h"
#include "aggregators/schedules/schedule.h"
#include "aggregators/step/aggregation_step.h"
#include "compress/codec.h"
#include "core/buffer_pool.h"
#include "core/clock.h"
#include "core/model_store.h"
#include "core/sync.h"
#include "core/token_bucket.h"
#include "server/checkpoint.h"
#include "server/journal_pool.h"
#include "server/metrics.h"
#include "server/sessions.h"
#include "server/undo_journal.h"
#include "server/update_ledger.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

struct SessionInfo {
  std::string token;
  uint64_t model_version = 0;
};

struct TaskInfo {
  enum class Kind { kTrain, kWait, kDone };
  Kind kind = Kind::kWait;
  uint64_t round = 0;
  uint64_t model_version = 0;
  uint32_t local_steps = 0;
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration retry_after = absl::ZeroDuration();
};

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
};

struct CommitInfo {
  uint64_t round = 0;
  uint64_t model_version = 0;
  // Sync: updates accepted in the round so far. Asynchronous schedules:
  // updates accepted and not yet applied (buffered or queued).
  uint32_t accepted_in_round = 0;
  uint64_t staleness = 0;  // Asynchronous schedules: the staleness charged.
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
  // Asynchronous schedules: model-sized buffers allocated so far (the pool
  // recycles them; this stops growing once the pool is warm).
  uint64_t buffer_allocations = 0;
  uint64_t checkpoint_version = 0;  // Newest version written (or restored); 0: none.
};

class Coordinator;
struct RoundState;

// One PushUpdate in progress. Created by BeginUpload, owned by the caller;
// destroying an Upload that was neither finished nor aborted aborts it.
class Upload {
 public:
  ~Upload();
  Upload(const Upload&) = delete;
  Upload& operator=(const Upload&) = delete;

  const std::string& client_id() const { return header_.client_id; }
  uint64_t bytes_received() const { return received_; }

 private:
  friend class Coordinator;
  Upload() = default;

  Coordinator* coordinator_ = nullptr;
  std::shared_ptr<RoundState> round_;
  UpdateHeaderInfo header_;
  int64_t weight_ = 0;  // num_samples: the integer weight of the exact sum.
  uint64_t received_ = 0;
  // float32 without zstd: folded in chunk by chunk as it arrives. Any other
  // codec: `payload_` collects the bytes, decoded once whole at the commit.
  bool streamed() const { return compress::IsPlainFloat32(header_.codec); }
  std::string payload_;
  std::unique_ptr<UndoJournal> journal_;  // Streamed mean only.
  int row_ = -1;                          // Robust rules: the arena row.
  // Asynchronous schedules (round_ is null): the whole delta, from the pool.
  std::vector<float> buffer_;
  absl::Time started_;
  // ACTIVE -> COMMITTED | ABORTED; changed only under Coordinator::mu_ while
  // holding the round's gate.
  enum class State { kActive, kCommitted, kAborted };
  State state_ = State::kActive;
  RejectReason abort_reason_ = RejectReason::kCancelled;  // Once ABORTED.
};

class Coordinator {
 public:
  struct Options {
    tally::v1::ServerConfig config;  // Defaulted and validated.
    ModelLayout layout;
    std::vector<float> initial_params;
    uint64_t initial_version = 1;  // From a checkpoint, else 1.
    uint64_t initial_round = 0;    // Rounds completed before, from a checkpoint.
    bool restored = false;         // initial_version came from a checkpoint on disk.
    // Ids of the updates the restored model contains (duplicate detection
    // across restarts).
    AppliedUpdateIds applied_ids;
    // Optimizer state from a checkpoint; used if its name is the configured
    // optimizer's.
    OptimizerState optimizer_state;
    // Schedule state from a checkpoint; its client records go to the
    // configured schedule whatever its name (each takes what it uses).
    ScheduleCheckpoint schedule_state;
    Clock* clock = nullptr;
    ServerMetrics* metrics = nullptr;
    // Relay mode (config.relay, server/relay.h): no round is open until
    // OpenRelayRound, and a closed round becomes a RelayBatch for the
    // upstream instead of a new model version.
    bool relay = false;
  };

  // What a relay round produced for the upstream.
  struct RelayBatch {
    uint64_t round = 0;
    uint64_t base_version = 0;
    // The weighted mean of the round's updates; empty: nothing to forward
    // (fewer than rounds.min_clients updates, or none).
    std::vector<float> mean;
    uint64_t weight = 0;  // Sum of the updates' num_samples.
    uint32_t updates = 0;
  };

  explicit Coordinator(Options options);
  ~Coordinator();  // Stops the worker thread.

  const ModelStore& store() const { return store_; }
  ModelStore& mutable_store() { return store_; }

  // compression.upload, in order of preference (float32 is always accepted
  // besides).
  const std::vector<compress::CodecSpec>& upload_codecs() const { return upload_codecs_; }

  // Sessions (the rules: server/sessions.h). `caller`: who calls, for the
  // session limits and the re-join / takeover rule.
  absl::StatusOr<SessionInfo> Join(absl::string_view client_id, const JoinCaller& caller = {});
  absl::Status CheckSession(absl::string_view client_id, absl::string_view token);
  // PullModel served `version` to the client (asynchronous schedules accept
  // a base version the client was actually given, never a later one).
  void NotePulled(absl::string_view client_id, uint64_t version);
  absl::Status Leave(absl::string_view client_id, absl::string_view token);

  // Tasks. GetTask answers at once. AwaitTask answers at once unless the
  // answer is WAIT, in which case `done` runs (exactly once) when the answer
  // changes or after `wait`; it returns a waiter id (0 if `done` already ran)
  // for CancelWait, which returns true if it removed the waiter, in which case
  // `done` will never run.
  absl::StatusOr<TaskInfo> GetTask(absl::string_view client_id, absl::string_view token);
  using TaskCallback = std::function<void(absl::StatusOr<TaskInfo>)>;
  uint64_t AwaitTask(absl::string_view client_id, absl::string_view token, absl::Duration wait,
                     TaskCallback done);
  bool CancelWait(uint64_t waiter_id);

  // Uploads. Errors carry the gRPC-mappable code (server/grpc_status.h) and are
  // counted in metrics here. After an error from AddChunk or FinishUpload the
  // upload is aborted; the caller just drops it.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const UpdateHeaderInfo& header);
  // The chunk's bytes may arrive split into several pieces (the slices gRPC
  // received); a float may straddle two pieces.
  absl::Status AddChunk(Upload& upload, uint64_t byte_offset,
                        absl::Span<const absl::string_view> pieces);
  absl::Status AddChunk(Upload& upload, uint64_t byte_offset, absl::string_view data) {
    return AddChunk(upload, byte_offset, absl::MakeConstSpan(&data, 1));
  }
  absl::StatusOr<CommitInfo> FinishUpload(Upload& upload);
  void AbortUpload(Upload& upload, RejectReason reason);

  CoordinatorStatus Status() const;
  // True once rounds.total_rounds was reached and the worker has logged it,
  // written a last checkpoint and the final model (final_model_path).
  bool RunFinished() const;

  // Shutdown, first step: new uploads get UNAVAILABLE (reason draining) and
  // every pending AwaitTask is answered; uploads already running go on, and
  // the worker still closes rounds and applies flushes.
  void BeginDrain();
  // Answers every pending AwaitTask (WAIT), stops the worker thread, applies
  // what asynchronous schedules decided and writes a final checkpoint if
  // checkpoints are configured. Call it when no upload runs any more.
  void Stop();

  // For tests: runs the deadline/session checks now instead of waiting for
  // the worker's next tick (useful with a ManualClock).
  void TickForTesting();

  // Relay mode. Publishes the upstream's model `version` (above the current
  // one) as the model served.
  void PublishUpstream(uint64_t version, uint64_t round, std::vector<float> params);
  // Opens round `round` on the current version: clients get TRAIN tasks for
  // it (long-polls are answered).
  void OpenRelayRound(uint64_t round);
  // Blocks until the open relay round has closed (rounds.clients_per_round
  // updates, or round_timeout_ms after its first task) and returns its
  // batch; nullopt if the coordinator drains or stops first.
  std::optional<RelayBatch> AwaitRelayBatch();
  // The upstream federation finished: tasks answer DONE.
  void FinishRelay();

 private:
  // kIdle: relay mode, no round open (waiting for the upstream).
  enum class Phase { kOpen, kClosing, kIdle, kDone };
  struct Waiter {
    std::string client_id;
    std::string token;
    absl::Time deadline;
    TaskCallback done;
  };

  absl::Status CheckSessionLocked(absl::string_view client_id, absl::string_view token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TaskInfo TaskForLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts and logs a rejected update (every rejection leaves a log line
  // with the client id and the reason) and returns `status`.
  absl::Status RejectLocked(const std::string& client_id, RejectReason reason,
                            absl::Status status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropSessionLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The last checks before an upload gets resources: limits.
  // max_concurrent_uploads against `in_flight`, then the client's upload
  // rate. Rejections are counted and carry a retry hint.
  absl::Status AdmitUploadLocked(const std::string& client_id, size_t in_flight)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The per-client concurrency limit (one upload at a time): counted as
  // overloaded, RESOURCE_EXHAUSTED with a retry hint.
  absl::Status ClientBusyLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // limits.client_uploads_per_minute: takes a token from the client's bucket,
  // or RESOURCE_EXHAUSTED with the wait until the next one.
  absl::Status TakeUploadTokenLocked(const std::string& client_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker thread: once the federation is done, logs it, checkpoints and
  // writes the final model (once).
  void MaybeFinishRun();
  void ReleaseJournalLocked(Upload& upload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the upload aborted and subtracts what it added. Requires the
  // round's gate (reader or writer).
  void UndoLocked(Upload& upload, RejectReason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks a chunk's offset, size and bounds against the upload; on error
  // sets *reason.
  absl::Status CheckChunkShape(const Upload& upload, uint64_t byte_offset, size_t size,
                               RejectReason* reason) const;
  void RequestCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Leases and over-selection (docs/rounds.md). Gives `client_id` a slot of
  // the round (counted as over-selected beyond clients_per_round).
  void AssignSlotLocked(RoundState& round, const std::string& client_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The refusal of an upload that finds no slot: its lease expired and the
  // slot went to another client (reason lease_expired), or the round is full.
  absl::Status RoundFullLocked(const RoundState& round, const std::string& client_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes back the slots of TRAIN tasks whose lease ended before an upload
  // used them.
  void ExpireLeasesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ABORTED for a chunk or commit of an upload the round's close aborted.
  absl::Status EndedDuringUpload(const Upload& upload, const RoundState& round) const;
  // Relay mode: the closed round's mean becomes the batch AwaitRelayBatch
  // returns (worker thread, no lock held).
  void CloseRelayRound(RoundState& round, std::vector<float> mean) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the floats at `bytes` are finite and within limits.max_abs_value;
  // if not, the error (INVALID_ARGUMENT naming the first bad parameter,
  // `first` + its index) and *reason (non_finite or value_range).
  absl::Status CheckValues(const char* bytes, size_t count, uint64_t first,
                           RejectReason* reason) const;
  // A chunk of `size` bytes was taken: the upload's, server's and metric
  // byte counts.
  void CountReceived(Upload& upload, size_t size);
  // rounds.total_rounds is set and reached (rounds or schedule steps).
  bool TotalRoundsReachedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The model-version and round gauges.
  void ExportProgressLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Asynchronous schedules (server/coordinator_async.cc).
  struct AsyncClient {
    bool has_task = false;        // Got TRAIN; no update accepted since.
    uint64_t task_version = 0;    // The version published when it got TRAIN.
    uint64_t pulled_version = 0;  // Newest version PullModel served it.
    bool uploading = false;
    // Named by an Assignment whose flushes the worker has not applied yet:
    // WAIT until it has (the new task must be on the new model).
    bool assignment_pending = false;
  };
  struct StoredUpdate {
    std::vector<float> delta;
    std::string client_id;
    std::string update_id;
  };
  TaskInfo AsyncTaskForLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::unique_ptr<Upload>> BeginAsyncUploadLocked(const UpdateHeaderInfo& h)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AddAsyncChunk(Upload& upload, uint64_t byte_offset,
                             absl::Span<const absl::string_view> pieces);
  absl::StatusOr<CommitInfo> FinishAsyncUpload(Upload& upload);
  void AbortAsyncLocked(Upload& upload, RejectReason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnqueueDecisionLocked(aggregators::Decision decision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker thread (or TickForTesting): runs due timers, then executes the
  // queued decisions in order.
  void RunSchedule() ABSL_LOCKS_EXCLUDED(mu_);
  // Applies one flush and publishes a version; false (model unchanged) if the
  // rule refused the batch or the result is not finite.
  bool ExecuteFlush(const aggregators::Flush& flush, std::vector<StoredUpdate>& updates)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(exec_mu_);
  bool HasScheduleWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseRound();
  // Runs waiters whose answer is no longer WAIT or whose time is up.
  void ReleaseWaiters(bool all);
  void CheckTimers();
  void WorkerLoop();
  // Writes the current model if checkpoints are on and it is not yet on disk
  // (and, unless `force`, the checkpoint interval has passed). Worker thread
  // or Stop() only.
  void MaybeCheckpoint(bool force);
  // Whether a compressed upload may use `codec` (float32, or a codec of
  // compression.upload); INVALID_ARGUMENT with the reason otherwise.
  absl::Status CheckUploadCodec(const UpdateHeaderInfo& h) const;
  // Compressed uploads: appends a chunk to the payload. Checks as
  // CheckChunkShape.
  void AppendPayload(Upload& upload, absl::Span<const absl::string_view> pieces);
  // Compressed uploads, once whole: `target` = the decoded update, checked
  // as CheckValues (on error *reason says why: malformed, non_finite or
  // value_range, and `target` holds garbage).
  absl::Status DecodePayload(const Upload& upload, absl::Span<float> target,
                             RejectReason* reason) const;
  // Moves the matching state tensors of `state` into the optimizer.
  void RestoreOptimizerState(OptimizerState& state);
  // Runs the pre-steps and the rule over the round's committed rows, with
  // each row's num_samples as its weight (which `average` uses) unless a
  // pre-step merged or reordered the rows; the aggregate delta goes to `out`.
  absl::Status AggregateRows(RoundState& round, std::vector<float>* out);
  // The pre-steps and the rule over the n rows of `batch` (modified in
  // place) into `out` (model-sized), then the per-client influence report
  // for step (round) `step`. `weights` and `clients` are per row (empty:
  // uniform / not attributable).
  absl::Status RunRule(absl::Span<float> batch, size_t n, std::vector<double> weights,
                       std::vector<std::string> clients, uint64_t step, absl::Span<float> out);
  // Exports the rule's per-row influence by client (metrics) and logs the
  // clients it rejected or down-weighted. `clients` is empty when rows no
  // longer map to clients (a pre-step merged or reordered them).
  void ReportInfluence(uint64_t round, const std::vector<std::string>& clients,
                       const std::vector<double>& influence);

  const tally::v1::ServerConfig config_;
  std::vector<compress::CodecSpec> upload_codecs_;  // Set in the constructor.
  Clock* const clock_;
  ServerMetrics* const metrics_;
  ModelStore store_;
  const absl::Time started_;

  mutable tally::Mutex mu_;
  SessionTable sessions_ ABSL_GUARDED_BY(mu_);
  UpdateLedger ledger_ ABSL_GUARDED_BY(mu_);  // Accepted and applied update ids.

  bool run_finished_ ABSL_GUARDED_BY(mu_) = false;  // See RunFinished().
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kOpen;
  const bool relay_;
  std::optional<RelayBatch> relay_batch_ ABSL_GUARDED_BY(mu_);  // Closed, not yet taken.
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t base_version_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t rounds_completed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rounds_failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<RoundState> current_ ABSL_GUARDED_BY(mu_);
  absl::Duration last_round_duration_ ABSL_GUARDED_BY(mu_);
  uint64_t updates_accepted_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> bytes_received_{0};
  // Set when an aborted upload could not be undone: the round must fail.
  std::atomic<bool> round_poisoned_{false};
  // Combine, optimizer, finite check (aggregators/step/aggregation_step.h).
  std::unique_ptr<aggregators::AggregationStep> step_;  // Worker thread only.
  // A robust strategy (pre-steps + rule over an arena of rows) instead of
  // the streaming weighted mean. Worker thread only.
  // A model-sized buffer recycled from a retired snapshot nobody reads any
  // more, reused as the next round's mean.
  std::vector<float> spare_ ABSL_GUARDED_BY(mu_);
  // The previous round's exact sum, reset, reused by the next round (its
  // lanes, 8 bytes a parameter, are allocated once).
  std::unique_ptr<aggregators::StripedAccumulator> spare_sum_ ABSL_GUARDED_BY(mu_);
  // Scratch for decoding compressed uploads before they join the exact sum.
  BufferPool decode_pool_;
  JournalPool journals_ ABSL_GUARDED_BY(mu_);  // limits.undo_memory_bytes.

  absl::Time last_session_scan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t next_waiter_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TokenBucket> upload_buckets_ ABSL_GUARDED_BY(mu_);

  // Asynchronous schedules; null schedule_ = synchronous rounds.
  std::unique_ptr<aggregators::Schedule> schedule_ ABSL_GUARDED_BY(mu_);
  const uint64_t max_staleness_;
  absl::flat_hash_map<std::string, AsyncClient> async_clients_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<aggregators::UpdateHandle, StoredUpdate> stored_ ABSL_GUARDED_BY(mu_);
  aggregators::UpdateHandle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<aggregators::Decision> decisions_ ABSL_GUARDED_BY(mu_);
  // The published version plus the flushes queued: the version an update
  // arriving now is measured against.
  uint64_t decided_version_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t async_uploads_ ABSL_GUARDED_BY(mu_) = 0;
  // Model-sized buffers for uploads, aggregates and published models.
  std::shared_ptr<BufferPool> pool_;
  // Serialises RunSchedule (decisions are applied one at a time, in order).
  // Acquired before mu_.
  tally::Mutex exec_mu_;
  std::vector<float> flush_arena_ ABSL_GUARDED_BY(exec_mu_);  // Robust rules.

  absl::Time last_checkpoint_;         // Worker thread / Stop only.
  // Written by the worker thread / Stop only; read by Status(). The version
  // on disk; checkpointed_version_ is only meaningful once on_disk_.
  std::atomic<uint64_t> checkpointed_version_{0};
  std::atomic<bool> checkpoint_on_disk_{false};

  std::thread worker_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_COORDINATOR_H_
