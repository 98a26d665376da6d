// Schedules (aggregators/schedules/) against docs/algorithms.md: the
// FedCompass trace (#fedcompass-worked-trace) and the FedFix example
// (#fedfix-worked-example) step by step (numbers from independent reference
// scripts run outside the project, sim_compass.py and ref_fedfix.py),
// staleness functions and FedAsync / FedBuff weights against hand values.
//
// The harness plays the coordinator: it keeps a scalar model w and a version
// counter, computes each arrival's staleness as version − base version,
// applies every flush as w += Σ weight·Δ (sgd, lr 1) and hands an assigned
// client the model current after the decision. Time is virtual.
#include "aggregators/schedules/schedule.h"

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::aggregators {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

constexpr double kTol = 1e-6;  // The spec prints 6 decimals.

// ---- A deterministic coordinator over virtual time -------------------------

struct SimClient {
  // Seconds the client's `round`-th task of `steps` local steps takes.
  std::function<double(int round, uint32_t steps)> duration;
  // The client's delta Δ = w_local − w_base given w_base.
  std::function<double(double w_base)> delta;

  bool busy = false;
  absl::Time finish;
  int round = 0;
  uint64_t base_version = 0;
  double w_base = 0;
};

struct FlushRecord {
  double t;
  std::vector<std::pair<int, uint64_t>> members;  // (client, staleness)
  std::vector<double> weights;
  double w;
  uint64_t version;
};

struct AssignRecord {
  double t;
  int client;
  int64_t group;
  uint32_t q;
  double t_exp, t_lat;  // Infinity when the plan has none.
};

class Harness {
 public:
  Harness(Schedule* schedule, std::vector<SimClient> clients)
      : schedule_(schedule), clients_(std::move(clients)) {}

  // Every client asks for its first task at t = 0.
  void Start() {
    for (size_t c = 0; c < clients_.size(); ++c) Begin(c, schedule_->PlanFor(Id(c), t0_));
  }

  // Processes the next event (an arrival, or a timer strictly earlier than
  // every arrival); false when there is none.
  bool Step() {
    int next = -1;
    for (size_t c = 0; c < clients_.size(); ++c) {
      if (clients_[c].busy && (next < 0 || clients_[c].finish < clients_[next].finish)) {
        next = static_cast<int>(c);
      }
    }
    const absl::Time timer = schedule_->NextTimer();
    if (next < 0 && timer == absl::InfiniteFuture()) return false;
    if (next >= 0 && clients_[next].finish <= timer) {
      Arrive(next);
    } else {
      timers.push_back(Seconds(timer));
      Execute(timer, schedule_->OnTimer(timer));
    }
    return true;
  }

  void RunUntilFlushes(size_t n) {
    while (flushes.size() < n && Step()) {
    }
  }

  double Seconds(absl::Time t) const { return absl::ToDoubleSeconds(t - t0_); }
  absl::Time At(double seconds) const { return t0_ + absl::Seconds(seconds); }
  static std::string Id(size_t c) { return absl::StrCat("c", c); }

  double w = 0;
  uint64_t version = 0;
  std::vector<FlushRecord> flushes;
  std::vector<AssignRecord> assignments;
  std::vector<std::pair<double, int>> waits;  // Arrivals told to wait.
  std::vector<double> timers;

 private:
  void Arrive(int c) {
    SimClient& client = clients_[c];
    const absl::Time now = client.finish;
    client.busy = false;
    const uint64_t handle = next_handle_++;
    deltas_[handle] = {c, client.delta(client.w_base)};
    Arrival arrival{Id(c), handle, version - client.base_version, 1};
    auto decision = schedule_->OnArrival(arrival, now);
    ASSERT_THAT(decision, IsOk());
    if (decision->flushes.empty() && decision->assignments.empty()) {
      waits.push_back({Seconds(now), c});
      EXPECT_TRUE(schedule_->PlanFor(Id(c), now).wait);
      // Pushing again while told to wait is refused, without side effects.
      EXPECT_THAT(schedule_->OnArrival(arrival, now),
                  StatusIs(absl::StatusCode::kFailedPrecondition));
    }
    Execute(now, *decision);
  }

  void Execute(absl::Time now, const Decision& decision) {
    for (const Flush& flush : decision.flushes) {
      FlushRecord record{Seconds(now), {}, {}, 0, 0};
      double g = 0;
      for (const WeightedUpdate& u : flush.updates) {
        const auto& [c, delta] = deltas_.at(u.handle);
        EXPECT_EQ(u.client_id, Id(c));
        g += u.weight * delta;
        record.members.push_back({c, u.staleness});
        record.weights.push_back(u.weight);
        deltas_.erase(u.handle);
      }
      w += g;
      ++version;
      record.w = w;
      record.version = version;
      flushes.push_back(record);
    }
    for (const Assignment& a : decision.assignments) {
      const int c = std::stoi(a.client_id.substr(1));
      assignments.push_back({Seconds(now), c, a.plan.group, a.plan.local_steps,
                             PlanTime(a.plan.expected), PlanTime(a.plan.deadline)});
      EXPECT_FALSE(a.plan.wait);
      Begin(c, a.plan, now);
    }
  }

  double PlanTime(absl::Time t) const {
    return t == absl::InfiniteFuture() ? INFINITY : Seconds(t);
  }

  void Begin(size_t c, const TaskPlan& plan, absl::Time now) {
    SimClient& client = clients_[c];
    ASSERT_FALSE(plan.wait);
    client.busy = true;
    client.base_version = version;
    client.w_base = w;
    client.finish = now + absl::Seconds(client.duration(client.round, plan.local_steps));
    ++client.round;
  }
  void Begin(size_t c, const TaskPlan& plan) { Begin(c, plan, t0_); }

  Schedule* schedule_;
  std::vector<SimClient> clients_;
  const absl::Time t0_ = absl::FromUnixSeconds(1'700'000'000);
  uint64_t next_handle_ = 1;
  std::map<uint64_t, std::pair<int, double>> deltas_;  // handle -> (client, Δ)
};

std::unique_ptr<Schedule> MustCreate(const ScheduleOptions& options) {
  auto made = CreateSchedule(options);
  EXPECT_THAT(made, IsOk());
  return made.ok() ? std::move(made).value() : nullptr;
}

// ---- FedCompass: docs/algorithms.md#fedcompass-worked-trace ------------------

// Clients run at exact seconds/step (c2's second round at 9.0); APPFL's
// pseudo-gradients 1, 2, 3 are tally deltas −1, −2, −3 (schedule.h).
std::vector<SimClient> CompassClients() {
  const double speed[3] = {1.0, 2.25, 4.75};
  std::vector<SimClient> clients(3);
  for (int c = 0; c < 3; ++c) {
    clients[c].duration = [c, s = speed[c]](int round, uint32_t steps) {
      return steps * (c == 2 && round == 1 ? 9.0 : s);
    };
    clients[c].delta = [c](double) { return -(c + 1.0); };
  }
  return clients;
}

ScheduleOptions CompassOptions() {
  ScheduleOptions o;
  o.name = "fedcompass";
  o.max_local_steps = 100;
  o.min_local_steps = 20;
  o.latest_time_factor = 1.5;
  o.speed_momentum = 0.9;
  o.alpha = 0.9;
  o.num_clients = 3;
  o.staleness.name = "polynomial";
  o.staleness.a = 0.5;
  return o;
}

TEST(FedCompassTest, DeterministicTraceOfSection3_10) {
  auto schedule = MustCreate(CompassOptions());
  ASSERT_NE(schedule, nullptr);
  Harness h(schedule.get(), CompassClients());
  h.Start();
  h.RunUntilFlushes(12);

  struct ExpectedFlush {
    double t;
    std::vector<std::pair<int, uint64_t>> members;
    double w;
  };
  const std::vector<ExpectedFlush> kFlushes = {
      {100, {{0, 0}}, -0.300000},
      {200, {{0, 0}}, -0.600000},
      {225, {{1, 2}}, -0.946410},
      {300, {{1, 0}, {0, 1}}, -1.758542},
      {400, {{1, 0}, {0, 0}}, -2.658542},
      {475, {{2, 5}}, -3.025966},
      {500, {{1, 1}, {0, 1}}, -3.662362},
      {600, {{0, 0}}, -3.962362},
      {731.5, {{1, 1}, {0, 0}}, -4.686626},
      {831.5, {{2, 3}, {1, 0}, {0, 0}}, -6.036626},
      {931.5, {{0, 0}}, -6.336626},
      {978.5, {{2, 2}, {1, 1}, {0, 0}}, -7.580505},
  };
  ASSERT_EQ(h.flushes.size(), kFlushes.size());
  for (size_t i = 0; i < kFlushes.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("flush ", i + 1, " at t=", kFlushes[i].t));
    EXPECT_NEAR(h.flushes[i].t, kFlushes[i].t, kTol);
    EXPECT_EQ(h.flushes[i].members, kFlushes[i].members);
    EXPECT_NEAR(h.flushes[i].w, kFlushes[i].w, kTol);
    EXPECT_EQ(h.flushes[i].version, i + 1);  // ts in the trace.
  }
  // The trace's hand check: at t = 225, α·S(2)/N = 0.9·3^(−1/2)/3.
  EXPECT_NEAR(h.flushes[2].weights[0], 0.9 / std::sqrt(3.0) / 3, 1e-12);

  // (t, client, group, Q, T_exp, T_lat) of every (re)assignment up to the
  // last aggregation.
  const std::vector<AssignRecord> kAssignments = {
      {100, 0, 0, 100, 200, 250},          {200, 0, 1, 100, 300, 350},
      {225, 1, 1, 33, 300, 350},           {300, 0, 2, 100, 400, 450},
      {300, 1, 2, 44, 400, 450},           {400, 0, 3, 100, 500, 550},
      {400, 1, 3, 44, 500, 550},           {475, 2, 4, 36, 646, 731.5},
      {500, 0, 5, 100, 600, 650},          {500, 1, 4, 64, 646, 731.5},
      {600, 0, 4, 46, 646, 731.5},         {731.5, 0, 6, 100, 831.5, 881.5},
      {731.5, 1, 6, 44, 831.5, 881.5},     {799, 2, 7, 21, 979.075, 1069.1125},
      {831.5, 0, 8, 100, 931.5, 981.5},    {831.5, 1, 7, 65, 979.075, 1069.1125},
      {931.5, 0, 7, 47, 979.075, 1069.1125},
  };
  ASSERT_GE(h.assignments.size(), kAssignments.size());
  for (size_t i = 0; i < kAssignments.size(); ++i) {
    const AssignRecord& got = h.assignments[i];
    const AssignRecord& want = kAssignments[i];
    SCOPED_TRACE(absl::StrCat("assignment ", i, ": t=", want.t, " c", want.client));
    EXPECT_NEAR(got.t, want.t, kTol);
    EXPECT_EQ(got.client, want.client);
    EXPECT_EQ(got.group, want.group);
    EXPECT_EQ(got.q, want.q);
    EXPECT_NEAR(got.t_exp, want.t_exp, kTol);
    EXPECT_NEAR(got.t_lat, want.t_lat, kTol);
  }
  // The rest were made by the last aggregation (t = 978.5).
  for (size_t i = kAssignments.size(); i < h.assignments.size(); ++i) {
    EXPECT_NEAR(h.assignments[i].t, 978.5, kTol);
  }

  // Arrivals that waited for their group (the late one at t = 799 did not).
  const std::vector<std::pair<double, int>> kWaits = {
      {299.25, 1}, {399, 1}, {499, 1}, {644, 1}, {646, 0}, {830.5, 1}, {898.75, 2}, {977.75, 1}};
  ASSERT_EQ(h.waits.size(), kWaits.size());
  for (size_t i = 0; i < kWaits.size(); ++i) {
    EXPECT_NEAR(h.waits[i].first, kWaits[i].first, kTol) << i;
    EXPECT_EQ(h.waits[i].second, kWaits[i].second) << i;
  }
  // Only g4's latest-arrival timer fires in the trace.
  ASSERT_EQ(h.timers.size(), 1u);
  EXPECT_NEAR(h.timers[0], 731.5, kTol);
}

TEST(FedCompassTest, FirstTaskIsQmaxWithoutGroup) {
  auto schedule = MustCreate(CompassOptions());
  ASSERT_NE(schedule, nullptr);
  const TaskPlan plan = schedule->PlanFor("a", absl::UnixEpoch());
  EXPECT_FALSE(plan.wait);
  EXPECT_EQ(plan.local_steps, 100u);
  EXPECT_EQ(plan.group, -1);
  EXPECT_EQ(plan.deadline, absl::InfiniteFuture());
  EXPECT_EQ(schedule->NextTimer(), absl::InfiniteFuture());
}

// A group whose timer fires before anyone arrived does nothing; its member
// is then late, goes to the general buffer (reply at once) and is
// aggregated with the next group.
TEST(FedCompassTest, EmptyTimerThenLateArrivalUsesGeneralBuffer) {
  ScheduleOptions o = CompassOptions();
  o.num_clients = 1;
  o.staleness.name = "constant";
  o.alpha = 1;
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  const absl::Time t0 = absl::UnixEpoch();
  schedule->PlanFor("a", t0);
  // First arrival at 100 s: speed 1, immediate update, new g0 (200, 250).
  auto d = schedule->OnArrival({"a", 1, 0, 1}, t0 + absl::Seconds(100));
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->flushes.size(), 1u);
  EXPECT_DOUBLE_EQ(d->flushes[0].updates[0].weight, 1.0);
  EXPECT_EQ(schedule->NextTimer(), t0 + absl::Seconds(250));
  Decision timer = schedule->OnTimer(t0 + absl::Seconds(250));
  EXPECT_TRUE(timer.flushes.empty());
  EXPECT_EQ(schedule->NextTimer(), absl::InfiniteFuture());
  // Late at 300 s (staleness 0 against version 1): buffered, reassigned now.
  d = schedule->OnArrival({"a", 2, 0, 1}, t0 + absl::Seconds(300));
  ASSERT_THAT(d, IsOk());
  EXPECT_TRUE(d->flushes.empty());
  ASSERT_EQ(d->assignments.size(), 1u);
  EXPECT_EQ(d->assignments[0].plan.group, 1);
  // speed 0.1·1 + 0.9·(200/100) = 1.9 → Q_max: T_exp = 300 + 190.
  EXPECT_NEAR(absl::ToDoubleSeconds(d->assignments[0].plan.expected - t0), 490, 1e-9);
  // On time at 490: g1 aggregates the general buffer's update and this one.
  d = schedule->OnArrival({"a", 3, 0, 1}, t0 + absl::Seconds(490));
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->flushes.size(), 1u);
  ASSERT_EQ(d->flushes[0].updates.size(), 2u);
  EXPECT_EQ(d->flushes[0].updates[0].handle, 2u);
  EXPECT_EQ(d->flushes[0].updates[1].handle, 3u);
}

