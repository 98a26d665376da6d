// The Coordinator's worker side: closing batches (the driver says when, the
// sink combines, the publisher publishes), timers, shutdown, the relay's
// calls and the status.
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/coordinator.h"
#include "server/coordinator_epoch.h"
#include "server/log.h"

namespace tally::server {

Coordinator::~Coordinator() { Stop(); }

void Coordinator::WorkerLoop() {
  while (true) {
    bool stop = false;
    {
      tally::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || driver_->WorkDue(clock_->Now());
      };
      // Timers are checked on every tick (so within 50 ms of due).
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(50));
      stop = stopping_;
    }
    // A round its last upload completed before the stop is still published
    // (and so in the final checkpoint).
    RunDue();
    if (stop) return;
    CheckTimers();
    MaybeFinishRun();
  }
}

void Coordinator::TickForTesting() {
  RunDue();
  CheckTimers();
}

void Coordinator::RunDue() {
  tally::MutexLock exec(&exec_mu_);
  bool executed = false;
  {
    tally::MutexLock lock(&mu_);
    driver_->Tick(clock_->Now());
  }
  while (true) {
    bool seal = false;
    std::shared_ptr<Epoch> sealed;
    {
      tally::MutexLock lock(&mu_);
      if (!driver_->NextDue(clock_->Now(), &seal)) break;
      if (seal) sealed = epoch_;
    }
    if (sealed != nullptr) Seal(*sealed);
    DriverBatch batch;
    {
      tally::MutexLock lock(&mu_);
      batch = driver_->TakeBatch(clock_->Now());
      for (aggregators::UpdateHandle h : batch.dropped) {
        LogInfo(absl::StrCat(batch.source, " dropped an update of client '", sink_->Drop(h), "'"));
      }
    }
    Execute(batch);
    executed = true;
    ReleaseWaiters(/*all=*/false);
  }
  if (executed) publisher_->MaybeCheckpoint(/*force=*/false);
}

void Coordinator::Seal(Epoch& epoch) {
  // Waits for chunk adds and commits in progress to finish.
  tally::WriterMutexLock gate(&epoch.gate);
  tally::MutexLock lock(&mu_);
  const RejectReason reason = driver_->SealReason();
  std::vector<Upload*> running;
  for (auto& [client, upload] : epoch.uploads) running.push_back(upload);
  for (Upload* upload : running) UndoLocked(*upload, reason);
  epoch_ = std::make_shared<Epoch>();
}

bool Coordinator::Execute(DriverBatch& batch) {
  const std::shared_ptr<const ModelSnapshot> current = store_.Current();
  const absl::Time started = clock_->Now();
  std::vector<float> next;
  if (batch.aggregate) {
    publisher_->BeginBlocks(store_.layout().NumParams());
    BlockFn block = [&](float* out, size_t begin, size_t count) {
      absl::Status applied = publisher_->ApplyBlock(*current, out, begin, count);
      if (!applied.ok()) {
        LogError(absl::StrCat(batch.label, ": ", applied.message(), "; model left unchanged"));
      }
      return applied;
    };
    absl::StatusOr<std::vector<float>> combined = sink_->Combine(batch.sink, block);
    if (combined.ok()) next = std::move(combined).value();
  } else {
    sink_->Discard(batch.sink);
  }
  Publisher::Outcome outcome;
  {
    // Publishing and opening what comes next happen atomically for callers:
    // whoever sees version v+1 also sees round r+1 open on it. Listeners
    // (WatchModel streams) hear of it after mu_ is released.
    tally::MutexLock lock(&mu_);
    if (batch.counts) {
      outcome = publisher_->Publish(batch, std::move(next), *current, started);
      outcome.ok ? metrics_->rounds_completed.Increment() : metrics_->rounds_failed.Increment();
    }
    if (outcome.snapshot != nullptr) NoteRoundLocked(batch, outcome.snapshot->version);
    if (outcome.snapshot != nullptr) {
      for (const auto& [client, id] : batch.ids) ledger_.Applied(client, id);
    }
    driver_->Finished(batch, outcome.ok, store_.Current()->version, clock_->Now());
  }
  if (outcome.snapshot != nullptr) store_.NotifyListeners(outcome.snapshot);
  return outcome.snapshot != nullptr;
}

void Coordinator::CheckTimers() {
  {
    tally::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    // Expired sessions: a scan over all clients, so at most once a second.
    if (now - last_session_scan_ >= absl::Seconds(1)) {
      last_session_scan_ = now;
      for (const std::string& client : sessions_.Expired(now)) {
        LogInfo(absl::StrCat("session of client '", client, "' expired"));
        DropSessionLocked(client);
      }
    }
  }
  // An evaluation closes at its deadline (its result logged).
  if (workflow_ != nullptr) workflow_->Poll();
  ReleaseWaiters(/*all=*/false);
}

void Coordinator::MaybeFinishRun() {
  {
    tally::MutexLock lock(&mu_);
    if (!driver_->done() || run_finished_) return;
  }
  // The run ends once the evaluation of its last version has closed.
  if (workflow_ != nullptr && workflow_->HoldsEnd()) return;
  publisher_->FinishRun();
  tally::MutexLock lock(&mu_);
  run_finished_ = true;
}

bool Coordinator::RunFinished() const {
  tally::MutexLock lock(&mu_);
  return run_finished_;
}

void Coordinator::BeginDrain() {
  {
    tally::MutexLock lock(&mu_);
    admission_.BeginDrain();
  }
  publisher_->Stop();
  ReleaseWaiters(/*all=*/true);
}

void Coordinator::Stop() {
  {
    tally::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    admission_.BeginDrain();
  }
  publisher_->Stop();
  ReleaseWaiters(/*all=*/true);
  if (worker_.joinable()) worker_.join();
  // Asynchronous schedules: apply what was already decided before the final
  // checkpoint. (Updates still buffered by the schedule are not kept.)
  RunDue();
  publisher_->MaybeCheckpoint(/*force=*/true);
}

CoordinatorStatus Coordinator::Status() const {
  tally::MutexLock lock(&mu_);
  CoordinatorStatus s;
  driver_->FillStatus(&s);
  s.connected_clients = static_cast<uint32_t>(sessions_.size());
  s.uploads_in_flight = static_cast<uint32_t>(admission_.in_flight());
  s.updates_accepted = updates_accepted_;
  s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  s.buffer_allocations = pool_->allocations();
  s.checkpoint_version = publisher_->checkpoint_version();
  if (privacy_ != nullptr) s.privacy = privacy_->Progress();
  return s;
}

// ---------------------------------------------------------------------------
// Relay mode.

void Coordinator::PublishUpstream(uint64_t version, uint64_t round, std::vector<float> params) {
  std::shared_ptr<const ModelSnapshot> snapshot;
  {
    tally::MutexLock lock(&mu_);
    snapshot = store_.PublishQuietly(version, std::move(params), round, clock_->Now());
    driver_->ModelChanged(version);
  }
  store_.NotifyListeners(snapshot);
}

void Coordinator::OpenRelayRound(uint64_t round) {
  {
    tally::MutexLock lock(&mu_);
    driver_->OpenRound(round, store_.Current()->version);
  }
  ReleaseWaiters(/*all=*/false);
}

std::optional<Coordinator::RelayBatch> Coordinator::AwaitRelayBatch() {
  return publisher_->AwaitBatch();
}

void Coordinator::FinishRelay() {
  {
    tally::MutexLock lock(&mu_);
    driver_->Finish();
  }
  ReleaseWaiters(/*all=*/true);
}

}  // namespace tally::server
