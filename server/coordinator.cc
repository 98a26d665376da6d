#include "server/coordinator.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "aggregators/rules/parallel.h"
#include "core/model_file.h"
#include "core/status_macros.h"
#include "core/vector_ops.h"
#include "server/checkpoint.h"
#include "server/client_text.h"
#include "server/config.h"
#include "server/float_runs.h"
#include "server/grpc_status.h"
#include "server/log.h"

namespace tally::server {

// Per-round state shared by the coordinator and the round's uploads.
struct RoundState {
  RoundState(uint64_t r, uint64_t v) : round(r), base_version(v) {}
  const uint64_t round;
  const uint64_t base_version;
  // Readers: chunk adds, commits and aborts of this round's uploads. Writer:
  // closing the round. Acquired before Coordinator::mu_.
  tally::Mutex gate;
  // Created by the first upload (under mu_); written under the gate.
  std::unique_ptr<aggregators::StripedAccumulator> sum;
  // Robust strategies: one row per upload (clients_per_round rows), written
  // under the gate; row_state (under Coordinator::mu_): 0 free, 1 uploading,
  // 2 committed; row_weight and row_client (under Coordinator::mu_): a
  // committed row's num_samples (the row weights `average` uses) and client.
  std::vector<float> arena;
  std::vector<uint8_t> row_state;
  std::vector<double> row_weight;
  std::vector<std::string> row_client;

  // The rest is guarded by Coordinator::mu_.
  absl::flat_hash_set<std::string> assigned;                       // Got a TRAIN task.
  absl::flat_hash_set<std::string> submitted;                      // Update committed.
  std::vector<std::pair<std::string, std::string>> committed_ids;  // (client, update id)
  absl::flat_hash_map<std::string, Upload*> uploading;             // client -> active upload.
  // Leases (rounds.task_lease_ms) of TRAIN tasks no upload has used yet: the
  // expiry of each, and (expiry, client) in grant order, which is expiry
  // order; an entry whose expiry is not the client's current one is stale.
  absl::flat_hash_map<std::string, absl::Time> leases;
  std::deque<std::pair<absl::Time, std::string>> lease_order;
  absl::flat_hash_set<std::string> lease_expired;  // Lost their slot: no new task this round.
  uint32_t accepted = 0;
  uint64_t weight_sum = 0;  // Sum of the committed updates' num_samples.
  absl::Time first_task = absl::InfiniteFuture();
  absl::Time deadline = absl::InfiniteFuture();
};

namespace {

// Rearranges the rows (of d floats) of `arena` so that row i holds what row
// order[i] held, for i < order.size() (order: distinct row indices). One
// row of scratch; each row is copied at most twice.
void PermuteRows(absl::Span<float> arena, size_t d, const std::vector<size_t>& order) {
  // where[r]: the row now holding the original row r's data.
  std::vector<size_t> where(arena.size() / d), holds(arena.size() / d);
  for (size_t r = 0; r < where.size(); ++r) where[r] = holds[r] = r;
  std::vector<float> scratch(d);
  for (size_t i = 0; i < order.size(); ++i) {
    const size_t from = where[order[i]];
    if (from == i) continue;
    // Swap rows i and `from`.
    float* a = arena.data() + i * d;
    float* b = arena.data() + from * d;
    std::memcpy(scratch.data(), a, d * sizeof(float));
    std::memcpy(a, b, d * sizeof(float));
    std::memcpy(b, scratch.data(), d * sizeof(float));
    const size_t displaced = holds[i];
    holds[from] = displaced;
    where[displaced] = from;
    holds[i] = order[i];
    where[order[i]] = i;
  }
}

// Whether `client_id` may take one of the round's slots (clients_per_round,
// plus rounds.over_selection of it): while monna's trusted client
// (StrategyConfig trusted_client) has none, one slot stays reserved for it.
bool RoundHasSlotFor(const RoundState& round, const tally::v1::ServerConfig& config,
                     const std::string& client_id) {
  const std::string& trusted = config.strategy().trusted_client();
  const size_t reserved =
      !trusted.empty() && client_id != trusted && !round.assigned.contains(trusted) ? 1 : 0;
  return round.assigned.size() + reserved < SelectedPerRound(config.rounds());
}

// Whether the round has what it needs to close before its deadline:
// clients_per_round updates, including the trusted client's if there is one.
bool RoundComplete(const RoundState& round, const tally::v1::ServerConfig& config) {
  const std::string& trusted = config.strategy().trusted_client();
  return round.accepted >= config.rounds().clients_per_round() &&
         (trusted.empty() || round.submitted.contains(trusted));
}

// Moves the row of `client` (a committed row of the compacted n x d batch)
// to the front, shifting the rows before it down by one, so that rule monna
// (trusted row 0) averages around it. FAILED_PRECONDITION if the client sent
// no update this round.
absl::Status TrustedRowFirst(const std::string& client, size_t d, std::vector<float>& arena,
                             std::vector<double>& weights, std::vector<std::string>& clients) {
  const auto it = std::find(clients.begin(), clients.end(), client);
  if (it == clients.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("monna: the trusted client '", client, "' sent no update this round (",
                     clients.size(), " other update(s)); the round is skipped, model unchanged"));
  }
  const size_t t = static_cast<size_t>(it - clients.begin());
  std::rotate(arena.begin(), arena.begin() + t * d, arena.begin() + (t + 1) * d);
  std::rotate(weights.begin(), weights.begin() + t, weights.begin() + t + 1);
  std::rotate(clients.begin(), clients.begin() + t, clients.begin() + t + 1);
  return absl::OkStatus();
}

}  // namespace

Upload::~Upload() {
  if (coordinator_ != nullptr) coordinator_->AbortUpload(*this, RejectReason::kCancelled);
}