TEST(FedCompassTest, SaveStateHoldsTheSpeedEstimatesAndSampleCounts) {
  ScheduleOptions o = CompassOptions();
  o.num_clients = 1;
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  const absl::Time t0 = absl::UnixEpoch();
  EXPECT_TRUE(schedule->SaveState().clients.empty());
  schedule->PlanFor("a", t0);
  schedule->PlanFor("b", t0);
  // a: 100 steps in 100 s. b has a task but no arrival: no record.
  ASSERT_THAT(schedule->OnArrival({"a", 1, 0, 7}, t0 + absl::Seconds(100)), IsOk());
  std::vector<ClientRecord> expected = {{"a", 7, 1.0}};
  EXPECT_EQ(schedule->SaveState().clients, expected);
  // a again: its new group g0 expects it at 200; it arrives at 300 with 100
  // steps: sample 2.0, speed 0.1·1 + 0.9·2 = 1.9.
  ASSERT_THAT(schedule->OnArrival({"a", 2, 0, 9}, t0 + absl::Seconds(300)), IsOk());
  const ScheduleState state = schedule->SaveState();
  ASSERT_EQ(state.clients.size(), 1u);
  EXPECT_EQ(state.clients[0].num_samples, 9u);
  EXPECT_NEAR(state.clients[0].seconds_per_step, 1.9, 1e-12);
}

