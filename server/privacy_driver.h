// PrivacyDriver: the privacy ledger around a RoundsDriver or ScheduleDriver
// (docs/privacy.md, "The ledger and the budget"). It forwards every call to
// the driver it wraps, and:
//   - in Finished, when the step was published, charges it to the ledger
//     (PrivacyState::StepPublished: one step of (q, z)) and puts the epsilon
//     spent in the round's log line;
//   - then, before the next round can hand out a task, asks whether one more
//     step fits the budget; if not, logs "privacy budget: ... stopping" and
//     ends the federation (the wrapped driver's Finish: tasks answer DONE,
//     the run finishes as at total_rounds). The same check runs at start, so
//     a restart on a spent ledger stays done.
// Under the Coordinator's lock, as every driver (server/driver.h).
#ifndef TALLY_SERVER_PRIVACY_DRIVER_H_
#define TALLY_SERVER_PRIVACY_DRIVER_H_

#include <memory>
#include <string>

#include "server/driver.h"
#include "server/metrics.h"
#include "server/privacy_state.h"

namespace tally::server {

class PrivacyDriver final : public Driver {
 public:
  // `schedule`: the wrapped driver is a ScheduleDriver, which logs no line
  // per step (this driver logs the epsilon then).
  PrivacyDriver(std::unique_ptr<Driver> inner, std::shared_ptr<PrivacyState> privacy,
                ServerMetrics* metrics, bool schedule);

  TaskInfo TaskFor(const std::string& client_id, absl::Time now) override {
    return inner_->TaskFor(client_id, now);
  }
  void NotePulled(const std::string& client_id, uint64_t version) override {
    inner_->NotePulled(client_id, version);
  }
  void SessionDropped(const std::string& client_id) override { inner_->SessionDropped(client_id); }
  absl::Status CheckUpload(const UpdateHeaderInfo& h, RejectReason* reason) override {
    return inner_->CheckUpload(h, reason);
  }
  absl::Status Enter(const UpdateHeaderInfo& h, absl::Time now, RejectReason* reason) override {
    return inner_->Enter(h, now, reason);
  }
  absl::Status CheckCommit(const UpdateHeaderInfo& h, RejectReason* reason) override {
    return inner_->CheckCommit(h, reason);
  }
  absl::StatusOr<CommitInfo> Accept(const UpdateHeaderInfo& h, aggregators::UpdateHandle handle,
                                    absl::Time now) override {
    return inner_->Accept(h, handle, now);
  }
  void Aborted(const std::string& client_id) override { inner_->Aborted(client_id); }
  void Poison() override { inner_->Poison(); }
  absl::Status EndedDuringUpload(const UpdateHeaderInfo& h, RejectReason reason) const override {
    return inner_->EndedDuringUpload(h, reason);
  }
  void Tick(absl::Time now) override { inner_->Tick(now); }
  bool WorkDue(absl::Time now) const override { return inner_->WorkDue(now); }
  bool NextDue(absl::Time now, bool* seal) override { return inner_->NextDue(now, seal); }
  RejectReason SealReason() const override { return inner_->SealReason(); }
  DriverBatch TakeBatch(absl::Time now) override { return inner_->TakeBatch(now); }
  void Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time now) override;
  bool done() const override { return inner_->done(); }
  void FillStatus(CoordinatorStatus* s) const override { inner_->FillStatus(s); }
  ScheduleCheckpoint SaveState() const override { return inner_->SaveState(); }
  void OpenRound(uint64_t round, uint64_t version) override { inner_->OpenRound(round, version); }
  void ModelChanged(uint64_t version) override { inner_->ModelChanged(version); }
  void Finish() override { inner_->Finish(); }

 private:
  // Ends the federation if one more step does not fit the budget.
  void StopIfSpent();
  void ExportMetrics();

  std::unique_ptr<Driver> inner_;
  std::shared_ptr<PrivacyState> privacy_;
  ServerMetrics* metrics_;
  const bool schedule_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_PRIVACY_DRIVER_H_