Coordinator::Coordinator(Options options)
    : config_(std::move(options.config)),
      clock_(options.clock),
      metrics_(options.metrics),
      store_(std::move(options.layout), std::move(options.initial_params), clock_->Now(),
             options.initial_version, options.initial_round),
      started_(clock_->Now()),
      sessions_(config_.limits(), metrics_),
      relay_(options.relay),
      decode_pool_(store_.layout().NumParams(), /*max_idle=*/2),
      journals_(config_.limits().undo_memory_bytes(), config_.spool_dir(),
                /*max_idle_files=*/config_.limits().max_concurrent_uploads(),
                /*max_file_age=*/absl::Seconds(20)),
      max_staleness_(config_.schedule().max_staleness()) {
  base_version_ = options.initial_version;
  decided_version_ = options.initial_version;
  rounds_completed_ = options.initial_round;
  round_ = options.initial_round + 1;
  checkpointed_version_ = options.initial_version;
  checkpoint_on_disk_ = options.restored;
  auto codecs = UploadCodecsFromConfig(config_, store_.layout().NumParams());
  if (!codecs.ok()) std::abort();  // ValidateConfig() ran before.
  upload_codecs_ = std::move(codecs).value();
  {
    tally::MutexLock lock(&mu_);
    ledger_.Restore(options.applied_ids);
  }
  if (options.restored)
    metrics_->checkpoint_version.Set(static_cast<double>(options.initial_version));
  last_checkpoint_ = clock_->Now();
  current_ = std::make_shared<RoundState>(round_, base_version_);
  if (TotalRoundsReachedLocked()) phase_ = Phase::kDone;
  if (relay_) phase_ = Phase::kIdle;
  ExportProgressLocked();
  if (IsRobustStrategy(config_.strategy())) {
    aggregators::SetRuleThreads(static_cast<int>(config_.strategy().threads()));
  }
  auto step = aggregators::AggregationStep::Create(AggregationStepOptionsFromConfig(config_));
  if (!step.ok()) std::abort();  // ValidateConfig() ran before.
  step_ = std::move(step).value();
  RestoreOptimizerState(options.optimizer_state);
  if (IsAsyncSchedule(config_.schedule())) {
    auto schedule = aggregators::CreateSchedule(ScheduleOptionsFromConfig(config_));
    if (!schedule.ok()) std::abort();  // ValidateConfig() ran before.
    tally::MutexLock lock(&mu_);
    schedule_ = std::move(schedule).value();
    const ScheduleCheckpoint& saved = options.schedule_state;
    if (!saved.state.clients.empty()) {
      schedule_->RestoreState(saved.state);
      LogInfo(absl::StrCat("checkpoint: restored ", saved.state.clients.size(),
                           " client record(s) of schedule '", saved.name, "' into '",
                           schedule_->name(), "'"));
    }
    // Idle buffers kept: as many as can be in use at once (uploads, buffered
    // updates, aggregate and models in flight), so that steady state
    // allocates nothing; memory above that peak is returned.
    const size_t max_idle =
        config_.limits().max_concurrent_uploads() + ExpectedBatchSize(config_) + 4;
    pool_ = std::make_shared<BufferPool>(store_.layout().NumParams(), max_idle);
    store_.set_recycler(pool_);
  }
  worker_ = std::thread([this] { WorkerLoop(); });
}

Coordinator::~Coordinator() { Stop(); }

void Coordinator::RestoreOptimizerState(OptimizerState& state) {
  if (state.name.empty()) return;
  if (state.name != step_->optimizer().name()) {
    LogWarning(absl::StrCat("checkpoint: optimizer state is for '", state.name,
                            "', the config says '", step_->optimizer().name(),
                            "'; the optimizer starts fresh"));
    return;
  }
  size_t restored = 0;
  for (auto& [key, target] : step_->optimizer().MutableState()) {
    for (auto& [saved_key, values] : state.tensors) {
      if (saved_key == key) {
        *target = std::move(values);
        ++restored;
      }
    }
  }
  LogInfo(absl::StrCat("checkpoint: restored ", restored, " state tensor(s) of optimizer '",
                       state.name, "'"));
}

void Coordinator::BeginDrain() {
  {
    tally::MutexLock lock(&mu_);
    draining_ = true;
  }
  ReleaseWaiters(/*all=*/true);
}

void Coordinator::Stop() {
  {
    tally::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  ReleaseWaiters(/*all=*/true);
  if (worker_.joinable()) worker_.join();
  // Asynchronous schedules: apply what was already decided before the final
  // checkpoint. (Updates still buffered by the schedule are not kept.)
  RunSchedule();
  MaybeCheckpoint(/*force=*/true);
}

void Coordinator::MaybeCheckpoint(bool force) {
  if (config_.checkpoint_dir().empty()) return;
  std::shared_ptr<const ModelSnapshot> snapshot = store_.Current();
  const absl::Time now = clock_->Now();
  if (snapshot->version == checkpointed_version_) return;
  if (!force && now - last_checkpoint_ < absl::Milliseconds(config_.checkpoint_interval_ms())) {
    return;
  }
  // The ids of the updates in `snapshot`: only this thread publishes, so
  // the ledger's applied ids match it.
  CheckpointContents contents;
  contents.optimizer_name = step_->optimizer().name();
  contents.optimizer_tensors = step_->optimizer().MutableState();
  {
    tally::MutexLock lock(&mu_);
    contents.applied = ledger_.AppliedIds();
    if (schedule_ != nullptr) {
      contents.schedule.name = schedule_->name();
      contents.schedule.state = schedule_->SaveState();
    }
  }
  absl::Status written =
      WriteCheckpoint(config_.checkpoint_dir(), store_.layout(), *snapshot, contents);
  if (!written.ok()) {
    LogError(std::string(written.message()));
    metrics_->checkpoint_failures.Increment();
    return;
  }
  checkpointed_version_ = snapshot->version;
  checkpoint_on_disk_ = true;
  metrics_->checkpoint_version.Set(static_cast<double>(snapshot->version));
  last_checkpoint_ = now;
  LogInfo(absl::StrCat("checkpoint: wrote version ", snapshot->version, " (round ", snapshot->round,
                       ") to ", config_.checkpoint_dir()));
}

// ---------------------------------------------------------------------------
// Sessions.

absl::StatusOr<SessionInfo> Coordinator::Join(absl::string_view client_id,
                                              const JoinCaller& caller) {
  tally::MutexLock lock(&mu_);
  TALLY_ASSIGN_OR_RETURN(std::string token, sessions_.Join(client_id, caller, clock_->Now()));
  return SessionInfo{std::move(token), store_.Current()->version};
}

absl::Status Coordinator::CheckSessionLocked(absl::string_view client_id, absl::string_view token) {
  return sessions_.Check(client_id, token, clock_->Now());
}

absl::Status Coordinator::CheckSession(absl::string_view client_id, absl::string_view token) {
  tally::MutexLock lock(&mu_);
  return CheckSessionLocked(client_id, token);
}

void Coordinator::NotePulled(absl::string_view client_id, uint64_t version) {
  tally::MutexLock lock(&mu_);
  if (schedule_ == nullptr) return;
  auto it = async_clients_.find(client_id);
  if (it != async_clients_.end()) {
    it->second.pulled_version = std::max(it->second.pulled_version, version);
  }
}

absl::Status Coordinator::Leave(absl::string_view client_id, absl::string_view token) {
  tally::MutexLock lock(&mu_);
  absl::Status status = CheckSessionLocked(client_id, token);
  if (!status.ok()) return status;
  DropSessionLocked(std::string(client_id));
  return absl::OkStatus();
}

absl::Status Coordinator::AdmitUploadLocked(const std::string& client_id, size_t in_flight) {
  if (in_flight >= config_.limits().max_concurrent_uploads()) {
    return RejectLocked(
        client_id, RejectReason::kOverloaded,
        WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                           "too many concurrent uploads (limits.max_concurrent_uploads ",
                           config_.limits().max_concurrent_uploads(), "); retry in a second")),
                       absl::Seconds(1)));
  }
  // Last: a refused upload costs the client no token.
  if (absl::Status allowed = TakeUploadTokenLocked(client_id); !allowed.ok()) {
    return RejectLocked(client_id, RejectReason::kRateLimited, allowed);
  }
  return absl::OkStatus();
}