// Restored speeds: both clients are grouped from their first task (a fresh
// schedule would give each Q_max and no group, FirstTaskIsQmaxWithoutGroup).
TEST(FedCompassTest, RestoredSpeedsGroupClientsFromTheirFirstTask) {
  auto schedule = MustCreate(CompassOptions());
  ASSERT_NE(schedule, nullptr);
  ScheduleState saved;
  saved.clients = {{"a", 0, 0.5}, {"b", 0, 1.0}};
  schedule->RestoreState(saved);
  const absl::Time t0 = absl::UnixEpoch();
  // a: no group yet, so a new one with Q_max = 100: expected 50, latest 75.
  TaskPlan a = schedule->PlanFor("a", t0);
  EXPECT_EQ(a.local_steps, 100u);
  EXPECT_EQ(a.group, 0);
  EXPECT_EQ(a.expected, t0 + absl::Seconds(50));
  EXPECT_EQ(a.deadline, t0 + absl::Seconds(75));
  // PlanFor stays idempotent.
  EXPECT_EQ(schedule->PlanFor("a", t0).local_steps, 100u);
  EXPECT_EQ(schedule->NextTimer(), t0 + absl::Seconds(75));
  // b joins g0: floor((50 − 0) / 1.0) = 50 steps, within [20, 100].
  TaskPlan b = schedule->PlanFor("b", t0);
  EXPECT_EQ(b.local_steps, 50u);
  EXPECT_EQ(b.group, 0);
  EXPECT_EQ(b.deadline, t0 + absl::Seconds(75));
  // Both arrive on time at 50 s: a waits, b completes the group: one step
  // of both, each 0.9 · S(0) · 1/3 = 0.3; reassigned fastest first.
  auto d = schedule->OnArrival({"a", 1, 0, 1}, t0 + absl::Seconds(50));
  ASSERT_THAT(d, IsOk());
  EXPECT_TRUE(d->flushes.empty());
  EXPECT_TRUE(schedule->PlanFor("a", t0 + absl::Seconds(50)).wait);
  d = schedule->OnArrival({"b", 2, 0, 1}, t0 + absl::Seconds(50));
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->flushes.size(), 1u);
  ASSERT_EQ(d->flushes[0].updates.size(), 2u);
  EXPECT_DOUBLE_EQ(d->flushes[0].updates[0].weight, 0.3);
  EXPECT_DOUBLE_EQ(d->flushes[0].updates[1].weight, 0.3);
  ASSERT_EQ(d->assignments.size(), 2u);
  EXPECT_EQ(d->assignments[0].client_id, "a");
  EXPECT_EQ(d->assignments[1].client_id, "b");
}

