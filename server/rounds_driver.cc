#include "server/rounds_driver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace tally::server {

RoundsDriver::RoundsDriver(Options options)
    : options_(std::move(options)),
      metrics_(options_.metrics),
      base_version_(options_.initial_version),
      rounds_completed_(options_.initial_round) {
  Open(options_.initial_round + 1, options_.initial_version);
  if (TotalReached()) phase_ = Phase::kDone;
  if (options_.opened_by_upstream) phase_ = Phase::kIdle;
  ExportProgress();
}

void RoundsDriver::Open(uint64_t number, uint64_t version) {
  round_ = Round();
  round_.number = number;
  round_.base_version = version;
}

TaskInfo RoundsDriver::TaskFor(const std::string& client_id, absl::Time now) {
  TaskInfo task;
  if (phase_ == Phase::kDone) {
    task.kind = TaskInfo::Kind::kDone;
    return task;
  }
  task.retry_after = absl::Seconds(1);
  if (phase_ != Phase::kOpen || round_.submitted.contains(client_id)) return task;  // WAIT
  if (!round_.assigned.contains(client_id)) {
    // A client whose lease expired gets no second one this round.
    if (round_.lease_expired.contains(client_id) || !HasSlotFor(client_id)) return task;  // WAIT
    if (options_.select && !Selected(client_id, now)) return task;                        // WAIT
    AssignSlot(client_id);
    const absl::Time expiry = now + options_.rounds.task_lease;
    round_.leases[client_id] = expiry;
    round_.lease_order.emplace_back(expiry, client_id);
    if (round_.first_task == absl::InfiniteFuture()) {
      round_.first_task = now;
      round_.deadline = now + options_.rounds.round_timeout;
    }
  }
  task.kind = TaskInfo::Kind::kTrain;
  task.round = round_.number;
  task.model_version = round_.base_version;
  task.local_steps = options_.rounds.local_steps;
  task.deadline = round_.deadline;
  task.retry_after = absl::ZeroDuration();
  return task;
}

void RoundsDriver::SessionDropped(const std::string& client_id) {
  // Free the client's task slot unless it already contributed or is uploading.
  if (!round_.submitted.contains(client_id) && !round_.uploading.contains(client_id)) {
    round_.assigned.erase(client_id);
  }
}

bool RoundsDriver::Selected(const std::string& client_id, absl::Time now) {
  if (!options_.sample) return !options_.select(round_.number, {client_id}).empty();
  if (!round_.selected.has_value()) {
    if (std::find(round_.waiting.begin(), round_.waiting.end(), client_id) ==
        round_.waiting.end()) {
      round_.waiting.push_back(client_id);
    }
    if (round_.gather_start == absl::InfiniteFuture()) round_.gather_start = now;
    if (round_.waiting.size() < options_.min_available &&
        now - round_.gather_start < options_.rounds.round_timeout / 2) {
      return false;
    }
    const std::vector<std::string> chosen = options_.select(round_.number, round_.waiting);
    round_.selected.emplace(chosen.begin(), chosen.end());
    LogInfo(absl::StrCat("round ", round_.number, ": selected ", chosen.size(), " of ",
                         round_.waiting.size(), " waiting client(s)"));
  }
  return round_.selected->contains(client_id);
}

bool RoundsDriver::HasSlotFor(const std::string& client_id) const {
  const std::string& trusted = options_.rounds.trusted_client;
  const size_t reserved =
      !trusted.empty() && client_id != trusted && !round_.assigned.contains(trusted) ? 1 : 0;
  const size_t slots = round_.selected.has_value()
                           ? std::max<size_t>(round_.selected->size(),
                                              options_.rounds.selected_per_round)
                           : options_.rounds.selected_per_round;
  return round_.assigned.size() + reserved < slots;
}

bool RoundsDriver::Complete() const {
  const std::string& trusted = options_.rounds.trusted_client;
  uint64_t size = options_.rounds.clients_per_round;
  if (round_.selected.has_value() &&
      (options_.size_is_selection || round_.selected->size() < size)) {
    size = round_.selected->size();  // POISSON, or fewer waited than the round takes.
  }
  return size > 0 && round_.accepted >= size &&
         (trusted.empty() || round_.submitted.contains(trusted));
}

void RoundsDriver::AssignSlot(const std::string& client_id) {
  round_.assigned.insert(client_id);
  if (round_.assigned.size() > options_.rounds.clients_per_round) {
    metrics_->tasks_overselected.Increment();
  }
}

