// The driver: who gets which task, when a batch (a round, or a schedule's
// flush) closes, and what the server's progress is (docs/server.md, "Parts
// and seams"). Chosen once when the Coordinator is built:
//   RoundsDriver    synchronous rounds: slots, leases, over-selection,
//                   deadlines, min_clients, total_rounds (server/rounds_driver.h)
//   ScheduleDriver  asynchronous schedules (fedasync, fedbuff, fedfix,
//                   fedcompass) around aggregators::Schedule
//                   (server/schedule_driver.h)
//
// Every method runs under the Coordinator's lock (a driver is a state
// machine: no threads, no I/O, no sleeping). The Coordinator calls:
//   tasks    TaskFor (GetTask and each long-poll re-check), NotePulled,
//            SessionDropped;
//   uploads  CheckUpload (before admission), Enter (after it), CheckCommit
//            and Accept (the bytes are all in), Aborted;
//   closing  Tick (timers), then while NextDue: the epoch's running uploads
//            are aborted with SealReason if it says so, TakeBatch, the sink
//            combines, the publisher publishes, Finished.
#ifndef TALLY_SERVER_DRIVER_H_
#define TALLY_SERVER_DRIVER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/checkpoint.h"
#include "server/coordinator_types.h"
#include "server/reject_reason.h"
#include "server/update_sink.h"

namespace tally::server {

// A batch the driver closed.
struct DriverBatch {
  SinkBatch sink;  // Its step and updates (handles, weights) for the sink.
  // (client, update id) of its updates: applied once published.
  std::vector<std::pair<std::string, std::string>> ids;
  // The updates a schedule dropped with this decision: the sink forgets them.
  std::vector<aggregators::UpdateHandle> dropped;
  bool aggregate = true;  // False: no aggregate (too few updates, poisoned, finished).
  bool counts = true;     // Counts as a completed or failed round.
  uint32_t updates = 0;
  uint64_t weight = 0;  // Sum of the updates' num_samples.
  uint64_t round = 0;
  uint64_t base_version = 0;
  absl::Time started;  // Rounds: the first task (or the close if earlier).
  std::string label;   // Log prefix: "round 7", "schedule step".
  std::string source;  // Who dropped `dropped`: "schedule fedbuff".
  std::string metrics;  // Published: its fit metrics' text, for the log line.
  std::string note;    // Appended to the batch's log line (the epsilon spent).
};


class Driver {
 public:
  virtual ~Driver() = default;

  // --- Tasks.
  // The client's task now (TRAIN, WAIT with a retry hint, or DONE).
  virtual TaskInfo TaskFor(const std::string& client_id, absl::Time now) = 0;
  // PullModel served `version` to the client.
  virtual void NotePulled(const std::string& client_id, uint64_t version) = 0;
  // The client's session ended (Leave or expiry): its task slot is free.
  virtual void SessionDropped(const std::string& client_id) = 0;

  // --- Uploads. Refusals set *reason; the Coordinator counts them.
  // Before admission: the update's round, base version and task.
  virtual absl::Status CheckUpload(const UpdateHeaderInfo& h, RejectReason* reason) = 0;
  // After admission: the upload takes its place (a slot of the round).
  virtual absl::Status Enter(const UpdateHeaderInfo& h, absl::Time now, RejectReason* reason) = 0;
  // The bytes are all in: may it still be accepted (staleness since)?
  virtual absl::Status CheckCommit(const UpdateHeaderInfo& h, RejectReason* reason) = 0;
  // Accepts the committed update (the sink's handle). An error refuses it
  // (reason not_selected): the Coordinator drops it from the sink.
  virtual absl::StatusOr<CommitInfo> Accept(const UpdateHeaderInfo& h,
                                            aggregators::UpdateHandle handle, absl::Time now) = 0;
  // The upload was aborted (its slot is free again).
  virtual void Aborted(const std::string& client_id) = 0;
  // An aborted upload could not be undone: the current batch must fail.
  virtual void Poison() = 0;
  // The error for a chunk or commit of an upload that ended meanwhile
  // (a round's close aborted it with `reason`).
  virtual absl::Status EndedDuringUpload(const UpdateHeaderInfo& h, RejectReason reason) const = 0;

  // --- Closing.
  // Timers at `now`: expired leases, a schedule's due timers.
  virtual void Tick(absl::Time now) = 0;
  // Whether the worker should wake up (a batch is due).
  virtual bool WorkDue(absl::Time now) const = 0;
  // Whether a batch is due now. *seal: it closes the uploads' epoch (a
  // round): the uploads still running are aborted (SealReason) before
  // TakeBatch; from now on no upload of it begins.
  virtual bool NextDue(absl::Time now, bool* seal) = 0;
  virtual RejectReason SealReason() const = 0;
  virtual DriverBatch TakeBatch(absl::Time now) = 0;
  // The batch's outcome: published (`ok`; the model is now `version`) or
  // failed. The next round opens.
  virtual void Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time now) = 0;

  // --- Progress.
  virtual bool done() const = 0;
  // Fills the progress fields of `s`: model_version, round,
  // rounds_completed, rounds_failed, updates_in_round, done,
  // last_round_duration.
  virtual void FillStatus(CoordinatorStatus* s) const = 0;
  // What a checkpoint keeps of the driver (a schedule's client records).
  virtual ScheduleCheckpoint SaveState() const = 0;

  // --- Rounds opened from outside (a relay's upstream).
  virtual void OpenRound(uint64_t round, uint64_t version) = 0;
  // Someone else published `version` (a relay's upstream model).
  virtual void ModelChanged(uint64_t version) = 0;
  // The federation is over: tasks answer DONE.
  virtual void Finish() = 0;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_DRIVER_H_