// ---- FedFix: docs/algorithms.md#fedfix-worked-example -----------------------

TEST(FedFixTest, WorkedExampleOfSection4_3) {
  ScheduleOptions o;
  o.name = "fedfix";
  o.window = absl::Milliseconds(500);
  o.num_clients = 3;  // p uniform = 1/3.
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  // Scenario F-80: τ = (1.0, 0.6, 0.2); f_i = ½(θ − c_i)², one gradient
  // step with lr 0.5: Δ = −0.5 (θ_start − c_i).
  const double tau[3] = {1.0, 0.6, 0.2};
  std::vector<SimClient> clients(3);
  for (int c = 0; c < 3; ++c) {
    clients[c].duration = [t = tau[c]](int, uint32_t) { return t; };
    clients[c].delta = [target = c + 1.0](double w) { return -0.5 * (w - target); };
  }
  Harness h(schedule.get(), clients);
  h.Start();
  h.RunUntilFlushes(6);

  const double kTheta[7] = {0, 0.5, 1.916667, 2.097222, 1.969907, 2.141590, 1.971386};
  // Per aggregation n: the clients aggregated (the spec's table, entries
  // ≠ −1), each with the staleness n − ρ_i(n) and weight d_i = ⌈τ_i/Δt⌉/3.
  const std::vector<std::vector<std::pair<int, uint64_t>>> kMembers = {
      {{2, 0}},
      {{1, 1}, {2, 0}, {0, 1}},
      {{2, 0}},
      {{1, 1}, {2, 0}, {0, 1}},
      {{2, 0}},
      {{1, 1}, {2, 0}, {0, 1}},
  };
  const double kWeight[3] = {2.0 / 3, 2.0 / 3, 1.0 / 3};
  ASSERT_EQ(h.flushes.size(), 6u);
  for (size_t n = 0; n < 6; ++n) {
    SCOPED_TRACE(absl::StrCat("aggregation n=", n));
    EXPECT_NEAR(h.flushes[n].t, 0.5 * (n + 1), 1e-9);
    EXPECT_EQ(h.flushes[n].members, kMembers[n]);
    for (size_t i = 0; i < h.flushes[n].members.size(); ++i) {
      EXPECT_NEAR(h.flushes[n].weights[i], kWeight[h.flushes[n].members[i].first], 1e-12);
    }
    EXPECT_NEAR(h.flushes[n].w, kTheta[n + 1], kTol);
  }
}

