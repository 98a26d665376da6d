// Coordinator: the server's state machine, independent of gRPC (the RPC
// edge, server/*_reactor.cc and server/service.cc, translates calls and
// streams into the methods below). It owns the parts and routes calls
// between them (docs/server.md, "Parts and seams"):
//   sessions    who is connected (server/sessions.h)
//   admission   whether an upload may start (server/admission.h)
//   ledger      update ids: duplicates, what a checkpoint holds
//               (server/update_ledger.h)
//   waiters     GetTask long-polls (server/task_waiters.h)
//   driver      tasks, rounds or schedule steps (server/driver.h)
//   sink        where accepted bytes go, how a batch is combined
//               (server/update_sink.h)
//   publisher   what becomes of the aggregate (server/publisher.h)
// The driver, sink and publisher are chosen once by Create from the plan
// (server/plan.h); no method below asks which ones it has.
//
// An upload: BeginUpload checks the header (server/update_checks.h), the
// ledger, the driver (CheckUpload), admission, the driver again (Enter) and
// opens a sink slot; AddChunk checks each chunk's shape and hands it to the
// sink (compressed uploads are collected and handed over whole by
// FinishUpload); FinishUpload commits it to the sink and the driver.
// Batches close on the worker thread: the driver says when, the sink
// combines, the publisher's step runs on each block, the publisher
// publishes, the driver opens what comes next.
//
// Thread safety: every method is thread-safe. AddChunk runs concurrently
// for different uploads; sealing an epoch (a round's close) waits for
// running AddChunks (the epoch's gate). Closing and aggregation run on the
// coordinator's worker thread, never on the caller's. Callbacks (task
// waiters) are invoked without internal locks held.
#ifndef TALLY_SERVER_COORDINATOR_H_
#define TALLY_SERVER_COORDINATOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "aggregators/schedules/schedule.h"
#include "aggregators/step/aggregation_step.h"
#include "core/buffer_pool.h"
#include "core/clock.h"
#include "core/model_store.h"
#include "core/sync.h"
#include "server/admission.h"
#include "server/checkpoint.h"
#include "server/coordinator_types.h"
#include "server/driver.h"
#include "server/metrics.h"
#include "server/plan.h"
#include "server/privacy_state.h"
#include "server/publisher.h"
#include "server/rule_runner.h"
#include "server/sessions.h"
#include "server/task_waiters.h"
#include "server/update_checks.h"
#include "server/update_ledger.h"
#include "server/update_sink.h"
#include "server/workflow_run.h"

namespace tally::server {

class Coordinator;
struct Epoch;

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
  std::shared_ptr<Epoch> epoch_;
  UpdateHeaderInfo header_;
  uint64_t received_ = 0;
  // float32 without zstd: handed to the sink chunk by chunk as it arrives.
  // Any other codec: `payload_` collects the bytes, decoded once whole.
  bool streamed() const { return compress::IsPlainFloat32(header_.codec); }
  std::string payload_;
  std::unique_ptr<SinkSlot> slot_;
  absl::Time started_;
  // ACTIVE -> COMMITTED | ABORTED; changed only under Coordinator::mu_ while
  // holding the epoch's gate.
  enum class State { kActive, kCommitted, kAborted };
  State state_ = State::kActive;
  RejectReason abort_reason_ = RejectReason::kCancelled;  // Once ABORTED.
};

class Coordinator {
 public:
  struct Options {
    ServerPlan plan;  // From MakePlan (validated).
    std::vector<float> initial_params;
    uint64_t initial_version = 1;  // From a checkpoint (or the upstream), else 1.
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
    // The privacy ledger and clip norm from a checkpoint (central DP).
    PrivacyCheckpoint privacy_state;
    Clock* clock = nullptr;
    ServerMetrics* metrics = nullptr;
    // Evaluation, client metrics, per-round config, the run history
    // (docs/workflow.md). Not owned; outlives the Coordinator. Null: none.
    WorkflowRun* workflow = nullptr;
  };
  using RelayBatch = server::RelayBatch;

  // Builds the parts the plan names and starts the worker thread.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(Options options);
  ~Coordinator();  // Stops the worker thread.

  const ModelStore& store() const { return store_; }
  WorkflowRun* workflow() const { return workflow_; }
  ModelStore& mutable_store() { return store_; }

  // compression.upload, in order of preference (float32 is always accepted
  // besides).
  const std::vector<compress::CodecSpec>& upload_codecs() const { return codecs_; }

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
  using TaskCallback = server::TaskCallback;
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
  // True once the federation is over (rounds.total_rounds reached, or the
  // upstream is done) and the worker has logged it, written a last
  // checkpoint and the final model (final_model_path).
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

