// FedCompass (Li et al., ICLR 2024): APPFL's CompassScheduler +
// FedCompassAggregator (docs/algorithms.md#fedcompass). Times are
// seconds since the schedule's origin, as the reference's
// `time.time() - start_time`.
//
// Deliberate differences from the reference (none changes the worked trace,
// docs/algorithms.md#fedcompass-worked-trace):
// * A client's first round starts at its first PlanFor (GetTask), not at the
//   origin (the reference biases late joiners' first speed estimate);
//   a client that pushes without any GetTask counts from the origin.
// * Merging the general buffer into a group keeps BOTH updates of a client
//   that is in both (the reference drops the late one): an acknowledged
//   update is never silently lost (docs/algorithms.md#design-rules-that-comments-cite).
// * Each update is consumed once (the reference's epoch counter counts late
//   updates twice); there is no epoch counter here at all.
// * Speeds are floored at kMinSecondsPerStep (the reference divides by them).
// * A deadline due before an arrival is processed at the arrival's time, and
//   OnTimer at the time it is called: reassigned clients start "now".
// * A server restart keeps the speed estimates (SaveState/RestoreState): a
//   client with a known speed is assigned a group at its first task after
//   the restart (the reference has no restart).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "aggregators/schedules/schedule_base.h"

namespace tally::aggregators {
namespace {

constexpr double kMinSecondsPerStep = 1e-6;

class FedCompass final : public DeferringSchedule {
 public:
  FedCompass(const ScheduleOptions& options, StalenessFunction s)
      : DeferringSchedule("fedcompass", options, s) {}

  TaskPlan PlanFor(absl::string_view client_id, absl::Time now) override {
    now = Observe(now);
    auto [it, inserted] = clients_.try_emplace(client_id);
    if (inserted) {
      it->second.start = SecondsSinceOrigin(now);
      it->second.steps = options().max_local_steps;
    } else if (it->second.restored) {
      // Speed known from a checkpoint: straight into a group. The
      // assignment is this plan, so the Decision's copy is not needed.
      it->second.restored = false;
      Decision unused;
      Assign(it->first, now, &unused);
    }
    return PlanOf(it->second);
  }

  ScheduleState SaveState() const override {
    ScheduleState state = ScheduleBase::SaveState();
    absl::flat_hash_map<std::string, size_t> index;
    for (size_t i = 0; i < state.clients.size(); ++i) index[state.clients[i].client_id] = i;
    for (const auto& [client_id, client] : clients_) {
      if (client.speed <= 0) continue;
      auto [it, inserted] = index.try_emplace(client_id, state.clients.size());
      if (inserted) state.clients.push_back({client_id, 0, 0});
      state.clients[it->second].seconds_per_step = client.speed;
    }
    std::sort(state.clients.begin(), state.clients.end(),
              [](const ClientRecord& a, const ClientRecord& b) { return a.client_id < b.client_id; });
    return state;
  }

  void RestoreState(const ScheduleState& state) override {
    ScheduleBase::RestoreState(state);
    for (const ClientRecord& record : state.clients) {
      if (!(record.seconds_per_step > 0) || !std::isfinite(record.seconds_per_step)) continue;
      Client& client = clients_[record.client_id];
      client.speed = std::max(kMinSecondsPerStep, record.seconds_per_step);
      client.restored = true;
    }
  }

  absl::Time NextTimer() const override {
    const int64_t id = NextArmed();
    return id < 0 ? absl::InfiniteFuture() : TimeAt(groups_.at(id).t_lat);
  }

 protected:
  bool IsWaiting(absl::string_view client_id) const override {
    auto it = clients_.find(client_id);
    return it != clients_.end() && it->second.waiting;
  }

  void HandleArrival(const BufferedUpdate& update, absl::Time now, Decision* decision) override {
    auto [it, inserted] = clients_.try_emplace(update.client_id);
    Client& client = it->second;
    // start = origin; a restored client never planned is a newcomer too.
    if (inserted || client.restored) client.steps = options().max_local_steps;
    client.restored = false;
    UpdateSpeed(client, SecondsSinceOrigin(now));

    auto group = groups_.find(client.group);
    if (group == groups_.end()) {
      // First arrival: a single immediate update.
      EmitFlush({AppflWeighted(update)}, decision);
      Assign(update.client_id, now, decision);
      return;
    }
    Group& g = group->second;
    RemovePending(g, update.client_id);
    if (g.closed || now > TimeAt(g.t_lat)) {
      // Late: to the general buffer, reply at once.
      if (g.pending.empty()) groups_.erase(group);
      general_.push_back(update);
      Assign(update.client_id, now, decision);
    } else {
      // On time: wait for the group.
      g.arrived.push_back(update.client_id);
      g.buffer.push_back(update);
      client.waiting = true;
      if (g.pending.empty()) AggregateGroup(group->first, now, decision);
    }
  }

 private:
  struct Client {
    double speed = 0;      // Estimated seconds per local step; 0 = none yet.
    double start = 0;      // When its current task was assigned.
    uint32_t steps = 0;    // Q_c of its current task.
    int64_t group = -1;    // Its arrival group; -1 before its first arrival.
    bool waiting = false;  // Arrived on time, its group not yet aggregated.
    bool restored = false;  // Speed from a checkpoint, no task yet.
  };
  struct Group {
    std::vector<std::string> pending;
    std::vector<std::string> arrived;
    double t_exp = 0;
    double t_lat = 0;
    double steps = 0;     // Q of the member that created it.
    bool armed = true;    // Its latest-arrival timer has not fired.
    bool closed = false;  // Aggregated (the reference zeroes T_exp, T_lat).
    std::vector<BufferedUpdate> buffer;
  };