TEST(FedFixTest, ContributorsWaitForTheWindowEnd) {
  ScheduleOptions o;
  o.name = "fedfix";
  o.window = absl::Seconds(1);
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  const absl::Time t0 = absl::UnixEpoch();
  EXPECT_FALSE(schedule->PlanFor("a", t0).wait);
  EXPECT_EQ(schedule->NextTimer(), absl::InfiniteFuture());
  auto d = schedule->OnArrival({"a", 7, 0, 1}, t0 + absl::Milliseconds(300));
  ASSERT_THAT(d, IsOk());
  EXPECT_TRUE(d->flushes.empty());
  EXPECT_TRUE(schedule->PlanFor("a", t0 + absl::Milliseconds(400)).wait);
  EXPECT_EQ(schedule->NextTimer(), t0 + absl::Seconds(1));
  // A late timer callback still aggregates window 0 with k = 1.
  Decision timer = schedule->OnTimer(t0 + absl::Milliseconds(1700));
  ASSERT_EQ(timer.flushes.size(), 1u);
  EXPECT_DOUBLE_EQ(timer.flushes[0].updates[0].weight, 1.0);
  ASSERT_EQ(timer.assignments.size(), 1u);
  EXPECT_FALSE(schedule->PlanFor("a", t0 + absl::Milliseconds(1700)).wait);
}