  // Relay mode (the upstream publisher). Publishes the upstream's model
  // `version` (above the current one) as the model served.
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
  Coordinator(Options& options, std::unique_ptr<aggregators::AggregationStep> step);
  // Builds the sink, driver and publisher the plan names
  // (server/coordinator_parts.cc); `schedule`: the plan's, if it has one.
  void MakeParts(Options& options, std::unique_ptr<aggregators::Schedule> schedule);
  // Central DP: the PrivateSink and the PrivacyDriver around the driver,
  // sharing privacy_ (made by Create).
  void MakePrivateParts(Options& options, const RuleRunner& rule)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status CheckSessionLocked(absl::string_view client_id, absl::string_view token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts and logs a rejected update (every rejection leaves a log line
  // with the client id and the reason) and returns `status`.
  absl::Status RejectLocked(const std::string& client_id, RejectReason reason,
                            absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropSessionLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The client's task: an EVALUATE task of the workflow's open evaluation
  // first, else the driver's; DONE waits while an evaluation is pending.
  TaskInfo TaskForLocked(const std::string& client_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A batch published a version: the workflow's record and round metrics
  // (the round's log line shows them: DriverBatch::metrics).
  void NoteRoundLocked(DriverBatch& batch, uint64_t version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // BeginUpload's checks that need no part's state: session, id,
  // duplicate, header.
  absl::Status CheckHeaderLocked(const UpdateHeaderInfo& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // BeginUpload once the header is good: the driver, admission, the sink.
  absl::StatusOr<std::unique_ptr<Upload>> AdmitLocked(const UpdateHeaderInfo& h)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the upload aborted, frees its place and (unless `undo_sink`
  // is false: the sink already forgot it) removes what the sink took.
  // Requires the epoch's gate (reader or writer).
  void UndoLocked(Upload& upload, RejectReason reason, bool undo_sink = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits a complete upload to the sink and the driver.
  absl::StatusOr<CommitInfo> CommitLocked(Upload& upload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A chunk of `size` bytes was taken: the upload's, server's and metric
  // byte counts.
  void CountReceived(Upload& upload, size_t size);

  // Worker side (server/coordinator_worker.cc).
  void WorkerLoop();
  // Runs the driver's timers, then closes every batch due, in order.
  void RunDue() ABSL_LOCKS_EXCLUDED(mu_);
  // Aborts the uploads still running in `epoch` (after its gate drained)
  // and starts a new epoch.
  void Seal(Epoch& epoch) ABSL_LOCKS_EXCLUDED(mu_);
  // Combines and publishes one batch; true if a version was published.
  bool Execute(DriverBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(exec_mu_);
  // Runs waiters whose answer is no longer WAIT or whose time is up.
  void ReleaseWaiters(bool all);
  // Expired sessions, then the waiters.
  void CheckTimers();
  // Once the federation is over: the publisher's end of run (once).
  void MaybeFinishRun();

  Clock* const clock_;
  ServerMetrics* const metrics_;
  WorkflowRun* const workflow_;  // May be null.
  ModelStore store_;
  const std::vector<compress::CodecSpec> codecs_;
  const UpdateLimits limits_;
  // Model-sized buffers for uploads, aggregates and published models.
  const std::shared_ptr<BufferPool> pool_;
  // Combine, optimizer, finite check (aggregators/step/aggregation_step.h).
  const std::unique_ptr<aggregators::AggregationStep> step_;

  mutable tally::Mutex mu_;
  SessionTable sessions_ ABSL_GUARDED_BY(mu_);
  UpdateLedger ledger_ ABSL_GUARDED_BY(mu_);  // Accepted and applied update ids.
  Admission admission_ ABSL_GUARDED_BY(mu_);
  TaskWaiters waiters_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Driver> driver_ ABSL_GUARDED_BY(mu_);
  // Open, Commit, Undo, Drop under mu_; Take without (server/update_sink.h).
  std::unique_ptr<UpdateSink> sink_;
  std::shared_ptr<PrivacyState> privacy_;  // Central DP only; else null.
  std::unique_ptr<Publisher> publisher_;
  std::shared_ptr<Epoch> epoch_ ABSL_GUARDED_BY(mu_);  // New uploads join it.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool run_finished_ ABSL_GUARDED_BY(mu_) = false;  // See RunFinished().
  uint64_t updates_accepted_ ABSL_GUARDED_BY(mu_) = 0;
  // Payload bytes of the updates committed since the last published
  // version (its history record's bytes_received).
  uint64_t committed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> bytes_received_{0};
  absl::Time last_session_scan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Serialises RunDue (batches are closed one at a time, in order).
  // Acquired before mu_.
  tally::Mutex exec_mu_;
  std::thread worker_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_COORDINATOR_H_