absl::Status Coordinator::ClientBusyLocked(const std::string& client_id) {
  return RejectLocked(
      client_id, RejectReason::kOverloaded,
      WithRetryAfter(absl::ResourceExhaustedError(
                         "another upload from this client is in progress (one at a time per "
                         "client); retry when it has finished"),
                     absl::Seconds(1)));
}

absl::Status Coordinator::TakeUploadTokenLocked(const std::string& client_id) {
  const uint32_t per_minute = config_.limits().client_uploads_per_minute();
  if (per_minute == 0) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  // A new client starts with a full minute.
  auto it = upload_buckets_.try_emplace(client_id, per_minute, absl::Minutes(1), now).first;
  const absl::Duration wait = it->second.Take(now);
  if (wait == absl::ZeroDuration()) return absl::OkStatus();
  return WithRetryAfter(absl::ResourceExhaustedError(absl::StrCat(
                            "client '", client_id, "' exceeds limits.client_uploads_per_minute ",
                            per_minute, "; retry in ", absl::ToInt64Milliseconds(wait) + 1, " ms")),
                        wait);
}

void Coordinator::DropSessionLocked(const std::string& client_id) {
  sessions_.Erase(client_id);
  RoundState& round = *current_;
  // Free the client's task slot unless it already contributed or is uploading.
  if (!round.submitted.contains(client_id) && !round.uploading.contains(client_id)) {
    round.assigned.erase(client_id);
  }
}

// ---------------------------------------------------------------------------
// Tasks.

TaskInfo Coordinator::TaskForLocked(const std::string& client_id) {
  TaskInfo task;
  if (phase_ == Phase::kDone) {
    task.kind = TaskInfo::Kind::kDone;
    return task;
  }
  if (schedule_ != nullptr) return AsyncTaskForLocked(client_id);
  task.retry_after = absl::Seconds(1);
  RoundState& round = *current_;
  if (phase_ != Phase::kOpen || round.submitted.contains(client_id)) return task;  // WAIT
  if (!round.assigned.contains(client_id)) {
    // A client whose lease expired gets no second one this round.
    if (round.lease_expired.contains(client_id) || !RoundHasSlotFor(round, config_, client_id)) {
      return task;  // WAIT
    }
    AssignSlotLocked(round, client_id);
    const absl::Time now = clock_->Now();
    const absl::Time expiry = now + absl::Milliseconds(config_.rounds().task_lease_ms());
    round.leases[client_id] = expiry;
    round.lease_order.emplace_back(expiry, client_id);
    if (round.first_task == absl::InfiniteFuture()) {
      round.first_task = now;
      round.deadline = round.first_task + absl::Milliseconds(config_.rounds().round_timeout_ms());
    }
  }
  task.kind = TaskInfo::Kind::kTrain;
  task.round = round.round;
  task.model_version = round.base_version;
  task.local_steps = config_.rounds().local_steps();
  task.deadline = round.deadline;
  task.retry_after = absl::ZeroDuration();
  return task;
}

// ---------------------------------------------------------------------------
// Leases and over-selection (docs/rounds.md).

void Coordinator::AssignSlotLocked(RoundState& round, const std::string& client_id) {
  round.assigned.insert(client_id);
  if (round.assigned.size() > config_.rounds().clients_per_round()) {
    metrics_->tasks_overselected.Increment();
  }
}

absl::Status Coordinator::RoundFullLocked(const RoundState& round, const std::string& client_id) {
  if (round.lease_expired.contains(client_id)) {
    return RejectLocked(
        client_id, RejectReason::kLeaseExpired,
        absl::FailedPreconditionError(absl::StrCat(
            "round ", round.round, ": the task lease of client '", client_id,
            "' expired (no upload started within rounds.task_lease_ms = ",
            config_.rounds().task_lease_ms(),
            " ms of the task) and its slot went to another client; ask GetTask for the "
            "next round")));
  }
  return RejectLocked(
      client_id, RejectReason::kNotSelected,
      absl::FailedPreconditionError(absl::StrCat(
          "round ", round.round, " is full (", SelectedPerRound(config_.rounds()),
          " clients selected: rounds.clients_per_round ", config_.rounds().clients_per_round(),
          " and over_selection ", config_.rounds().over_selection(), ")")));
}

void Coordinator::ExpireLeasesLocked(absl::Time now) {
  if (schedule_ != nullptr || phase_ != Phase::kOpen) return;
  RoundState& round = *current_;
  while (!round.lease_order.empty() && round.lease_order.front().first <= now) {
    auto [expiry, client] = std::move(round.lease_order.front());
    round.lease_order.pop_front();
    auto it = round.leases.find(client);
    if (it == round.leases.end() || it->second != expiry) continue;  // Used, or granted again.
    round.leases.erase(it);
    if (!round.assigned.contains(client) || round.uploading.contains(client) ||
        round.submitted.contains(client)) {
      continue;
    }
    round.assigned.erase(client);
    round.lease_expired.insert(client);
    metrics_->task_leases_expired.Increment();
    LogInfo(absl::StrCat("round ", round.round, ": the task lease of client '", client,
                         "' expired (no upload within rounds.task_lease_ms ",
                         config_.rounds().task_lease_ms(), "); its slot goes to another client"));
  }
}

absl::Status Coordinator::EndedDuringUpload(const Upload& upload, const RoundState& round) const {
  if (upload.abort_reason_ != RejectReason::kSurplus) {
    return absl::AbortedError(absl::StrCat("round ", round.round, " closed during the upload"));
  }
  return absl::AbortedError(absl::StrCat(
      "round ", round.round, " closed with its ", config_.rounds().clients_per_round(),
      " updates (rounds.clients_per_round) while this upload ran: the round over-selects "
      "clients (rounds.over_selection) and this update was not needed; it was discarded, "
      "ask GetTask for the next round"));
}

absl::StatusOr<TaskInfo> Coordinator::GetTask(absl::string_view client_id,
                                              absl::string_view token) {
  tally::MutexLock lock(&mu_);
  absl::Status status = CheckSessionLocked(client_id, token);
  if (!status.ok()) return status;
  return TaskForLocked(std::string(client_id));
}

uint64_t Coordinator::AwaitTask(absl::string_view client_id, absl::string_view token,
                                absl::Duration wait, TaskCallback done) {
  absl::StatusOr<TaskInfo> answer;
  {
    tally::MutexLock lock(&mu_);
    absl::Status status = CheckSessionLocked(client_id, token);
    if (!status.ok()) {
      answer = status;
    } else {
      answer = TaskForLocked(std::string(client_id));
      if (answer->kind == TaskInfo::Kind::kWait && wait > absl::ZeroDuration() && !stopping_ &&
          !draining_) {
        const uint64_t id = next_waiter_id_++;
        waiters_[id] = Waiter{std::string(client_id), std::string(token), clock_->Now() + wait,
                              std::move(done)};
        return id;
      }
    }
  }
  done(std::move(answer));
  return 0;
}