absl::Status RoundsDriver::RoundFull(const std::string& client_id, RejectReason* reason) const {
  const RoundPlan& plan = options_.rounds;
  if (round_.lease_expired.contains(client_id)) {
    *reason = RejectReason::kLeaseExpired;
    return absl::FailedPreconditionError(absl::StrCat(
        "round ", round_.number, ": the task lease of client '", client_id,
        "' expired (no upload started within rounds.task_lease_ms = ",
        absl::ToInt64Milliseconds(plan.task_lease),
        " ms of the task) and its slot went to another client; ask GetTask for the next round"));
  }
  *reason = RejectReason::kNotSelected;
  return absl::FailedPreconditionError(absl::StrCat(
      "round ", round_.number, " is full (", plan.selected_per_round,
      " clients selected: rounds.clients_per_round ", plan.clients_per_round,
      " and over_selection ", plan.over_selection, ")"));
}

absl::Status RoundsDriver::CheckUpload(const UpdateHeaderInfo& h, RejectReason* reason) {
  if (phase_ != Phase::kOpen || h.round != round_.number ||
      h.base_version != round_.base_version) {
    *reason = RejectReason::kStale;
    return absl::AbortedError(absl::StrCat(
        "update for round ", h.round, " from version ", h.base_version, " is stale: round ",
        round_.number, (phase_ == Phase::kOpen ? " is open" : " is closing"), " with base version ",
        round_.base_version));
  }
  if (round_.submitted.contains(h.client_id)) {
    *reason = RejectReason::kNotSelected;
    return absl::FailedPreconditionError(
        absl::StrCat("client already contributed an update to round ", round_.number));
  }
  return absl::OkStatus();
}

absl::Status RoundsDriver::Enter(const UpdateHeaderInfo& h, absl::Time, RejectReason* reason) {
  if (!round_.assigned.contains(h.client_id)) {
    if (!HasSlotFor(h.client_id)) return RoundFull(h.client_id, reason);
    AssignSlot(h.client_id);
  }
  round_.leases.erase(h.client_id);  // The task's lease is used.
  round_.uploading.insert(h.client_id);
  return absl::OkStatus();
}

absl::StatusOr<CommitInfo> RoundsDriver::Accept(const UpdateHeaderInfo& h,
                                                aggregators::UpdateHandle handle, absl::Time) {
  round_.uploading.erase(h.client_id);
  round_.submitted.insert(h.client_id);
  round_.accepted += 1;
  round_.weight_sum += h.num_samples;
  round_.ids.emplace_back(h.client_id, h.update_id);
  round_.updates.push_back(
      {handle, h.client_id, static_cast<double>(h.num_samples), /*staleness=*/0});
  if (Complete()) close_requested_ = true;
  CommitInfo info;
  info.round = round_.number;
  info.model_version = round_.base_version;
  info.accepted_in_round = round_.accepted;
  return info;
}

void RoundsDriver::Aborted(const std::string& client_id) {
  round_.uploading.erase(client_id);
  // A failed upload gives its task slot back, so that a broken or malicious
  // client cannot keep an honest one out of the round.
  round_.assigned.erase(client_id);
}

void RoundsDriver::Poison() {
  // The round's sum can no longer be trusted: fail the round rather than
  // publish a corrupted model.
  LogError(absl::StrCat("round ", round_.number, ": an aborted upload could not be undone; the ",
                        "round will fail"));
  round_.accepted = 0;
  poisoned_ = true;
  close_requested_ = true;
}

absl::Status RoundsDriver::EndedDuringUpload(const UpdateHeaderInfo& h,
                                             RejectReason reason) const {
  if (reason != RejectReason::kSurplus) {
    return absl::AbortedError(absl::StrCat("round ", h.round, " closed during the upload"));
  }
  return absl::AbortedError(absl::StrCat(
      "round ", h.round, " closed with its ", options_.rounds.clients_per_round,
      " updates (rounds.clients_per_round) while this upload ran: the round over-selects "
      "clients (rounds.over_selection) and this update was not needed; it was discarded, "
      "ask GetTask for the next round"));
}

void RoundsDriver::Tick(absl::Time now) {
  if (phase_ == Phase::kOpen) ExpireLeases(now);
}

