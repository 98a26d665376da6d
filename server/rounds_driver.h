// RoundsDriver: synchronous rounds as a driver (docs/rounds.md). Round r
// opens on base version v; TaskFor hands TRAIN tasks (round r, version v)
// to at most selected_per_round clients (clients_per_round plus
// over-selection), each under a lease (a task no upload used within
// task_lease gives its slot back, and that client gets no other task this
// round); the deadline (round_timeout) starts with the first task. The
// round is due when clients_per_round updates are accepted (including
// monna's trusted client's, if any) or at the deadline; it seals the epoch
// (running uploads are aborted: surplus if complete, else stale) and
// aggregates if at least min_clients updates came. Then round r+1 opens on
// the new version, unless total_rounds is reached, or the rounds are opened
// by a relay's upstream (OpenRound). The contract: server/driver.h.
#ifndef TALLY_SERVER_ROUNDS_DRIVER_H_
#define TALLY_SERVER_ROUNDS_DRIVER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "server/driver.h"
#include "server/metrics.h"
#include "server/plan.h"

namespace tally::server {

class RoundsDriver final : public Driver {
 public:
  struct Options {
    RoundPlan rounds;
    // A relay: rounds open when the upstream says (OpenRound), and a closed
    // round waits for the next instead of opening one.
    bool opened_by_upstream = false;
    uint64_t initial_version = 1;
    uint64_t initial_round = 0;  // Rounds completed before (a checkpoint's).
    ServerMetrics* metrics = nullptr;
  };
  explicit RoundsDriver(Options options);

  TaskInfo TaskFor(const std::string& client_id, absl::Time now) override;
  void NotePulled(const std::string&, uint64_t) override {}
  void SessionDropped(const std::string& client_id) override;
  absl::Status CheckUpload(const UpdateHeaderInfo& h, RejectReason* reason) override;
  absl::Status Enter(const UpdateHeaderInfo& h, absl::Time now, RejectReason* reason) override;
  absl::Status CheckCommit(const UpdateHeaderInfo&, RejectReason*) override {
    return absl::OkStatus();
  }
  absl::StatusOr<CommitInfo> Accept(const UpdateHeaderInfo& h, aggregators::UpdateHandle handle,
                                    absl::Time now) override;
  void Aborted(const std::string& client_id) override;
  void Poison() override;
  absl::Status EndedDuringUpload(const UpdateHeaderInfo& h, RejectReason reason) const override;
  void Tick(absl::Time now) override;
  bool WorkDue(absl::Time) const override { return close_requested_; }
  bool NextDue(absl::Time now, bool* seal) override;
  RejectReason SealReason() const override;
  DriverBatch TakeBatch(absl::Time now) override;
  void Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time now) override;
  bool done() const override { return phase_ == Phase::kDone; }
  void FillStatus(CoordinatorStatus* s) const override;
  ScheduleCheckpoint SaveState() const override { return {}; }
  void OpenRound(uint64_t round, uint64_t version) override;
  void ModelChanged(uint64_t version) override;
  void Finish() override { phase_ = Phase::kDone; }

 private:
  // kIdle: a relay's round closed, the upstream has not opened the next.
  enum class Phase { kOpen, kClosing, kIdle, kDone };
  struct Round {
    uint64_t number = 0;
    uint64_t base_version = 0;
    absl::flat_hash_set<std::string> assigned;   // Got a TRAIN task.
    absl::flat_hash_set<std::string> submitted;  // Update accepted.
    absl::flat_hash_set<std::string> uploading;
    std::vector<std::pair<std::string, std::string>> ids;  // (client, update id)
    std::vector<aggregators::WeightedUpdate> updates;      // For the sink.
    // Leases of TRAIN tasks no upload has used yet: the expiry of each, and
    // (expiry, client) in grant order, which is expiry order; an entry
    // whose expiry is not the client's current one is stale.
    absl::flat_hash_map<std::string, absl::Time> leases;
    std::deque<std::pair<absl::Time, std::string>> lease_order;
    absl::flat_hash_set<std::string> lease_expired;  // Lost their slot.
    uint32_t accepted = 0;
    uint64_t weight_sum = 0;
    absl::Time first_task = absl::InfiniteFuture();
    absl::Time deadline = absl::InfiniteFuture();
  };

  void Open(uint64_t number, uint64_t version);
  // Whether `client_id` may take a slot: while monna's trusted client has
  // none, one slot stays reserved for it.
  bool HasSlotFor(const std::string& client_id) const;
  // clients_per_round updates, including the trusted client's.
  bool Complete() const;
  // Gives the client a slot (counted as over-selected beyond
  // clients_per_round).
  void AssignSlot(const std::string& client_id);
  // The refusal of an upload that finds no slot.
  absl::Status RoundFull(const std::string& client_id, RejectReason* reason) const;
  void ExpireLeases(absl::Time now);
  bool TotalReached() const;
  void ExportProgress();

  const Options options_;
  ServerMetrics* const metrics_;
  Phase phase_ = Phase::kOpen;
  Round round_;
  uint64_t base_version_;
  uint64_t rounds_completed_;
  uint64_t rounds_failed_ = 0;
  absl::Duration last_round_duration_;
  bool close_requested_ = false;
  bool poisoned_ = false;
  absl::Time close_start_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_ROUNDS_DRIVER_H_