bool Coordinator::CancelWait(uint64_t waiter_id) {
  tally::MutexLock lock(&mu_);
  return waiters_.erase(waiter_id) > 0;
}

void Coordinator::ReleaseWaiters(bool all) {
  std::vector<std::pair<TaskCallback, absl::StatusOr<TaskInfo>>> ready;
  {
    tally::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      Waiter& w = it->second;
      absl::StatusOr<TaskInfo> answer;
      absl::Status status = CheckSessionLocked(w.client_id, w.token);
      if (!status.ok()) {
        answer = status;
      } else {
        answer = TaskForLocked(w.client_id);
        if (answer->kind == TaskInfo::Kind::kWait && !all && now < w.deadline) {
          ++it;
          continue;
        }
      }
      ready.emplace_back(std::move(w.done), std::move(answer));
      it = waiters_.erase(it);
    }
  }
  for (auto& [done, answer] : ready) done(std::move(answer));
}

// ---------------------------------------------------------------------------
// Uploads.

absl::Status Coordinator::RejectLocked(const std::string& client_id, RejectReason reason,
                                       absl::Status status) {
  metrics_->RejectedUpdate(reason, client_id, status.message());
  return status;
}

absl::StatusOr<std::unique_ptr<Upload>> Coordinator::BeginUpload(const UpdateHeaderInfo& h) {
  const ModelLayout& layout = store_.layout();
  tally::MutexLock lock(&mu_);
  metrics_->updates_received.Increment();
  absl::Status status = CheckSessionLocked(h.client_id, h.session_token);
  if (!status.ok()) {
    const bool bad_id = status.code() == absl::StatusCode::kInvalidArgument;
    return RejectLocked(h.client_id,
                        bad_id ? RejectReason::kMalformed : RejectReason::kUnauthenticated, status);
  }
  if (absl::Status id = ValidateId("update_id", h.update_id); !id.ok()) {
    return RejectLocked(h.client_id, RejectReason::kMalformed, id);
  }
  if (ledger_.IsDuplicate(h.client_id, h.update_id)) {
    metrics_->updates_duplicate.Increment();
    return absl::AlreadyExistsError(
        absl::StrCat("update '", h.update_id, "' was already accepted"));
  }
  if (absl::Status codec = CheckUploadCodec(h); !codec.ok()) {
    return RejectLocked(h.client_id, RejectReason::kMalformed, codec);
  }
  const bool streamed = compress::IsPlainFloat32(h.codec);
  if (h.layout_hash != layout.Hash() || h.num_params != layout.NumParams()) {
    return RejectLocked(h.client_id, RejectReason::kLayoutMismatch,
                        absl::InvalidArgumentError(absl::StrCat(
                            "model layout mismatch: update has hash ", absl::Hex(h.layout_hash),
                            " and ", h.num_params, " parameters, the server's model has hash ",
                            absl::Hex(layout.Hash()), " and ", layout.NumParams())));
  }
  if (!streamed && (h.payload_bytes == 0 ||
                    h.payload_bytes > compress::MaxEncodedBytes(h.codec, layout.NumParams()))) {
    return RejectLocked(
        h.client_id, RejectReason::kLength,
        absl::InvalidArgumentError(absl::StrCat(
            "payload_bytes is ", h.payload_bytes, ", a ", compress::FindCodec(h.codec.id)->name,
            " update of ", layout.NumParams(), " parameters takes 1 .. ",
            compress::MaxEncodedBytes(h.codec, layout.NumParams()))));
  }
  if (streamed && h.payload_bytes != 4 * layout.NumParams()) {
    return RejectLocked(h.client_id, RejectReason::kLength,
                        absl::InvalidArgumentError(absl::StrCat(
                            "payload_bytes is ", h.payload_bytes, ", a dense float32 update of ",
                            layout.NumParams(), " parameters is ", 4 * layout.NumParams())));
  }
  if (h.payload_bytes > config_.limits().max_update_bytes()) {
    return RejectLocked(h.client_id, RejectReason::kLength,
                        absl::ResourceExhaustedError(absl::StrCat(
                            "payload_bytes ", h.payload_bytes,
                            " exceeds the server's "
                            "limits.max_update_bytes = ",
                            config_.limits().max_update_bytes(),
                            " (not worth retrying: raise the limit or compress more)")));
  }
  if (h.num_samples == 0 || h.num_samples > config_.limits().max_num_samples()) {
    return RejectLocked(h.client_id, RejectReason::kMalformed,
                        absl::InvalidArgumentError(absl::StrCat("num_samples must be in [1, ",
                                                                config_.limits().max_num_samples(),
                                                                "], got ", h.num_samples)));
  }
  if (phase_ == Phase::kDone) {
    return RejectLocked(h.client_id, RejectReason::kFinished,
                        absl::FailedPreconditionError("the federation has finished"));
  }
  if (draining_ || stopping_) {
    return RejectLocked(h.client_id, RejectReason::kDraining,
                        absl::UnavailableError("the server is shutting down; retry later (a "
                                               "load balancer sends the retry elsewhere)"));
  }
  if (schedule_ != nullptr) return BeginAsyncUploadLocked(h);
  RoundState& round = *current_;
  if (phase_ != Phase::kOpen || h.round != round.round || h.base_version != round.base_version) {
    return RejectLocked(
        h.client_id, RejectReason::kStale,
        absl::AbortedError(absl::StrCat("update for round ", h.round, " from version ",
                                        h.base_version, " is stale: round ", round.round,
                                        (phase_ == Phase::kOpen ? " is open" : " is closing"),
                                        " with base version ", round.base_version)));
  }
  if (round.uploading.contains(h.client_id)) {
    return ClientBusyLocked(h.client_id);
  }
  if (round.submitted.contains(h.client_id)) {
    return RejectLocked(h.client_id, RejectReason::kNotSelected,
                        absl::FailedPreconditionError(absl::StrCat(
                            "client already contributed an update to round ", round.round)));
  }
  if (absl::Status admitted = AdmitUploadLocked(h.client_id, round.uploading.size());
      !admitted.ok()) {
    return admitted;
  }
  if (!round.assigned.contains(h.client_id)) {
    if (!RoundHasSlotFor(round, config_, h.client_id)) return RoundFullLocked(round, h.client_id);
    AssignSlotLocked(round, h.client_id);
  }
  round.leases.erase(h.client_id);  // The task's lease is used.
  std::unique_ptr<UndoJournal> journal;
  int row = -1;
  if (step_->robust()) {
    // A private arena row: nothing to undo if the upload fails.
    const size_t rows = SelectedPerRound(config_.rounds());
    if (round.arena.empty()) {
      round.arena.resize(rows * layout.NumParams());
      round.row_state.assign(rows, 0);
      round.row_weight.assign(rows, 0.0);
      round.row_client.assign(rows, std::string());
    }
    for (size_t r = 0; r < rows && row < 0; ++r) {
      if (round.row_state[r] == 0) row = static_cast<int>(r);
    }
    if (row < 0) {
      return RejectLocked(h.client_id, RejectReason::kNotSelected,
                          absl::FailedPreconditionError(
                              absl::StrCat("round ", round.round, " has no free update slot")));
    }
    round.row_state[row] = 1;
  } else {
    if (streamed) {
      auto opened = journals_.Open(h.payload_bytes, clock_->Now());
      if (!opened.ok()) return RejectLocked(h.client_id, RejectReason::kInternal, opened.status());
      journal = std::move(opened).value();
    }
    if (round.sum == nullptr) {
      round.sum = spare_sum_ != nullptr
                      ? std::move(spare_sum_)
                      : std::make_unique<aggregators::StripedAccumulator>(layout.NumParams());
    }
  }
  auto upload = std::unique_ptr<Upload>(new Upload());
  upload->row_ = row;
  upload->coordinator_ = this;
  upload->round_ = current_;
  upload->header_ = h;
  upload->weight_ = static_cast<int64_t>(h.num_samples);  // <= 2^40 (ValidateConfig).
  upload->journal_ = std::move(journal);
  if (!streamed) upload->payload_.reserve(h.payload_bytes);
  upload->started_ = clock_->Now();
  round.uploading[h.client_id] = upload.get();
  metrics_->uploads_in_flight.Increment();
  return upload;
}

