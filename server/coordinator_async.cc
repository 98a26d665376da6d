// The Coordinator's asynchronous-schedule mode (see the header comment in
// server/coordinator.h and aggregators/schedules/schedule.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/exact_sum.h"
#include "core/vector_ops.h"
#include "server/coordinator.h"
#include "server/float_runs.h"
#include "server/log.h"

namespace tally::server {
namespace {

// Coordinates per step of a flush: the aggregate of a block is formed, then
// turned into the new model by the optimizer while it is in cache (64 KiB of
// each float operand, 128 KiB of 64-bit exact lanes).
constexpr size_t kFlushBlock = 16384;

}  // namespace

TaskInfo Coordinator::AsyncTaskForLocked(const std::string& client_id) {
  TaskInfo task;  // WAIT
  task.retry_after = absl::Seconds(1);
  AsyncClient& client = async_clients_[client_id];
  if (client.assignment_pending) {
    // Its next task is decided but must be on the model the worker is about
    // to publish; the waiter is released when it has.
    task.retry_after = absl::Milliseconds(100);
    return task;
  }
  const aggregators::TaskPlan plan = schedule_->PlanFor(client_id, clock_->Now());
  if (plan.wait) return task;  // Its update waits for a group / window.
  if (!client.has_task) {
    client.has_task = true;
    client.task_version = base_version_;
  }
  task.kind = TaskInfo::Kind::kTrain;
  task.round = rounds_completed_ + 1;
  task.model_version = base_version_;
  task.local_steps = plan.local_steps;
  task.deadline = plan.deadline;
  task.retry_after = absl::ZeroDuration();
  return task;
}

absl::StatusOr<std::unique_ptr<Upload>> Coordinator::BeginAsyncUploadLocked(
    const UpdateHeaderInfo& h) {
  auto it = async_clients_.find(h.client_id);
  if (it == async_clients_.end() || !it->second.has_task) {
    return RejectLocked(
        h.client_id, RejectReason::kNotSelected,
        absl::FailedPreconditionError(absl::StrCat(
            "client '", h.client_id, "' has no task: call GetTask and train on its model")));
  }
  AsyncClient& client = it->second;
  if (client.uploading) {
    return ClientBusyLocked(h.client_id);
  }
  // The base must be a version this server gave the client: its task's, or
  // a newer one it pulled since. Staleness is then never the client's word.
  const uint64_t newest = std::max(client.task_version, client.pulled_version);
  if (h.base_version < client.task_version || h.base_version > newest) {
    return RejectLocked(h.client_id, RejectReason::kMalformed,
                        absl::InvalidArgumentError(absl::StrCat(
                            "base_version ", h.base_version,
                            " was not served to this client: its task is on version ",
                            client.task_version, " and it pulled up to version ", newest)));
  }
  const uint64_t staleness = decided_version_ - h.base_version;
  if (max_staleness_ > 0 && staleness > max_staleness_) {
    return RejectLocked(
        h.client_id, RejectReason::kStale,
        absl::AbortedError(absl::StrCat("update from version ", h.base_version, " is ", staleness,
                                        " versions old (max_staleness ", max_staleness_,
                                        "); pull the current model and train again")));
  }
  if (absl::Status admitted = AdmitUploadLocked(h.client_id, async_uploads_); !admitted.ok()) {
    return admitted;
  }
  client.uploading = true;
  ++async_uploads_;
  auto upload = std::unique_ptr<Upload>(new Upload());
  upload->coordinator_ = this;
  upload->header_ = h;
  upload->started_ = clock_->Now();
  if (!upload->streamed()) upload->payload_.reserve(h.payload_bytes);
  upload->buffer_ = pool_->Take();
  metrics_->uploads_in_flight.Increment();
  return upload;
}

// Only the upload's owner calls this (uploads of asynchronous schedules are
// never aborted by another thread), so the buffer needs no lock.
absl::Status Coordinator::AddAsyncChunk(Upload& upload, uint64_t byte_offset,
                                        absl::Span<const absl::string_view> pieces) {
  if (upload.state_ != Upload::State::kActive) {
    return absl::FailedPreconditionError("the upload has already ended");
  }
  size_t size = 0;
  for (absl::string_view piece : pieces) size += piece.size();
  RejectReason reason = RejectReason::kInternal;
  absl::Status status = CheckChunkShape(upload, byte_offset, size, &reason);
  if (status.ok() && !upload.streamed()) {
    AppendPayload(upload, pieces);
    return absl::OkStatus();
  }
  if (status.ok()) {
    // Copy and check in one pass per piece, while it is in cache.
    float* dst = upload.buffer_.data() + byte_offset / 4;
    ForEachFloatRun(pieces, [&](size_t index, const char* bytes, size_t count) {
      if (!status.ok() ||
          CopyAllWithinBytes(bytes, dst + index, count, config_.limits().max_abs_value())) {
        return;
      }
      status = CheckValues(bytes, count, byte_offset / 4 + index, &reason);
    });
  }
  if (!status.ok()) {
    tally::MutexLock lock(&mu_);
    AbortAsyncLocked(upload, reason);
    return status;
  }
  CountReceived(upload, size);
  return absl::OkStatus();
}

absl::StatusOr<CommitInfo> Coordinator::FinishAsyncUpload(Upload& upload) {
  const UpdateHeaderInfo& h = upload.header_;
  CommitInfo info;
  if (!upload.streamed() && upload.state_ == Upload::State::kActive &&
      upload.received_ == h.payload_bytes) {
    // Decoded into the upload's own buffer, outside the lock.
    RejectReason reason = RejectReason::kMalformed;
    absl::Status decoded = DecodePayload(upload, absl::MakeSpan(upload.buffer_), &reason);
    upload.payload_ = std::string();
    if (!decoded.ok()) {
      tally::MutexLock lock(&mu_);
      AbortAsyncLocked(upload, reason);
      return decoded;
    }
  }
  {
    tally::MutexLock lock(&mu_);
    if (upload.state_ != Upload::State::kActive) {
      return absl::FailedPreconditionError("the upload has already ended");
    }
    if (upload.received_ != h.payload_bytes) {
      AbortAsyncLocked(upload, RejectReason::kLength);
      return absl::InvalidArgumentError(absl::StrCat(
          "truncated update: received ", upload.received_, " of ", h.payload_bytes, " bytes"));
    }
    // Versions may have been decided while the bytes arrived: the staleness
    // charged is the one at arrival, now.
    const uint64_t staleness = decided_version_ - h.base_version;
    if (max_staleness_ > 0 && staleness > max_staleness_) {
      AbortAsyncLocked(upload, RejectReason::kStale);
      return absl::AbortedError(absl::StrCat("update from version ", h.base_version, " became ",
                                             staleness,
                                             " versions old during the upload (max_staleness ",
                                             max_staleness_, "); pull and train again"));
    }
    const aggregators::UpdateHandle handle = next_handle_++;
    absl::StatusOr<aggregators::Decision> decision = schedule_->OnArrival(
        aggregators::Arrival{h.client_id, handle, staleness, h.num_samples}, clock_->Now());
    if (!decision.ok()) {
      AbortAsyncLocked(upload, RejectReason::kNotSelected);
      return decision.status();
    }
    stored_[handle] = StoredUpdate{std::move(upload.buffer_), h.client_id, h.update_id};
    upload.state_ = Upload::State::kCommitted;
    AsyncClient& client = async_clients_[h.client_id];
    client.uploading = false;
    client.has_task = false;
    --async_uploads_;
    ledger_.Accepted(h.client_id, h.update_id);
    ++updates_accepted_;
    metrics_->updates_accepted.Increment();
    metrics_->uploads_in_flight.Decrement();
    metrics_->UpdateCodecBytes(h.codec.id, h.payload_bytes, 4 * h.num_params);
    metrics_->update_staleness.Observe(static_cast<double>(staleness));
    metrics_->push_duration.Observe(absl::ToDoubleSeconds(clock_->Now() - upload.started_));
    EnqueueDecisionLocked(std::move(decision).value());
    info.round = rounds_completed_ + 1;
    info.model_version = base_version_;
    info.accepted_in_round = static_cast<uint32_t>(stored_.size());
    info.staleness = staleness;
  }
  upload.coordinator_ = nullptr;
  return info;
}

void Coordinator::AbortAsyncLocked(Upload& upload, RejectReason reason) {
  if (upload.state_ != Upload::State::kActive) return;
  upload.state_ = Upload::State::kAborted;
  async_clients_[upload.header_.client_id].uploading = false;
  --async_uploads_;
  pool_->Give(std::move(upload.buffer_));
  metrics_->uploads_in_flight.Decrement();
  metrics_->RejectedUpdate(reason, upload.header_.client_id,
                           absl::StrCat("update '", upload.header_.update_id, "' aborted after ",
                                        upload.received_, " bytes"));
}

void Coordinator::EnqueueDecisionLocked(aggregators::Decision decision) {
  if (decision.flushes.empty() && decision.assignments.empty() && decision.dropped.empty()) {
    return;
  }
  decided_version_ += decision.flushes.size();
  for (const aggregators::Assignment& a : decision.assignments) {
    async_clients_[a.client_id].assignment_pending = true;
  }
  decisions_.push_back(std::move(decision));
}

bool Coordinator::HasScheduleWorkLocked() const {
  return schedule_ != nullptr && (!decisions_.empty() || clock_->Now() >= schedule_->NextTimer());
}

void Coordinator::RunSchedule() {
  tally::MutexLock exec(&exec_mu_);
  {
    tally::MutexLock lock(&mu_);
    if (!HasScheduleWorkLocked()) return;
    const absl::Time now = clock_->Now();
    if (now >= schedule_->NextTimer()) EnqueueDecisionLocked(schedule_->OnTimer(now));
  }
  while (true) {
    aggregators::Decision decision;
    std::vector<std::vector<StoredUpdate>> updates;  // Per flush.
    {
      tally::MutexLock lock(&mu_);
      if (decisions_.empty()) break;
      decision = std::move(decisions_.front());
      decisions_.pop_front();
      for (const aggregators::Flush& flush : decision.flushes) {
        std::vector<StoredUpdate>& batch = updates.emplace_back();
        for (const aggregators::WeightedUpdate& u : flush.updates) {
          auto it = stored_.find(u.handle);
          if (it == stored_.end()) std::abort();  // A schedule names only live handles.
          batch.push_back(std::move(it->second));
          stored_.erase(it);
        }
      }
      for (aggregators::UpdateHandle h : decision.dropped) {
        auto it = stored_.find(h);
        if (it == stored_.end()) continue;
        LogInfo(absl::StrCat("schedule ", schedule_->name(), " dropped an update of client '",
                             it->second.client_id, "'"));
        pool_->Give(std::move(it->second.delta));
        stored_.erase(it);
      }
    }
    for (size_t i = 0; i < decision.flushes.size(); ++i) {
      const bool published = ExecuteFlush(decision.flushes[i], updates[i]);
      tally::MutexLock lock(&mu_);
      if (!published) --decided_version_;  // The flush's version never came.
      for (StoredUpdate& u : updates[i]) pool_->Give(std::move(u.delta));
    }
    {
      tally::MutexLock lock(&mu_);
      for (const aggregators::Assignment& a : decision.assignments) {
        async_clients_[a.client_id].assignment_pending = false;
      }
    }
    ReleaseWaiters(/*all=*/false);
  }
  MaybeCheckpoint(/*force=*/false);
}

bool Coordinator::ExecuteFlush(const aggregators::Flush& flush,
                               std::vector<StoredUpdate>& updates) {
  const size_t d = store_.layout().NumParams();
  const size_t n = updates.size();
  uint64_t step_number;
  {
    tally::MutexLock lock(&mu_);
    if (phase_ == Phase::kDone) return false;  // total_rounds reached: nothing more is applied.
    step_number = rounds_completed_ + 1;
  }
  const absl::Time started = clock_->Now();
  std::shared_ptr<const ModelSnapshot> current = store_.Current();
  // The linear path builds the new model in the first update's buffer
  // (scaled in place): no cold output buffer to fill.
  const bool linear = !step_->robust() || n < 2;
  std::vector<float> next = linear ? std::move(updates[0].delta) : pool_->Take();
  bool ok = true;
  // Block by block: `combine` leaves the aggregate of [begin, begin + count)
  // in next, then the optimizer turns it into the new model while it is in
  // cache (one pass over the model rather than one per step).
  auto apply_blocks = [&](const std::function<void(size_t, size_t)>& combine) {
    step_->Prepare(d);
    for (size_t begin = 0; begin < d && ok; begin += kFlushBlock) {
      const size_t count = std::min(kFlushBlock, d - begin);
      combine(begin, count);
      const absl::Status applied = step_->ApplyRange(current->params.data() + begin,
                                                     next.data() + begin, begin, count);
      if (!applied.ok()) {
        LogError(absl::StrCat("schedule step: ", applied.message(), "; model left unchanged"));
        ok = false;
      }
    }
  };
  if (!linear) {
    // Robust + asynchronous: the rule over the flush's updates, scaled by the
    // sum of their coefficients (for "average", weighted by them, this is
    // exactly sum of weight * delta). Rows in a canonical order (client id,
    // update id), as in synchronous rounds.
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return std::tie(updates[a].client_id, updates[a].update_id) <
             std::tie(updates[b].client_id, updates[b].update_id);
    });
    flush_arena_.resize(n * d);
    std::vector<double> weights;
    std::vector<std::string> clients;
    for (size_t row = 0; row < n; ++row) {
      const size_t i = order[row];
      std::memcpy(flush_arena_.data() + row * d, updates[i].delta.data(), d * sizeof(float));
      weights.push_back(flush.updates[i].weight);
      clients.push_back(updates[i].client_id);
    }
    const absl::Status status = RunRule(absl::MakeSpan(flush_arena_), n, std::move(weights),
                                        std::move(clients), step_number, absl::MakeSpan(next));
    if (status.ok()) {
      double weight_sum = 0;
      for (const aggregators::WeightedUpdate& u : flush.updates) weight_sum += u.weight;
      const float scale = static_cast<float>(weight_sum);
      apply_blocks([&](size_t begin, size_t count) {
        for (float& v : absl::MakeSpan(next).subspan(begin, count)) v *= scale;
      });
    } else {
      LogWarning(absl::StrCat("schedule step of ", n, " update(s): ", status.message(),
                              "; model unchanged, the updates are dropped"));
      metrics_->rule_failures.Increment();
      ok = false;
    }
  } else {
    // g = sum_i weight_i * delta_i, exactly: independent of the order of
    // the updates (aggregators/step/aggregation_step.h ExactCombination).
    std::vector<double> coefficients;
    for (const aggregators::WeightedUpdate& u : flush.updates) coefficients.push_back(u.weight);
    absl::StatusOr<aggregators::ExactCombination> combination =
        aggregators::ExactCombination::Create(coefficients);
    if (!combination.ok()) {
      LogError(absl::StrCat("schedule step: ", combination.status().message(),
                            "; model left unchanged"));
      ok = false;
    } else {
      std::vector<const float*> rows(n);
      apply_blocks([&](size_t begin, size_t count) {
        // Update 0's delta is `next` itself (moved above): the combination
        // reads every row of the block before it writes the block.
        rows[0] = next.data() + begin;
        for (size_t i = 1; i < n; ++i) rows[i] = updates[i].delta.data() + begin;
        combination->Combine(rows, count, next.data() + begin);
      });
    }
  }
  const absl::Time now = clock_->Now();
  std::shared_ptr<const ModelSnapshot> snapshot;
  {
    tally::MutexLock lock(&mu_);
    if (!ok) {
      pool_->Give(std::move(next));
      ++rounds_failed_;
      metrics_->rounds_failed.Increment();
      return false;
    }
    snapshot = store_.PublishQuietly(0, std::move(next), current->round + 1, now);
    for (const StoredUpdate& u : updates) ledger_.Applied(u.client_id, u.update_id);
    ++rounds_completed_;
    round_ = rounds_completed_ + 1;
    base_version_ = snapshot->version;
    metrics_->rounds_completed.Increment();
    metrics_->aggregation_duration.Observe(absl::ToDoubleSeconds(now - started));
    ExportProgressLocked();
    if (TotalRoundsReachedLocked()) phase_ = Phase::kDone;
  }
  store_.NotifyListeners(snapshot);  // Outside mu_: WatchModel streams write.
  return true;
}

}  // namespace tally::server
