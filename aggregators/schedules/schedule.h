// Schedules: WHEN accepted client updates are combined into a new model
// version and WITH WHAT WEIGHTS (docs/algorithms.md#schedules: FedCompass,
// APPFL's FedAsync / FedBuff, FedFix). A schedule is a pure, deterministic state
// machine: time is an argument (absl::Time from the caller's injected Clock,
// core/clock.h), nothing blocks or sleeps, and the same arrival trace always
// gives the same decisions.
//
// The schedule never sees model data. Each accepted update is referenced by
// an opaque UpdateHandle that the caller maps to its stored delta; a Flush
// names handles and coefficients and the caller does the O(d) arithmetic.
// Per event a schedule does O(#clients + #groups) work, never O(d).
//
// Delta convention (tally-wide, docs/algorithms.md#deltas): a client pushes
//   Δ_c = w_local − w_base            (an update to ADD).
// A Flush asks the caller to form  g = Σ_i weight_i · Δ_i  and hand g to the
// server optimizer as the aggregate delta (sgd with lr 1: w ← w + g). APPFL's
// "gradient_based" mode has clients send Δ^APPFL = w_start − w_end = −Δ_c and
// computes w ← w − Σ α_c Δ^APPFL; the coefficients α_c are identical, so the
// APPFL traces are reproduced with tally deltas of the opposite sign (the
// worked trace's pseudo-gradients 1, 2, 3 are tally deltas −1, −2, −3,
// docs/algorithms.md#fedcompass-worked-trace). APPFL's model
// mode (w ← w + α (w_c − w_current)) is not offered: tally always applies the
// delta against the client's own base model.
//
// Client weights (all schedules): weight_c = 1/N for `client_weights ==
// "equal"` (N = `num_clients`), or n_c / Σ_j n_j for "sample_size", where n_j
// is the latest num_samples reported by each client the schedule has seen so
// far (APPFL knows every client's size up front; tally learns them with the
// updates, so Σ is partial until every client has reported once).
//
// Staleness: the CALLER computes it for each arrival as (current model
// version − the client's base version), never trusting the client. The
// contract is that every Flush the caller receives is published as exactly
// one new model version, in order; the schedule counts its flushes, so an
// update that waits in a buffer gets staleness (arrival staleness + flushes
// since its arrival) when it is finally aggregated.
//
// Intended coordinator sequence (under the coordinator's mutex, with the
// model-applying work moved to its executor as today):
//   GetTask(c):     plan = schedule->PlanFor(c, clock->Now());
//                   plan.wait → reply WAIT (retry when an Assignment for c
//                   appears or at NextTimer()); else TRAIN with
//                   plan.local_steps and plan.deadline on the current model.
//   PushUpdate(c):  validate, store Δ under a fresh handle h, staleness =
//                   version − base (reject > max staleness with ABORTED);
//                   d = schedule->OnArrival({c, h, staleness, n_c}, now);
//                   Execute(d).
//   Timer:          arm a wake-up at schedule->NextTimer() (re-read after
//                   every call); when it fires: Execute(schedule->OnTimer(now)).
//   Execute(d):     for each flush in order: g = Σ weight·Δ[handle];
//                   optimizer->Apply; publish version+1; free the handles.
//                   Free d.dropped. Then wake the clients in d.assignments
//                   (their next GetTask returns TRAIN on the model current
//                   after ALL of d's flushes; the client's base version is
//                   whatever model it is actually served).
//
// Thread safety: thread-compatible. The coordinator serialises every call
// (one mutex or one event loop); FedCompass needs arrivals and timer
// callbacks serialised (the reference's timer thread takes no lock).
#ifndef TALLY_AGGREGATORS_SCHEDULES_SCHEDULE_H_
#define TALLY_AGGREGATORS_SCHEDULES_SCHEDULE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "aggregators/schedules/staleness.h"

namespace tally::aggregators {

// The caller's reference to one stored update (its delta, weight, ...).
using UpdateHandle = uint64_t;

// What a client should do next (GetTask).
struct TaskPlan {
  // True: the client's last update waits for its FedCompass group or FedFix
  // window; it gets its next task when an Assignment names it. The other
  // fields are then meaningless.
  bool wait = false;
  uint32_t local_steps = 0;
  // Finish by then; FedCompass: the group's latest arrival time. Later
  // updates are still accepted (they are "late").
  absl::Time deadline = absl::InfiniteFuture();
  // FedCompass only (for logs and metrics): the arrival group (numbered in
  // creation order from 0; -1 = none yet) and its expected arrival time.
  int64_t group = -1;
  absl::Time expected = absl::InfiniteFuture();
};

// One accepted update as the coordinator hands it over.
struct Arrival {
  std::string client_id;
  UpdateHandle handle = 0;
  uint64_t staleness = 0;    // current version − client's base version.
  uint64_t num_samples = 0;  // n_c, for sample_size weights.
};

struct WeightedUpdate {
  UpdateHandle handle = 0;
  std::string client_id;
  double weight = 0;       // Coefficient on the client's Δ (never normalised).
  uint64_t staleness = 0;  // At flush time (for metrics).
};

// Apply now: g = Σ weight_i Δ_i through the optimizer, publish one version.
struct Flush {
  std::vector<WeightedUpdate> updates;  // Non-empty.
};

// A client's next task is ready (after the decision's flushes are applied).
struct Assignment {
  std::string client_id;
  TaskPlan plan;
};

struct Decision {
  std::vector<Flush> flushes;            // In order; usually zero or one.
  std::vector<Assignment> assignments;   // In the order they were made.
  std::vector<UpdateHandle> dropped;     // Discarded by the schedule; free them.
};

// What a schedule has learned about one client that is worth keeping across
// a server restart (checkpoints).
struct ClientRecord {
  std::string client_id;
  uint64_t num_samples = 0;       // Latest reported n_c (sample_size weights); 0 = none.
  double seconds_per_step = 0;    // FedCompass's speed estimate; 0 = none.
  bool operator==(const ClientRecord& o) const {
    return client_id == o.client_id && num_samples == o.num_samples &&
           seconds_per_step == o.seconds_per_step;
  }
};

// A schedule's durable state: its client records, sorted by client id. Tasks
// in flight, FedCompass groups, FedFix windows and buffered updates are NOT
// part of it: a restarted server forgets its sessions and tasks (clients
// join again and get new tasks), and buffered updates are not in any
// checkpointed model (docs/server.md#what-acknowledged-guarantees).
struct ScheduleState {
  std::vector<ClientRecord> clients;
};

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual const std::string& name() const = 0;