absl::Status Coordinator::CheckChunkShape(const Upload& upload, uint64_t byte_offset, size_t size,
                                          RejectReason* reason) const {
  if (byte_offset != upload.received_) {
    *reason = RejectReason::kChunkOrder;
    return absl::InvalidArgumentError(
        absl::StrCat("chunk offset ", byte_offset, ", expected ", upload.received_));
  }
  if (size == 0 || (upload.streamed() && size % 4 != 0) ||
      size > config_.limits().max_chunk_bytes()) {
    *reason = RejectReason::kMalformed;
    return absl::InvalidArgumentError(
        upload.streamed()
            ? absl::StrCat("chunk of ", size, " bytes: chunks must hold 1 .. ",
                           config_.limits().max_chunk_bytes() / 4, " whole float32 values")
            : absl::StrCat("chunk of ", size, " bytes: chunks must hold 1 .. ",
                           config_.limits().max_chunk_bytes(), " bytes"));
  }
  if (upload.received_ + size > upload.header_.payload_bytes) {
    *reason = RejectReason::kLength;
    return absl::InvalidArgumentError(absl::StrCat(
        "update is longer than its declared payload_bytes ", upload.header_.payload_bytes));
  }
  return absl::OkStatus();
}

absl::Status Coordinator::AddChunk(Upload& upload, uint64_t byte_offset,
                                   absl::Span<const absl::string_view> pieces) {
  if (upload.round_ == nullptr) return AddAsyncChunk(upload, byte_offset, pieces);
  RoundState& round = *upload.round_;
  tally::ReaderMutexLock gate(&round.gate);
  if (upload.state_ != Upload::State::kActive) {
    return EndedDuringUpload(upload, round);
  }
  auto fail = [&](RejectReason reason, absl::Status status) {
    tally::MutexLock lock(&mu_);
    UndoLocked(upload, reason);
    return status;
  };
  size_t size = 0;
  for (absl::string_view piece : pieces) size += piece.size();
  RejectReason reason = RejectReason::kInternal;
  if (absl::Status shape = CheckChunkShape(upload, byte_offset, size, &reason); !shape.ok()) {
    return fail(reason, shape);
  }
  if (!upload.streamed()) {
    AppendPayload(upload, pieces);
    return absl::OkStatus();
  }
  const uint64_t first = byte_offset / 4;
  absl::Status status;
  auto check = [&](size_t index, const char* bytes, size_t count) {
    if (status.ok()) status = CheckValues(bytes, count, first + index, &reason);
  };
  auto add = [&](size_t index, const char* bytes, size_t count) {
    round.sum->AddBytes(first + index, bytes, count, upload.weight_);
  };
  if (upload.row_ >= 0) {
    // Robust strategies: validate, then copy into the upload's arena row.
    ForEachFloatRun(pieces, check);
    if (status.ok()) {
      char* dst = reinterpret_cast<char*>(round.arena.data() + static_cast<size_t>(upload.row_) *
                                                                   store_.layout().NumParams()) +
                  byte_offset;
      for (absl::string_view piece : pieces) {
        std::memcpy(dst, piece.data(), piece.size());
        dst += piece.size();
      }
    }
  } else if (upload.journal_->in_memory()) {
    // One pass per received piece while it is in L1: check, journal, add. A
    // bad value later in the chunk undoes the pieces already added (they are
    // in the journal), so the chunk is still all-or-nothing.
    ForEachFloatRun(pieces, [&](size_t index, const char* bytes, size_t count) {
      check(index, bytes, count);
      if (!status.ok()) return;
      status = upload.journal_->Append(bytes, 4 * count);
      if (status.ok()) add(index, bytes, count);
    });
  } else {
    // A file journal: check everything, then one writev, then add.
    ForEachFloatRun(pieces, check);
    if (status.ok()) status = upload.journal_->AppendPieces(pieces);
    if (status.ok()) ForEachFloatRun(pieces, add);
  }
  if (!status.ok()) return fail(reason, status);
  CountReceived(upload, size);
  return absl::OkStatus();
}

absl::Status Coordinator::CheckValues(const char* bytes, size_t count, uint64_t first,
                                      RejectReason* reason) const {
  const float max_abs = config_.limits().max_abs_value();
  if (AllWithinBytes(bytes, count, max_abs)) return absl::OkStatus();
  const size_t bad = FirstOutsideBytes(bytes, count, max_abs);
  float value;
  std::memcpy(&value, bytes + 4 * bad, 4);
  if (!std::isfinite(value)) {
    *reason = RejectReason::kNonFinite;
    return absl::InvalidArgumentError(
        absl::StrCat("non-finite value (NaN or Inf) at parameter ", first + bad));
  }
  *reason = RejectReason::kValueRange;
  return absl::InvalidArgumentError(absl::StrCat("value ", value, " at parameter ", first + bad,
                                                 " exceeds limits.max_abs_value ", max_abs));
}

void Coordinator::CountReceived(Upload& upload, size_t size) {
  upload.received_ += size;
  bytes_received_.fetch_add(size, std::memory_order_relaxed);
  metrics_->update_bytes_received.Increment(static_cast<double>(size));
}