void RoundsDriver::ExpireLeases(absl::Time now) {
  while (!round_.lease_order.empty() && round_.lease_order.front().first <= now) {
    auto [expiry, client] = std::move(round_.lease_order.front());
    round_.lease_order.pop_front();
    auto it = round_.leases.find(client);
    if (it == round_.leases.end() || it->second != expiry) continue;  // Used, or granted again.
    round_.leases.erase(it);
    if (!round_.assigned.contains(client) || round_.uploading.contains(client) ||
        round_.submitted.contains(client)) {
      continue;
    }
    round_.assigned.erase(client);
    round_.lease_expired.insert(client);
    metrics_->task_leases_expired.Increment();
    LogInfo(absl::StrCat("round ", round_.number, ": the task lease of client '", client,
                         "' expired (no upload within rounds.task_lease_ms ",
                         absl::ToInt64Milliseconds(options_.rounds.task_lease),
                         "); its slot goes to another client"));
  }
}

bool RoundsDriver::NextDue(absl::Time now, bool* seal) {
  const bool requested = close_requested_;
  close_requested_ = false;
  if (phase_ != Phase::kOpen || (!requested && now < round_.deadline)) return false;
  // From here on no upload can begin, and nothing else closes this round.
  phase_ = Phase::kClosing;
  close_start_ = now;
  *seal = true;
  return true;
}

RejectReason RoundsDriver::SealReason() const {
  // Closed with enough updates: the uploads still running were the
  // over-selected surplus; at the deadline they were too late.
  return Complete() ? RejectReason::kSurplus : RejectReason::kStale;
}

DriverBatch RoundsDriver::TakeBatch(absl::Time) {
  DriverBatch batch;
  batch.sink.step = round_.number;
  batch.sink.updates = std::move(round_.updates);
  batch.ids = std::move(round_.ids);
  batch.aggregate =
      !poisoned_ && round_.accepted > 0 && round_.accepted >= options_.rounds.min_clients;
  poisoned_ = false;
  batch.updates = round_.accepted;
  batch.weight = round_.weight_sum;
  batch.round = round_.number;
  batch.base_version = round_.base_version;
  batch.started = std::min(round_.first_task, close_start_);
  batch.label = absl::StrCat("round ", round_.number);
  return batch;
}

void RoundsDriver::Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time now) {
  if (ok) {
    ++rounds_completed_;
  } else {
    ++rounds_failed_;
  }
  if (options_.opened_by_upstream) {
    if (phase_ == Phase::kClosing) phase_ = Phase::kIdle;
    LogInfo(absl::StrCat("relay round ", batch.round, " closed with ", batch.updates,
                         " update(s)"));
    return;
  }
  if (ok) {
    last_round_duration_ = now - batch.started;
    metrics_->round_duration.Observe(absl::ToDoubleSeconds(last_round_duration_));
    LogInfo(absl::StrCat("round ", batch.round, " aggregated ", batch.updates,
                         " update(s) into version ", version, batch.note,
                         batch.metrics.empty() ? "" : ": ", batch.metrics));
  } else {
    LogWarning(absl::StrCat("round ", batch.round, " failed with ", batch.updates,
                            " update(s) (min_clients ", options_.rounds.min_clients,
                            "); model unchanged"));
  }
  base_version_ = version;
  Open(round_.number + 1, version);
  phase_ = TotalReached() ? Phase::kDone : Phase::kOpen;
  ExportProgress();
}

void RoundsDriver::FillStatus(CoordinatorStatus* status) const {
  CoordinatorStatus& s = *status;
  s.model_version = base_version_;
  s.round = round_.number;
  s.rounds_completed = rounds_completed_;
  s.rounds_failed = rounds_failed_;
  s.updates_in_round = round_.accepted;
  s.done = phase_ == Phase::kDone;
  s.last_round_duration = last_round_duration_;
}

void RoundsDriver::OpenRound(uint64_t round, uint64_t version) {
  if (phase_ == Phase::kDone) return;
  base_version_ = version;
  Open(round, version);
  phase_ = Phase::kOpen;
  ExportProgress();
}

void RoundsDriver::ModelChanged(uint64_t version) {
  base_version_ = version;
  ExportProgress();
}

bool RoundsDriver::TotalReached() const {
  const uint64_t total = options_.rounds.total_rounds;
  return total > 0 && rounds_completed_ >= total;
}

void RoundsDriver::ExportProgress() {
  metrics_->model_version.Set(static_cast<double>(base_version_));
  metrics_->current_round.Set(static_cast<double>(round_.number));
}

}  // namespace tally::server