// ---- Staleness functions (APPFL fedasync_aggregator.py; hand values) -------

TEST(StalenessTest, HandValues) {
  StalenessOptions o;
  auto constant = StalenessFunction::Create(o);
  ASSERT_THAT(constant, IsOk());
  EXPECT_EQ((*constant)(0), 1.0);
  EXPECT_EQ((*constant)(9), 1.0);

  o.name = "polynomial";
  o.a = 0.5;
  auto poly = StalenessFunction::Create(o);
  ASSERT_THAT(poly, IsOk());
  EXPECT_DOUBLE_EQ((*poly)(0), 1.0);
  EXPECT_DOUBLE_EQ((*poly)(3), 0.5);        // 4^(−1/2)
  EXPECT_DOUBLE_EQ((*poly)(8), 1.0 / 3.0);  // 9^(−1/2)
  o.a = 1.0;
  EXPECT_DOUBLE_EQ((*StalenessFunction::Create(o))(4), 0.2);  // 5^(−1)

  o.name = "hinge";
  o.a = 0.5;
  o.b = 4;
  auto hinge = StalenessFunction::Create(o);
  ASSERT_THAT(hinge, IsOk());
  EXPECT_EQ((*hinge)(0), 1.0);
  EXPECT_EQ((*hinge)(4), 1.0);              // u <= b
  EXPECT_DOUBLE_EQ((*hinge)(5), 1 / 1.5);   // 1/(0.5·1 + 1)
  EXPECT_DOUBLE_EQ((*hinge)(6), 0.5);       // 1/(0.5·2 + 1)
  EXPECT_DOUBLE_EQ((*hinge)(10), 0.25);     // 1/(0.5·6 + 1)
}