absl::Status Coordinator::CheckUploadCodec(const UpdateHeaderInfo& h) const {
  if (!h.codec_known) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", h.codec_id, " is not one this server knows"));
  }
  const compress::CodecInfo* info = compress::FindCodec(h.codec.id);
  bool accepted = h.codec.id == compress::CodecId::kFloat32;
  for (const compress::CodecSpec& spec : upload_codecs_) accepted |= spec.id == h.codec.id;
  if (!accepted) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", info->name,
                     " is not accepted here: use the one Join assigned (the server "
                     "accepts float32 and its compression.upload codecs)"));
  }
  if (absl::Status valid = compress::ValidateSpec(h.codec, store_.layout().NumParams());
      !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("codec_params: ", valid.message()));
  }
  return absl::OkStatus();
}

void Coordinator::AppendPayload(Upload& upload, absl::Span<const absl::string_view> pieces) {
  size_t size = 0;
  for (absl::string_view piece : pieces) {
    upload.payload_.append(piece.data(), piece.size());
    size += piece.size();
  }
  CountReceived(upload, size);
}

absl::Status Coordinator::DecodePayload(const Upload& upload, absl::Span<float> target,
                                        RejectReason* reason) const {
  *reason = RejectReason::kMalformed;
  TALLY_RETURN_IF_ERROR(compress::Decode(upload.header_.codec, upload.payload_, target));
  return CheckValues(reinterpret_cast<const char*>(target.data()), target.size(), 0, reason);
}

absl::StatusOr<CommitInfo> Coordinator::FinishUpload(Upload& upload) {
  if (upload.round_ == nullptr) return FinishAsyncUpload(upload);
  RoundState& round = *upload.round_;
  CommitInfo info;
  {
    tally::ReaderMutexLock gate(&round.gate);
    // A compressed upload is decoded here, outside mu_: the gate keeps the
    // round open, and the arena row (robust) or the striped sum (mean) takes
    // it without disturbing other uploads. Decoders write nothing on error.
    if (!upload.streamed() && upload.state_ == Upload::State::kActive &&
        upload.received_ == upload.header_.payload_bytes) {
      const size_t d = store_.layout().NumParams();
      absl::Status decoded;
      RejectReason reason = RejectReason::kMalformed;
      if (upload.row_ >= 0) {
        decoded = DecodePayload(
            upload, absl::MakeSpan(round.arena.data() + static_cast<size_t>(upload.row_) * d, d),
            &reason);
      } else {
        // Decoded and checked whole before any of it joins the sum.
        std::vector<float> scratch = decode_pool_.Take();
        decoded = DecodePayload(upload, absl::MakeSpan(scratch), &reason);
        if (decoded.ok()) round.sum->Add(0, scratch.data(), d, upload.weight_);
        decode_pool_.Give(std::move(scratch));
      }
      if (!decoded.ok()) {
        tally::MutexLock lock(&mu_);
        UndoLocked(upload, reason);
        return decoded;
      }
      upload.payload_ = std::string();
    }
    tally::MutexLock lock(&mu_);
    if (upload.state_ != Upload::State::kActive) {
      return EndedDuringUpload(upload, round);
    }
    if (upload.received_ != upload.header_.payload_bytes) {
      UndoLocked(upload, RejectReason::kLength);
      return absl::InvalidArgumentError(absl::StrCat("truncated update: received ",
                                                     upload.received_, " of ",
                                                     upload.header_.payload_bytes, " bytes"));
    }
    upload.state_ = Upload::State::kCommitted;
    ReleaseJournalLocked(upload);
    if (upload.row_ >= 0) {
      round.row_state[upload.row_] = 2;
      round.row_weight[upload.row_] = static_cast<double>(upload.header_.num_samples);
      round.row_client[upload.row_] = upload.header_.client_id;
    }
    round.uploading.erase(upload.header_.client_id);
    round.submitted.insert(upload.header_.client_id);
    round.accepted += 1;
    round.weight_sum += upload.header_.num_samples;
    ledger_.Accepted(upload.header_.client_id, upload.header_.update_id);
    round.committed_ids.emplace_back(upload.header_.client_id, upload.header_.update_id);
    ++updates_accepted_;
    metrics_->updates_accepted.Increment();
    metrics_->uploads_in_flight.Decrement();
    metrics_->push_duration.Observe(absl::ToDoubleSeconds(clock_->Now() - upload.started_));
    metrics_->UpdateCodecBytes(upload.header_.codec.id, upload.header_.payload_bytes,
                               4 * upload.header_.num_params);
    info.round = round.round;
    info.model_version = round.base_version;
    info.accepted_in_round = round.accepted;
    if (RoundComplete(round, config_)) RequestCloseLocked();
  }
  upload.coordinator_ = nullptr;  // Nothing left to abort.
  return info;
}

void Coordinator::AbortUpload(Upload& upload, RejectReason reason) {
  if (upload.coordinator_ == nullptr) return;
  if (upload.round_ == nullptr) {
    tally::MutexLock lock(&mu_);
    AbortAsyncLocked(upload, reason);
    upload.coordinator_ = nullptr;
    return;
  }
  RoundState& round = *upload.round_;
  tally::ReaderMutexLock gate(&round.gate);
  tally::MutexLock lock(&mu_);
  UndoLocked(upload, reason);
  upload.coordinator_ = nullptr;
}

void Coordinator::UndoLocked(Upload& upload, RejectReason reason) {
  if (upload.state_ != Upload::State::kActive) return;
  upload.state_ = Upload::State::kAborted;
  upload.abort_reason_ = reason;
  RoundState& round = *upload.round_;
  round.uploading.erase(upload.header_.client_id);
  // A failed upload gives its task slot back, so that a broken or malicious
  // client cannot keep an honest one out of the round.
  round.assigned.erase(upload.header_.client_id);
  metrics_->uploads_in_flight.Decrement();
  metrics_->RejectedUpdate(reason, upload.header_.client_id,
                           absl::StrCat("update '", upload.header_.update_id, "' aborted after ",
                                        upload.received_, " bytes"));
  if (upload.row_ >= 0) round.row_state[upload.row_] = 0;  // Its row is simply free again.
  if (upload.journal_ != nullptr && upload.journal_->size() > 0) {
    // Subtract exactly what was added: the exact sum is an integer sum, so
    // S + w q(x) - w q(x) = S bit for bit.
    absl::Status replayed =
        upload.journal_->Replay([&](uint64_t offset, const char* data, size_t size) {
          round.sum->AddBytes(offset / 4, data, size / 4, -upload.weight_);
        });
    if (!replayed.ok()) {
      // The round's sum can no longer be trusted: fail the round rather than
      // publish a corrupted model.
      LogError(absl::StrCat("round ", round.round, ": cannot undo an aborted upload (",
                            replayed.message(), "); the round will fail"));
      round.accepted = 0;
      round_poisoned_ = true;
      RequestCloseLocked();
    }
  }
  ReleaseJournalLocked(upload);
}