  static void RemovePending(Group& g, const std::string& client_id) {
    auto it = std::find(g.pending.begin(), g.pending.end(), client_id);
    if (it != g.pending.end()) g.pending.erase(it);
  }

  TaskPlan PlanOf(const Client& client) const {
    if (client.waiting) return WaitPlan();
    TaskPlan plan;
    plan.local_steps = client.steps;
    auto g = groups_.find(client.group);
    if (g != groups_.end() && !g->second.closed) {
      plan.group = client.group;
      plan.expected = TimeAt(g->second.t_exp);
      plan.deadline = TimeAt(g->second.t_lat);
    }
    return plan;
  }

  // μ weights the NEW sample.
  void UpdateSpeed(Client& client, double t) const {
    const double sample =
        std::max(kMinSecondsPerStep, (t - client.start) / static_cast<double>(client.steps));
    const double mu = options().speed_momentum;
    // A sample is at least kMinSecondsPerStep > 0: speed 0 means no estimate yet.
    client.speed = client.speed > 0 ? (1 - mu) * client.speed + mu * sample : sample;
  }

  // The armed group with the earliest latest-arrival time (creation order
  // breaks ties), or -1.
  int64_t NextArmed() const {
    int64_t best = -1;
    double best_t_lat = 0;
    for (const auto& [id, g] : groups_) {
      if (g.armed && (best < 0 || g.t_lat < best_t_lat)) {
        best = id;
        best_t_lat = g.t_lat;
      }
    }
    return best;
  }

  void RunDue(absl::Time now, bool inclusive, Decision* decision) override {
    for (;;) {
      const int64_t due = NextArmed();
      if (due < 0) return;
      Group& g = groups_.at(due);
      const absl::Time at = TimeAt(g.t_lat);
      if (at > now || (!inclusive && at == now)) return;
      g.armed = false;
      // A timer on a group nobody reached does nothing; its members
      // will all be late.
      if (!g.closed && !g.buffer.empty()) AggregateGroup(due, now, decision);
    }
  }

  // One staleness-weighted step over the general buffer and
  // the group's buffer, then reassign the arrived members fastest first.
  void AggregateGroup(int64_t id, absl::Time now, Decision* decision) {
    Group& g = groups_[id];
    std::vector<WeightedUpdate> updates;
    AppendAppflWeighted(general_, &updates);
    AppendAppflWeighted(g.buffer, &updates);
    general_.clear();
    g.buffer = {};
    EmitFlush(std::move(updates), decision);
    g.closed = true;
    g.armed = false;
    std::vector<std::string> arrived = std::move(g.arrived);
    g.arrived.clear();
    std::stable_sort(arrived.begin(), arrived.end(), [&](const auto& a, const auto& b) {
      return clients_.at(a).speed < clients_.at(b).speed;
    });
    for (const std::string& c : arrived) {
      clients_[c].waiting = false;
      Assign(c, now, decision);
    }
    if (g.pending.empty()) groups_.erase(id);
  }

  // Join the open group giving the largest feasible q, else create one.
  void Assign(const std::string& client_id, absl::Time now, Decision* decision) {
    Client& client = clients_[client_id];
    const double t = SecondsSinceOrigin(now);
    const double s = client.speed;
    const double q_min = options().min_local_steps;
    const double q_max = options().max_local_steps;
    int64_t best = -1;
    double best_q = -1;
    for (const auto& [id, g] : groups_) {
      if (g.closed) continue;
      const double q = std::floor((g.t_exp - t) / s);
      if (q < q_min || q > q_max || q < best_q) continue;
      best = id;
      best_q = q;
    }
    if (best < 0) {
      best = CreateGroup(t, s);
      best_q = groups_[best].steps;
    }
    groups_[best].pending.push_back(client_id);
    client.steps = static_cast<uint32_t>(best_q);
    client.group = best;
    client.start = t;
    decision->assignments.push_back({client_id, PlanOf(client)});
  }

  // "Create": a new, still empty group whose Q (`steps`) fits the
  // next return of the open groups' fastest members.
  int64_t CreateGroup(double t, double s) {
    const double q_min = options().min_local_steps;
    const double q_max = options().max_local_steps;
    double best_q = -1;
    for (const auto& [id, g] : groups_) {
      if (g.closed || !(t < g.t_lat)) continue;
      double fastest = std::numeric_limits<double>::infinity();
      for (const auto* members : {&g.pending, &g.arrived}) {
        for (const std::string& c : *members) fastest = std::min(fastest, clients_.at(c).speed);
      }
      const double q = std::floor((g.t_lat + fastest * q_max - t) / s);
      if (q <= q_max) best_q = std::max(best_q, q);
    }
    if (best_q >= 0 && best_q < q_min) best_q = q_min;
    if (best_q < 0) best_q = q_max;
    Group& g = groups_[next_group_];
    g.steps = best_q;
    g.t_exp = t + best_q * s;
    g.t_lat = t + best_q * s * options().latest_time_factor;
    return next_group_++;
  }

  absl::flat_hash_map<std::string, Client> clients_;
  std::map<int64_t, Group> groups_;  // In creation order.
  int64_t next_group_ = 0;
  std::vector<BufferedUpdate> general_;
};

}  // namespace

std::unique_ptr<Schedule> NewFedCompass(const ScheduleOptions& options, StalenessFunction s) {
  return std::make_unique<FedCompass>(options, s);
}

}  // namespace tally::aggregators