TEST(StalenessTest, InvalidOptionsNameTheField) {
  StalenessOptions o;
  o.name = "exponential";
  EXPECT_THAT(StalenessFunction::Create(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.name = "polynomial";
  o.a = -1;
  auto bad = StalenessFunction::Create(o, "schedule.staleness");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("schedule.staleness.a"));
  o.name = "hinge";
  o.a = 1;
  o.b = NAN;
  EXPECT_THAT(StalenessFunction::Create(o), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---- FedAsync and FedBuff (docs/algorithms.md#fedasync) ---------------------

// One client: each arrival is applied alone with weight α·S(τ)·1/N.
TEST(FedAsyncTest, SingleClientUpdateTimesStalenessWeight) {
  ScheduleOptions o;
  o.name = "fedasync";
  o.alpha = 0.9;
  o.num_clients = 1;
  o.staleness.name = "polynomial";
  o.staleness.a = 0.5;
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  const absl::Time t = absl::UnixEpoch();
  EXPECT_EQ(schedule->PlanFor("a", t).local_steps, 5u);
  const uint64_t staleness[3] = {3, 0, 8};
  const double weight[3] = {0.9 * 0.5, 0.9, 0.9 / 3};  // 0.9·(τ+1)^(−1/2)
  for (int k = 0; k < 3; ++k) {
    auto d = schedule->OnArrival({"a", static_cast<UpdateHandle>(k), staleness[k], 10}, t);
    ASSERT_THAT(d, IsOk());
    ASSERT_EQ(d->flushes.size(), 1u);
    ASSERT_EQ(d->flushes[0].updates.size(), 1u);
    EXPECT_EQ(d->flushes[0].updates[0].handle, static_cast<UpdateHandle>(k));
    EXPECT_EQ(d->flushes[0].updates[0].staleness, staleness[k]);
    EXPECT_DOUBLE_EQ(d->flushes[0].updates[0].weight, weight[k]);
    ASSERT_EQ(d->assignments.size(), 1u);
    EXPECT_EQ(d->assignments[0].client_id, "a");
  }
  EXPECT_EQ(schedule->NextTimer(), absl::InfiniteFuture());
}

// Applies the flushes of `d` to the 2-d model `w` given each handle's delta.
void ApplyFlushes(const Decision& d, const std::vector<std::vector<double>>& deltas,
                  std::vector<double>* w) {
  for (const Flush& f : d.flushes) {
    for (const WeightedUpdate& u : f.updates) {
      for (size_t j = 0; j < w->size(); ++j) (*w)[j] += u.weight * deltas[u.handle][j];
    }
  }
}

// FedBuff with K = n, α = 1, constant staleness and sample_size weights is
// one FedAvg round: w + Σ (n_c/Σn) Δ_c, applied once. With equal weights and
// N = n it is the plain mean.
TEST(FedBuffTest, BufferOfAllClientsEqualsSyncFedAvg) {
  const std::vector<std::vector<double>> deltas = {{1, 2}, {-3, 0.5}, {4, -1}};
  const uint64_t samples[3] = {10, 30, 60};
  for (const char* mode : {"sample_size", "equal"}) {
    SCOPED_TRACE(mode);
    ScheduleOptions o;
    o.name = "fedbuff";
    o.buffer_size = 3;
    o.alpha = 1;
    o.num_clients = 3;
    o.client_weights = mode;
    auto schedule = MustCreate(o);
    ASSERT_NE(schedule, nullptr);
    std::vector<double> w = {0.5, -0.5};
    for (int c = 0; c < 3; ++c) {
      auto d = schedule->OnArrival({absl::StrCat("c", c), static_cast<UpdateHandle>(c), 0,
                                    samples[c]},
                                   absl::UnixEpoch() + absl::Seconds(c));
      ASSERT_THAT(d, IsOk());
      EXPECT_EQ(d->flushes.size(), c == 2 ? 1u : 0u);
      EXPECT_EQ(d->assignments.size(), 1u);  // The reply is never deferred.
      ApplyFlushes(*d, deltas, &w);
    }
    // Hand values: (10Δ0 + 30Δ1 + 60Δ2)/100 = (1.6, −0.25); mean (2/3, 0.5).
    const bool weighted = std::string(mode) == "sample_size";
    EXPECT_NEAR(w[0], 0.5 + (weighted ? 1.6 : 2.0 / 3), 1e-12);
    EXPECT_NEAR(w[1], -0.5 + (weighted ? -0.25 : 0.5), 1e-12);
  }
}

// No 1/K; staleness against the version at arrival (it only moves on flushes).
TEST(FedBuffTest, FlushSumsAlphaStalenessWeightedUpdates) {
  ScheduleOptions o;
  o.name = "fedbuff";
  o.buffer_size = 2;
  o.alpha = 0.9;
  o.num_clients = 4;
  o.staleness.name = "hinge";
  o.staleness.a = 0.5;
  o.staleness.b = 1;
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  ASSERT_THAT(schedule->OnArrival({"a", 1, 0, 1}, absl::UnixEpoch()), IsOk());
  auto d = schedule->OnArrival({"b", 2, 3, 1}, absl::UnixEpoch());
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->flushes.size(), 1u);
  ASSERT_EQ(d->flushes[0].updates.size(), 2u);
  EXPECT_DOUBLE_EQ(d->flushes[0].updates[0].weight, 0.9 / 4);
  EXPECT_DOUBLE_EQ(d->flushes[0].updates[1].weight, 0.9 / 4 * 0.5);  // 1/(0.5·2+1)
}

// Sample counts from a checkpoint weight the first flush after a restart as
// they weighted the last one before it: 30 / (30 + 10), not 30 / 30.
TEST(FedBuffTest, RestoredSampleCountsWeightTheFirstFlush) {
  ScheduleOptions o;
  o.name = "fedbuff";
  o.buffer_size = 1;
  o.alpha = 1;
  o.client_weights = "sample_size";
  auto schedule = MustCreate(o);
  ASSERT_NE(schedule, nullptr);
  ScheduleState saved;
  saved.clients = {{"b", 10, 0}, {"a", 25, 2.5}};  // Speeds are ignored here.
  schedule->RestoreState(saved);
  auto d = schedule->OnArrival({"a", 1, 0, 30}, absl::UnixEpoch());
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->flushes.size(), 1u);
  EXPECT_DOUBLE_EQ(d->flushes[0].updates[0].weight, 0.75);
  std::vector<ClientRecord> expected = {{"a", 30, 0}, {"b", 10, 0}};
  EXPECT_EQ(schedule->SaveState().clients, expected);
}

// ---- Options and registry --------------------------------------------------

TEST(ScheduleOptionsTest, RegistryKnowsTheAsyncSchedules) {
  EXPECT_THAT(ScheduleNames(),
              ::testing::ElementsAre("fedasync", "fedbuff", "fedfix", "fedcompass"));
  for (const std::string& name : ScheduleNames()) {
    ScheduleOptions o;
    o.name = name;
    auto made = CreateSchedule(o);
    ASSERT_THAT(made, IsOk()) << name;
    EXPECT_EQ((*made)->name(), name);
  }
}

TEST(ScheduleOptionsTest, InvalidOptionsNameTheField) {
  struct Case {
    const char* field;
    std::function<void(ScheduleOptions&)> set;
  };
  const std::vector<Case> cases = {
      {"schedule.name", [](ScheduleOptions& o) { o.name = "fedsomething"; }},
      {"schedule.name", [](ScheduleOptions& o) { o.name = "sync"; }},
      {"schedule.alpha", [](ScheduleOptions& o) { o.alpha = 0; }},
      {"schedule.alpha", [](ScheduleOptions& o) { o.alpha = NAN; }},
      {"schedule.client_weights", [](ScheduleOptions& o) { o.client_weights = "size"; }},
      {"schedule.num_clients", [](ScheduleOptions& o) { o.num_clients = 0; }},
      {"schedule.staleness.name", [](ScheduleOptions& o) { o.staleness.name = "exp"; }},
      {"schedule.staleness.a",
       [](ScheduleOptions& o) {
         o.staleness.name = "polynomial";
         o.staleness.a = -0.5;
       }},
      {"schedule.staleness.b",
       [](ScheduleOptions& o) {
         o.staleness.name = "hinge";
         o.staleness.b = -1;
       }},
      {"schedule.local_steps", [](ScheduleOptions& o) { o.local_steps = 0; }},
      {"schedule.task_timeout", [](ScheduleOptions& o) { o.task_timeout = absl::ZeroDuration(); }},
      {"schedule.buffer_size",
       [](ScheduleOptions& o) {
         o.name = "fedbuff";
         o.buffer_size = 0;
       }},
      {"schedule.window",
       [](ScheduleOptions& o) {
         o.name = "fedfix";
         o.window = absl::ZeroDuration();
       }},
      {"schedule.window",
       [](ScheduleOptions& o) {
         o.name = "fedfix";
         o.window = absl::InfiniteDuration();
       }},
      {"schedule.min_local_steps",
       [](ScheduleOptions& o) {
         o.name = "fedcompass";
         o.min_local_steps = 0;
       }},
      {"schedule.max_local_steps",
       [](ScheduleOptions& o) {
         o.name = "fedcompass";
         o.max_local_steps = 10;
       }},
      {"schedule.speed_momentum",
       [](ScheduleOptions& o) {
         o.name = "fedcompass";
         o.speed_momentum = 0;
       }},
      {"schedule.speed_momentum",
       [](ScheduleOptions& o) {
         o.name = "fedcompass";
         o.speed_momentum = 1.5;
       }},
      {"schedule.latest_time_factor",
       [](ScheduleOptions& o) {
         o.name = "fedcompass";
         o.latest_time_factor = 0.5;
       }},
  };
  for (const Case& c : cases) {
    ScheduleOptions o;
    c.set(o);
    auto made = CreateSchedule(o);
    EXPECT_THAT(made, StatusIs(absl::StatusCode::kInvalidArgument)) << c.field;
    EXPECT_THAT(std::string(made.status().message()), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace tally::aggregators