void Coordinator::ReleaseJournalLocked(Upload& upload) {
  journals_.Release(std::move(upload.journal_), upload.header_.payload_bytes, clock_->Now());
}

void Coordinator::RequestCloseLocked() { close_requested_ = true; }

// ---------------------------------------------------------------------------
// Closing rounds (worker thread).

void Coordinator::CloseRound() {
  std::shared_ptr<RoundState> round;
  {
    tally::MutexLock lock(&mu_);
    close_requested_ = false;
    if (phase_ != Phase::kOpen) return;
    // From here on no upload can begin, and no other thread closes this round.
    phase_ = Phase::kClosing;
    round = current_;
  }
  const absl::Time close_start = clock_->Now();
  {
    // Waits for chunk adds and commits in progress to finish.
    tally::WriterMutexLock gate(&round->gate);
    tally::MutexLock lock(&mu_);
    std::vector<Upload*> in_flight;
    for (auto& [client, upload] : round->uploading) in_flight.push_back(upload);
    // Closed with enough updates: the uploads still running were the
    // over-selected surplus; at the deadline they were too late.
    const RejectReason reason =
        RoundComplete(*round, config_) ? RejectReason::kSurplus : RejectReason::kStale;
    for (Upload* upload : in_flight) UndoLocked(*upload, reason);
  }
  // No upload can touch round->sum any more: it is this thread's alone.
  // The new model, computed outside any lock.
  std::vector<float> next;
  std::shared_ptr<const ModelSnapshot> current = store_.Current();
  const bool poisoned = round_poisoned_.exchange(false);
  const bool enough = round->accepted > 0 && round->accepted >= config_.rounds().min_clients();
  if (!poisoned && enough && step_->robust()) {
    absl::Status aggregated = AggregateRows(*round, &next);
    if (!aggregated.ok()) {
      LogWarning(absl::StrCat("round ", round->round, ": ", aggregated.message()));
      metrics_->rule_failures.Increment();
      next.clear();
    }
  } else if (!poisoned && enough && round->sum != nullptr) {
    {
      tally::MutexLock lock(&mu_);
      next = std::move(spare_);
      spare_ = std::vector<float>();
    }
    next.resize(store_.layout().NumParams());
    round->sum->Extract(static_cast<double>(round->weight_sum), absl::MakeSpan(next));
  }
  if (round->sum != nullptr) {
    round->sum->Reset();
    tally::MutexLock lock(&mu_);
    if (spare_sum_ == nullptr) spare_sum_ = std::move(round->sum);
  }
  if (relay_) {
    CloseRelayRound(*round, std::move(next));
    return;
  }
  if (!next.empty()) {
    if (absl::Status applied = step_->Apply(current->params, absl::MakeSpan(next)); !applied.ok()) {
      LogError(
          absl::StrCat("round ", round->round, ": ", applied.message(), "; model left unchanged"));
      next.clear();
    }
  }
  round->sum.reset();
  round->arena = std::vector<float>();
  const bool published = !next.empty();
  const absl::Time now = clock_->Now();
  std::shared_ptr<const ModelSnapshot> snapshot;
  {
    // Publishing and opening the next round happen atomically for callers:
    // whoever sees version v+1 also sees round r+1 open on it. Listeners
    // (WatchModel streams) hear of it after mu_ is released.
    tally::MutexLock lock(&mu_);
    if (published) {
      snapshot = store_.PublishQuietly(0, std::move(next), current->round + 1, now);
      for (const auto& [client, id] : round->committed_ids) ledger_.Applied(client, id);
      ++rounds_completed_;
      metrics_->rounds_completed.Increment();
      last_round_duration_ = now - std::min(round->first_task, close_start);
      metrics_->round_duration.Observe(absl::ToDoubleSeconds(last_round_duration_));
      metrics_->aggregation_duration.Observe(absl::ToDoubleSeconds(now - close_start));
    } else {
      ++rounds_failed_;
      metrics_->rounds_failed.Increment();
      LogWarning(absl::StrCat("round ", round->round, " failed with ", round->accepted,
                              " update(s) (min_clients ", config_.rounds().min_clients(),
                              "); model unchanged"));
    }
    ++round_;
    base_version_ = store_.Current()->version;
    current_ = std::make_shared<RoundState>(round_, base_version_);
    phase_ = TotalRoundsReachedLocked() ? Phase::kDone : Phase::kOpen;
    ExportProgressLocked();
    // The retired snapshot's buffer becomes the next sum if nobody (a
    // PullModel in progress) still holds it: once replaced in the store, its
    // count can only fall.
    if (published && current.use_count() == 1) {
      spare_ = std::move(const_cast<ModelSnapshot&>(*current).params);  // Sole owner.
    }
  }
  if (snapshot != nullptr) store_.NotifyListeners(snapshot);
  if (published) {
    LogInfo(absl::StrCat("round ", round->round, " aggregated ", round->accepted,
                         " update(s) into version ", store_.Current()->version));
  }
  ReleaseWaiters(/*all=*/false);
  if (published) MaybeCheckpoint(/*force=*/false);
}

void Coordinator::CloseRelayRound(RoundState& round, std::vector<float> mean) {
  {
    tally::MutexLock lock(&mu_);
    RelayBatch batch;
    batch.round = round.round;
    batch.base_version = round.base_version;
    batch.mean = std::move(mean);
    batch.weight = round.weight_sum;
    batch.updates = round.accepted;
    if (batch.mean.empty()) {
      ++rounds_failed_;
      metrics_->rounds_failed.Increment();
      batch.weight = 0;
    } else {
      ++rounds_completed_;
      metrics_->rounds_completed.Increment();
    }
    relay_batch_ = std::move(batch);
    if (phase_ == Phase::kClosing) phase_ = Phase::kIdle;
  }
  LogInfo(absl::StrCat("relay round ", round.round, " closed with ", round.accepted, " update(s)"));
  ReleaseWaiters(/*all=*/false);
}

void Coordinator::PublishUpstream(uint64_t version, uint64_t round, std::vector<float> params) {
  std::shared_ptr<const ModelSnapshot> snapshot;
  {
    tally::MutexLock lock(&mu_);
    snapshot = store_.PublishQuietly(version, std::move(params), round, clock_->Now());
    base_version_ = version;
    ExportProgressLocked();
  }
  store_.NotifyListeners(snapshot);
}

void Coordinator::OpenRelayRound(uint64_t round) {
  {
    tally::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone) return;
    round_ = round;
    base_version_ = store_.Current()->version;
    current_ = std::make_shared<RoundState>(round_, base_version_);
    relay_batch_.reset();
    phase_ = Phase::kOpen;
    ExportProgressLocked();
  }
  ReleaseWaiters(/*all=*/false);
}

std::optional<Coordinator::RelayBatch> Coordinator::AwaitRelayBatch() {
  tally::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return relay_batch_.has_value() || stopping_ || draining_;
  };
  while (!ready()) mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
  if (!relay_batch_.has_value()) return std::nullopt;
  std::optional<RelayBatch> batch = std::move(relay_batch_);
  relay_batch_.reset();
  return batch;
}

