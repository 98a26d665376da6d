// ScheduleDriver: asynchronous schedules (fedasync, fedbuff, fedfix,
// fedcompass; aggregators/schedules/schedule.h) as a driver. There are no
// rounds to join: TaskFor asks the schedule for the client's plan (TRAIN
// with its local steps and deadline on the current model, or WAIT while its
// update waits in a FedCompass group or FedFix window). An update's
// staleness is the versions decided so far (published plus flushes queued)
// minus its base version, which must be a version the server gave the
// client (its task's or a later one it pulled); above max_staleness it is
// refused (ABORTED), at the start and again once its bytes are in. Accepted
// updates go to the schedule, whose decisions are queued and executed in
// order by the worker: each flush is a batch (one new version), the
// assignments free their clients' next tasks once the flushes are applied.
// The contract: server/driver.h.
#ifndef TALLY_SERVER_SCHEDULE_DRIVER_H_
#define TALLY_SERVER_SCHEDULE_DRIVER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "aggregators/schedules/schedule.h"
#include "server/driver.h"
#include "server/metrics.h"

namespace tally::server {

class ScheduleDriver final : public Driver {
 public:
  struct Options {
    std::unique_ptr<aggregators::Schedule> schedule;
    ScheduleCheckpoint restored;  // A checkpoint's client records, if any.
    uint64_t max_staleness = 0;   // 0: unbounded.
    uint64_t total_rounds = 0;    // Steps; 0: unbounded.
    uint64_t initial_version = 1;
    uint64_t initial_round = 0;  // Steps completed before (a checkpoint's).
    ServerMetrics* metrics = nullptr;
  };
  explicit ScheduleDriver(Options options);

  TaskInfo TaskFor(const std::string& client_id, absl::Time now) override;
  void NotePulled(const std::string& client_id, uint64_t version) override;
  void SessionDropped(const std::string&) override {}
  absl::Status CheckUpload(const UpdateHeaderInfo& h, RejectReason* reason) override;
  absl::Status Enter(const UpdateHeaderInfo& h, absl::Time now, RejectReason* reason) override;
  absl::Status CheckCommit(const UpdateHeaderInfo& h, RejectReason* reason) override;
  absl::StatusOr<CommitInfo> Accept(const UpdateHeaderInfo& h, aggregators::UpdateHandle handle,
                                    absl::Time now) override;
  void Aborted(const std::string& client_id) override;
  void Poison() override {}  // Buffered updates are always undone.
  absl::Status EndedDuringUpload(const UpdateHeaderInfo&, RejectReason) const override {
    return absl::FailedPreconditionError("the upload has already ended");
  }
  void Tick(absl::Time now) override;
  bool WorkDue(absl::Time) const override { return !decisions_.empty(); }
  bool NextDue(absl::Time now, bool* seal) override;
  RejectReason SealReason() const override { return RejectReason::kStale; }
  DriverBatch TakeBatch(absl::Time now) override;
  void Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time now) override;
  bool done() const override { return done_; }
  void FillStatus(CoordinatorStatus* s) const override;
  ScheduleCheckpoint SaveState() const override;
  void OpenRound(uint64_t, uint64_t) override {}  // Relays run rounds (MakePlan).
  void ModelChanged(uint64_t version) override { base_version_ = version; }
  void Finish() override { done_ = true; }

 private:
  struct Client {
    bool has_task = false;        // Got TRAIN; no update accepted since.
    uint64_t task_version = 0;    // The version published when it got TRAIN.
    uint64_t pulled_version = 0;  // Newest version PullModel served it.
    bool uploading = false;
    // Named by an Assignment whose flushes are not applied yet: WAIT until
    // they are (the new task must be on the new model).
    bool assignment_pending = false;
  };
  // A decision being executed: its flushes one batch each, then its
  // assignments.
  struct Running {
    aggregators::Decision decision;
    size_t next_flush = 0;
  };

  void Enqueue(aggregators::Decision decision);
  absl::Status StaleError(const UpdateHeaderInfo& h, uint64_t staleness, bool during) const;
  void ExportProgress();

  Options options_;
  aggregators::Schedule& schedule_;
  ServerMetrics* const metrics_;
  absl::flat_hash_map<std::string, Client> clients_;
  // Accepted updates not yet applied or dropped: (client, update id).
  absl::flat_hash_map<aggregators::UpdateHandle, std::pair<std::string, std::string>> pending_;
  std::deque<aggregators::Decision> decisions_;
  std::optional<Running> running_;
  // The published version plus the flushes queued: the version an update
  // arriving now is measured against.
  uint64_t decided_version_;
  uint64_t base_version_;
  uint64_t rounds_completed_;
  uint64_t rounds_failed_ = 0;
  bool done_ = false;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_SCHEDULE_DRIVER_H_
