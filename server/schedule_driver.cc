#include "server/schedule_driver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace tally::server {

ScheduleDriver::ScheduleDriver(Options options)
    : options_(std::move(options)),
      schedule_(*options_.schedule),
      metrics_(options_.metrics),
      decided_version_(options_.initial_version),
      base_version_(options_.initial_version),
      rounds_completed_(options_.initial_round) {
  const ScheduleCheckpoint& saved = options_.restored;
  if (!saved.state.clients.empty()) {
    schedule_.RestoreState(saved.state);
    LogInfo(absl::StrCat("checkpoint: restored ", saved.state.clients.size(),
                         " client record(s) of schedule '", saved.name, "' into '",
                         schedule_.name(), "'"));
  }
  done_ = options_.total_rounds > 0 && rounds_completed_ >= options_.total_rounds;
  ExportProgress();
}

TaskInfo ScheduleDriver::TaskFor(const std::string& client_id, absl::Time now) {
  TaskInfo task;  // WAIT
  if (done_) {
    task.kind = TaskInfo::Kind::kDone;
    return task;
  }
  task.retry_after = absl::Seconds(1);
  Client& client = clients_[client_id];
  if (client.assignment_pending) {
    // Its next task is decided but must be on the model the worker is about
    // to publish; the waiter is released when it has.
    task.retry_after = absl::Milliseconds(100);
    return task;
  }
  const aggregators::TaskPlan plan = schedule_.PlanFor(client_id, now);
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

void ScheduleDriver::NotePulled(const std::string& client_id, uint64_t version) {
  auto it = clients_.find(client_id);
  if (it != clients_.end()) {
    it->second.pulled_version = std::max(it->second.pulled_version, version);
  }
}

absl::Status ScheduleDriver::StaleError(const UpdateHeaderInfo& h, uint64_t staleness,
                                        bool during) const {
  const uint64_t most = options_.max_staleness;
  if (during) {
    return absl::AbortedError(absl::StrCat("update from version ", h.base_version, " became ",
                                           staleness,
                                           " versions old during the upload (max_staleness ",
                                           most, "); pull and train again"));
  }
  return absl::AbortedError(absl::StrCat("update from version ", h.base_version, " is ",
                                         staleness, " versions old (max_staleness ", most,
                                         "); pull the current model and train again"));
}

absl::Status ScheduleDriver::CheckUpload(const UpdateHeaderInfo& h, RejectReason* reason) {
  auto it = clients_.find(h.client_id);
  if (it == clients_.end() || !it->second.has_task) {
    *reason = RejectReason::kNotSelected;
    return absl::FailedPreconditionError(absl::StrCat(
        "client '", h.client_id, "' has no task: call GetTask and train on its model"));
  }
  const Client& client = it->second;
  // The base must be a version this server gave the client: its task's, or
  // a newer one it pulled since. Staleness is then never the client's word.
  const uint64_t newest = std::max(client.task_version, client.pulled_version);
  if (h.base_version < client.task_version || h.base_version > newest) {
    *reason = RejectReason::kMalformed;
    return absl::InvalidArgumentError(absl::StrCat(
        "base_version ", h.base_version, " was not served to this client: its task is on version ",
        client.task_version, " and it pulled up to version ", newest));
  }
  return CheckCommit(h, reason).ok() ? absl::OkStatus()
                                     : StaleError(h, decided_version_ - h.base_version, false);
}

absl::Status ScheduleDriver::Enter(const UpdateHeaderInfo& h, absl::Time, RejectReason*) {
  clients_[h.client_id].uploading = true;
  return absl::OkStatus();
}

absl::Status ScheduleDriver::CheckCommit(const UpdateHeaderInfo& h, RejectReason* reason) {
  // Versions may have been decided while the bytes arrived: the staleness
  // charged is the one at arrival, now.
  const uint64_t staleness = decided_version_ - h.base_version;
  if (options_.max_staleness == 0 || staleness <= options_.max_staleness) return absl::OkStatus();
  *reason = RejectReason::kStale;
  return StaleError(h, staleness, true);
}

absl::StatusOr<CommitInfo> ScheduleDriver::Accept(const UpdateHeaderInfo& h,
                                                  aggregators::UpdateHandle handle,
                                                  absl::Time now) {
  const uint64_t staleness = decided_version_ - h.base_version;
  absl::StatusOr<aggregators::Decision> decision = schedule_.OnArrival(
      aggregators::Arrival{h.client_id, handle, staleness, h.num_samples}, now);
  if (!decision.ok()) return decision.status();
  pending_[handle] = {h.client_id, h.update_id};
  Client& client = clients_[h.client_id];
  client.uploading = false;
  client.has_task = false;
  metrics_->update_staleness.Observe(static_cast<double>(staleness));
  Enqueue(std::move(decision).value());
  CommitInfo info;
  info.round = rounds_completed_ + 1;
  info.model_version = base_version_;
  info.accepted_in_round = static_cast<uint32_t>(pending_.size());
  info.staleness = staleness;
  return info;
}

void ScheduleDriver::Aborted(const std::string& client_id) {
  clients_[client_id].uploading = false;
}

void ScheduleDriver::Enqueue(aggregators::Decision decision) {
  if (decision.flushes.empty() && decision.assignments.empty() && decision.dropped.empty()) {
    return;
  }
  decided_version_ += decision.flushes.size();
  for (const aggregators::Assignment& a : decision.assignments) {
    clients_[a.client_id].assignment_pending = true;
  }
  decisions_.push_back(std::move(decision));
}

void ScheduleDriver::Tick(absl::Time now) {
  if (now >= schedule_.NextTimer()) Enqueue(schedule_.OnTimer(now));
}

bool ScheduleDriver::NextDue(absl::Time, bool* seal) {
  *seal = false;
  return running_.has_value() || !decisions_.empty();
}

DriverBatch ScheduleDriver::TakeBatch(absl::Time now) {
  DriverBatch batch;
  batch.label = "schedule step";
  batch.source = absl::StrCat("schedule ", schedule_.name());
  batch.started = now;
  if (!running_.has_value()) {
    running_ = Running{std::move(decisions_.front()), 0};
    decisions_.pop_front();
    batch.dropped = std::move(running_->decision.dropped);
    for (aggregators::UpdateHandle h : batch.dropped) pending_.erase(h);
  }
  batch.round = rounds_completed_ + 1;
  batch.base_version = base_version_;
  batch.sink.step = rounds_completed_ + 1;
  std::vector<aggregators::Flush>& flushes = running_->decision.flushes;
  if (running_->next_flush >= flushes.size()) {
    batch.aggregate = batch.counts = false;  // Assignments (or drops) only.
    return batch;
  }
  batch.sink.updates = std::move(flushes[running_->next_flush++].updates);
  for (const aggregators::WeightedUpdate& u : batch.sink.updates) {
    auto it = pending_.find(u.handle);
    if (it != pending_.end()) {
      batch.ids.push_back(std::move(it->second));
      pending_.erase(it);
    }
  }
  batch.updates = static_cast<uint32_t>(batch.sink.updates.size());
  // total_rounds reached: nothing more is applied.
  batch.aggregate = batch.counts = !done_;
  return batch;
}

void ScheduleDriver::Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time) {
  if (!batch.sink.updates.empty()) {
    if (ok) {
      ++rounds_completed_;
      base_version_ = version;
      if (options_.total_rounds > 0 && rounds_completed_ >= options_.total_rounds) done_ = true;
    } else {
      --decided_version_;  // The flush's version never came.
      if (batch.counts) ++rounds_failed_;
    }
    ExportProgress();
  }
  if (running_->next_flush < running_->decision.flushes.size()) return;
  for (const aggregators::Assignment& a : running_->decision.assignments) {
    clients_[a.client_id].assignment_pending = false;
  }
  running_.reset();
}

void ScheduleDriver::FillStatus(CoordinatorStatus* status) const {
  CoordinatorStatus& s = *status;
  s.model_version = base_version_;
  s.round = rounds_completed_ + 1;
  s.rounds_completed = rounds_completed_;
  s.rounds_failed = rounds_failed_;
  s.updates_in_round = static_cast<uint32_t>(pending_.size());
  s.done = done_;
}

ScheduleCheckpoint ScheduleDriver::SaveState() const {
  return ScheduleCheckpoint{schedule_.name(), schedule_.SaveState()};
}

void ScheduleDriver::ExportProgress() {
  metrics_->model_version.Set(static_cast<double>(base_version_));
  metrics_->current_round.Set(static_cast<double>(rounds_completed_ + 1));
}

}  // namespace tally::server