void Coordinator::FinishRelay() {
  {
    tally::MutexLock lock(&mu_);
    phase_ = Phase::kDone;
  }
  ReleaseWaiters(/*all=*/true);
}

absl::Status Coordinator::AggregateRows(RoundState& round, std::vector<float>* out) {
  const size_t d = store_.layout().NumParams();
  // The committed rows, in a canonical order (by client id, unique in a
  // round), so that the rule sees the same batch whatever the arrival order:
  // floating-point rules are not associative. No upload touches the arena
  // any more (the round is closed and its gate was drained).
  std::vector<size_t> rows;
  for (size_t r = 0; r < round.row_state.size(); ++r) {
    if (round.row_state[r] == 2) rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end(),
            [&](size_t a, size_t b) { return round.row_client[a] < round.row_client[b]; });
  PermuteRows(absl::MakeSpan(round.arena), d, rows);
  const size_t n = rows.size();
  std::vector<double> weights;
  std::vector<std::string> clients;
  for (size_t r : rows) {
    weights.push_back(round.row_weight[r]);
    clients.push_back(round.row_client[r]);
  }
  if (const std::string& trusted = config_.strategy().trusted_client(); !trusted.empty()) {
    absl::Status first = TrustedRowFirst(trusted, d, round.arena, weights, clients);
    if (!first.ok()) return first;
  }
  out->resize(d);
  return RunRule(absl::MakeSpan(round.arena.data(), n * d), n, std::move(weights),
                 std::move(clients), round.round, absl::MakeSpan(*out));
}

absl::Status Coordinator::RunRule(absl::Span<float> batch, size_t n, std::vector<double> weights,
                                  std::vector<std::string> clients, uint64_t step,
                                  absl::Span<float> out) {
  const absl::Time start = absl::Now();
  std::vector<double> influence;
  absl::Status status = step_->CombineRows(batch, n, std::move(weights), out, &influence);
  metrics_->rule_duration.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (status.ok()) ReportInfluence(step, clients, influence);
  return status;
}

void Coordinator::ReportInfluence(uint64_t round, const std::vector<std::string>& clients,
                                  const std::vector<double>& influence) {
  if (influence.empty() || influence.size() != clients.size()) return;
  std::vector<std::string> rejected;
  for (size_t i = 0; i < clients.size(); ++i) {
    metrics_->RuleInfluence(clients[i], influence[i]);
    if (influence[i] < ServerMetrics::kRejectedInfluence) rejected.push_back(clients[i]);
  }
  if (rejected.empty()) return;
  constexpr size_t kNamed = 10;
  const size_t count = rejected.size();
  if (count > kNamed) rejected.resize(kNamed);
  LogInfo(absl::StrCat("round ", round, ": ", step_->rule_name(), " rejected or down-weighted ",
                       count, " of ", clients.size(), " update(s): ", absl::StrJoin(rejected, ", "),
                       count > kNamed ? ", ..." : ""));
}

bool Coordinator::TotalRoundsReachedLocked() const {
  const uint64_t total = config_.rounds().total_rounds();
  return total > 0 && rounds_completed_ >= total;
}

void Coordinator::ExportProgressLocked() {
  metrics_->model_version.Set(static_cast<double>(base_version_));
  metrics_->current_round.Set(static_cast<double>(round_));
}

void Coordinator::CheckTimers() {
  bool close = false;
  {
    tally::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    if (phase_ == Phase::kOpen && now >= current_->deadline) close = true;
    ExpireLeasesLocked(now);
    // Expired sessions: a scan over all clients, so at most once a second.
    if (now - last_session_scan_ >= absl::Seconds(1)) {
      last_session_scan_ = now;
      for (const std::string& client : sessions_.Expired(now)) {
        LogInfo(absl::StrCat("session of client '", client, "' expired"));
        DropSessionLocked(client);
      }
    }
  }
  if (close) CloseRound();
  ReleaseWaiters(/*all=*/false);
}

void Coordinator::TickForTesting() {
  bool close;
  {
    tally::MutexLock lock(&mu_);
    close = close_requested_;
  }
  if (close) CloseRound();
  RunSchedule();
  CheckTimers();
}

void Coordinator::WorkerLoop() {
  while (true) {
    bool close = false;
    bool stop = false;
    {
      tally::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return close_requested_ || stopping_ || !decisions_.empty();
      };
      // Schedule timers are checked on every tick (so within 50 ms of due).
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(50));
      close = close_requested_;
      stop = stopping_;
    }
    // A round its last upload completed before the stop is still published
    // (and so in the final checkpoint).
    if (close) CloseRound();
    if (stop) return;
    RunSchedule();
    CheckTimers();
    MaybeFinishRun();
  }
}

void Coordinator::MaybeFinishRun() {
  {
    tally::MutexLock lock(&mu_);
    if (phase_ != Phase::kDone || run_finished_) return;
  }
  const std::shared_ptr<const ModelSnapshot> model = store_.Current();
  LogInfo(absl::StrCat(
      "federation finished: ",
      relay_ ? std::string("the upstream is done")
             : absl::StrCat("rounds.total_rounds = ", config_.rounds().total_rounds(), " reached"),
      "; final model version ", model->version, " (round ", model->round, ")"));
  MaybeCheckpoint(/*force=*/true);
  if (const std::string& path = config_.final_model_path(); !path.empty()) {
    const absl::Status written = WriteModelFile(path, store_.layout(), model->params);
    if (written.ok()) {
      LogInfo(absl::StrCat("final model (version ", model->version, ") written to ", path));
    } else {
      LogError(absl::StrCat("final_model_path: ", written.message()));
    }
  }
  tally::MutexLock lock(&mu_);
  run_finished_ = true;
}

bool Coordinator::RunFinished() const {
  tally::MutexLock lock(&mu_);
  return run_finished_;
}

CoordinatorStatus Coordinator::Status() const {
  tally::MutexLock lock(&mu_);
  CoordinatorStatus s;
  s.model_version = base_version_;
  s.round = round_;
  s.rounds_completed = rounds_completed_;
  s.rounds_failed = rounds_failed_;
  s.connected_clients = static_cast<uint32_t>(sessions_.size());
  s.updates_in_round =
      schedule_ != nullptr ? static_cast<uint32_t>(stored_.size()) : current_->accepted;
  s.uploads_in_flight =
      schedule_ != nullptr ? async_uploads_ : static_cast<uint32_t>(current_->uploading.size());
  s.updates_accepted = updates_accepted_;
  s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  s.done = phase_ == Phase::kDone;
  s.last_round_duration = last_round_duration_;
  s.buffer_allocations = pool_ != nullptr ? pool_->allocations() : 0;
  s.checkpoint_version = checkpoint_on_disk_ ? checkpointed_version_.load() : 0;
  return s;
}

}  // namespace tally::server