  // The client's next task. Idempotent (GetTask may be retried); the first
  // call for a client records when it started, for speed estimates and
  // FedFix's window count. The first call of all fixes the schedule's
  // time origin (APPFL's start_time).
  virtual TaskPlan PlanFor(absl::string_view client_id, absl::Time now) = 0;

  // An accepted update. First runs the timers due strictly before `now`
  // (a deadline at exactly `now` still counts the arrival as on time; call
  // OnTimer(now) after). FAILED_PRECONDITION if the client already has an
  // update waiting in a FedCompass group or FedFix window (it was told to
  // wait, not to train); an error changes no state.
  virtual absl::StatusOr<Decision> OnArrival(const Arrival& arrival, absl::Time now) = 0;

  // The next instant OnTimer has work, InfiniteFuture() if none. Changes
  // after every call.
  virtual absl::Time NextTimer() const = 0;

  // Runs every timer due at or before `now`, earliest first.
  virtual Decision OnTimer(absl::Time now) = 0;

  // The durable state, for a checkpoint.
  virtual ScheduleState SaveState() const = 0;
  // Restores SaveState's output (of any schedule) into a fresh schedule,
  // before any other call. Each schedule takes what it uses: sample counts
  // (every schedule) and speeds (FedCompass: a client with a known speed gets
  // a group and its local steps from its first task on, instead of starting
  // as a newcomer with a single immediate update).
  virtual void RestoreState(const ScheduleState& state) = 0;
};

// One struct for every schedule; each reads its own fields. Defaults are
// APPFL's example configs (docs/algorithms.md#schedules) where one exists.
struct ScheduleOptions {
  // "fedasync" (default), "fedbuff", "fedfix", "fedcompass". "sync" is not a
  // Schedule: the coordinator's own rounds implement it (CreateSchedule
  // refuses it with a message saying so).
  std::string name = "fedasync";

  // fedasync, fedbuff, fedcompass: server mixing rate α (> 0, finite;
  // default 0.9). fedfix ignores it (its step size is the optimizer's lr).
  double alpha = 0.9;
  // "equal" (1/num_clients, default) or "sample_size" (n_c / Σ n_j).
  std::string client_weights = "equal";
  // N in 1/N (>= 1; default 1, APPFL's default when the key is absent —
  // set it to the number of clients).
  uint32_t num_clients = 1;
  // S(staleness); fedfix ignores it (no staleness discount,
// docs/algorithms.md#fedfix).
  StalenessOptions staleness;

  // fedasync, fedbuff, fedfix: the local steps every task gets (>= 1,
  // default 5, the server config's default) and the time allowed per task
  // (> 0, default infinite: no deadline).
  uint32_t local_steps = 5;
  absl::Duration task_timeout = absl::InfiniteDuration();

  // fedbuff: flush when this many updates are buffered (K >= 1, default 3).
  uint32_t buffer_size = 3;

  // fedfix: the window Δt (> 0, finite; default 1 s). Windows end at
  // origin + (n+1)·Δt.
  absl::Duration window = absl::Seconds(1);

  // fedcompass (docs/algorithms.md#fedcompass): Q_min (>= 1, default 20) <= Q_max (default 100);
  // speed EMA weight μ of the NEW sample ((0, 1], default 0.9); latest
  // arrival factor λ (>= 1, finite, default 1.5).
  uint32_t min_local_steps = 20;
  uint32_t max_local_steps = 100;
  double speed_momentum = 0.9;
  double latest_time_factor = 1.5;
};

// INVALID_ARGUMENT naming the field ("schedule.buffer_size must be >= 1,
// got 0") for an unknown name or an out-of-range value.
absl::Status ValidateScheduleOptions(const ScheduleOptions& options);

// Validates, then creates the named schedule.
absl::StatusOr<std::unique_ptr<Schedule>> CreateSchedule(const ScheduleOptions& options);

// The names CreateSchedule knows (not "sync").
const std::vector<std::string>& ScheduleNames();

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_SCHEDULES_SCHEDULE_H_
