// Shared machinery of the built-in schedules (time origin, flush counter and
// staleness bookkeeping, client weights) and their factories. Used only by
// the schedules in this folder and the registry in schedule.cc; everything
// else goes through CreateSchedule. Thread-compatible, like Schedule.
#ifndef TALLY_AGGREGATORS_SCHEDULES_SCHEDULE_BASE_H_
#define TALLY_AGGREGATORS_SCHEDULES_SCHEDULE_BASE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "aggregators/schedules/schedule.h"
#include "aggregators/schedules/staleness.h"

namespace tally::aggregators {

// An update held by a schedule until it is flushed.
struct BufferedUpdate {
  std::string client_id;
  UpdateHandle handle = 0;
  // The flush count at which the update's base model was current (may be
  // negative when the caller's versions predate the schedule): staleness at
  // any later moment = flushes() − base_tick.
  int64_t base_tick = 0;
};

class ScheduleBase : public Schedule {
 public:
  ScheduleBase(std::string name, const ScheduleOptions& options, StalenessFunction staleness);
  const std::string& name() const override { return name_; }
  // The sample counts.
  ScheduleState SaveState() const override;
  void RestoreState(const ScheduleState& state) override;

 protected:
  const ScheduleOptions& options() const { return options_; }

  // Every public entry point calls this first: the first call fixes the
  // time origin; returns `now` clamped so that time never runs backwards.
  absl::Time Observe(absl::Time now);
  absl::Time origin() const { return origin_; }
  double SecondsSinceOrigin(absl::Time t) const { return absl::ToDoubleSeconds(t - origin_); }
  absl::Time TimeAt(double seconds) const { return origin_ + absl::Seconds(seconds); }

  // Records the arrival's sample count and returns it as a buffered update.
  // Call it before any flush of the same event: the arrival's staleness was
  // computed by the caller against the version before those flushes.
  BufferedUpdate Accept(const Arrival& arrival);
  uint64_t StalenessOf(const BufferedUpdate& update) const;
  // weight_c (1/N or n_c / Σ n_j; 1/N while no client reported samples).
  double ClientWeight(absl::string_view client_id) const;
  // α · S(staleness) · weight_c, with the staleness as of now.
  WeightedUpdate AppflWeighted(const BufferedUpdate& update) const;
  // AppflWeighted of each of `updates`, appended to `out`.
  void AppendAppflWeighted(absl::Span<const BufferedUpdate> updates,
                           std::vector<WeightedUpdate>* out) const;
  // Appends `updates` as one flush to `decision` and counts it.
  void EmitFlush(std::vector<WeightedUpdate> updates, Decision* decision);
  // The plan of schedules without step assignment: options' local_steps and
  // now + task_timeout.
  TaskPlan DefaultPlan(absl::Time now) const;
  static TaskPlan WaitPlan() {
    TaskPlan plan;
    plan.wait = true;
    return plan;
  }

 private:
  const std::string name_;
  const ScheduleOptions options_;
  const StalenessFunction staleness_;
  bool started_ = false;
  absl::Time origin_;
  absl::Time last_now_;
  int64_t flushes_ = 0;
  absl::flat_hash_map<std::string, uint64_t> samples_;
  uint64_t total_samples_ = 0;
};

// A schedule that makes on-time clients wait and has timers (FedFix,
// FedCompass): runs the timers due before an arrival, then the arrival; a
// client told to wait may not push.
class DeferringSchedule : public ScheduleBase {
 public:
  using ScheduleBase::ScheduleBase;
  absl::StatusOr<Decision> OnArrival(const Arrival& arrival, absl::Time now) final;
  Decision OnTimer(absl::Time now) final;

 protected:
  // Whether the client's last update is waiting to be aggregated.
  virtual bool IsWaiting(absl::string_view client_id) const = 0;
  // Fires every timer due before `now` (or at it, when `inclusive`).
  virtual void RunDue(absl::Time now, bool inclusive, Decision* decision) = 0;
  // The arrival proper, after the due timers; `now` is already observed.
  virtual void HandleArrival(const BufferedUpdate& update, absl::Time now,
                             Decision* decision) = 0;
};

// Factories, one per registered name; options are already validated.
std::unique_ptr<Schedule> NewFedAsync(const ScheduleOptions& options, StalenessFunction s);
std::unique_ptr<Schedule> NewFedBuff(const ScheduleOptions& options, StalenessFunction s);
std::unique_ptr<Schedule> NewFedFix(const ScheduleOptions& options, StalenessFunction s);
std::unique_ptr<Schedule> NewFedCompass(const ScheduleOptions& options, StalenessFunction s);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_SCHEDULES_SCHEDULE_BASE_H_
