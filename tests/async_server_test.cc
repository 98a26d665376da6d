// The asynchronous schedules through a real tally server on loopback and the
// real C++ SDK, in virtual time (the server's clock is a ManualClock the test
// advances): clients arrive in an order the test forces, and the models,
// tasks and staleness are checked against docs/algorithms.md#fedcompass-worked-trace.
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "core/clock.h"
#include "server/server.h"
#include "tally/client.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

class AsyncServerTest : public ::testing::Test {
 protected:
  // Origin of virtual time: any instant far from the Unix epoch.
  const absl::Time origin_ = absl::FromUnixSeconds(1'800'000'000);
  ManualClock clock_{origin_};
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<server::Server> server_;
  std::map<std::string, std::unique_ptr<Client>> clients_;
  std::map<std::string, uint64_t> base_;  // Version each client last pulled.

  void StartServer(const tally::v1::ScheduleConfig& schedule,
                   const std::string& checkpoint_dir = "") {
    server::ServerOptions options;
    options.config.set_checkpoint_dir(checkpoint_dir);
    options.config.set_listen_address("127.0.0.1:0");
    options.config.set_metrics_port(-1);
    auto* t = options.config.mutable_model()->add_tensors();
    t->set_name("w");
    t->add_shape(1);
    *options.config.mutable_schedule() = schedule;
    options.registry = registry_;
    options.clock = &clock_;
    auto server = server::Server::Create(std::move(options));
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
  }

  void AddClient(const std::string& id) {
    ClientOptions options;
    options.target = "127.0.0.1:" + std::to_string(server_->port());
    options.client_id = id;
    options.initial_backoff = absl::Milliseconds(10);
    auto client = Client::Create(options);
    ASSERT_THAT(client, IsOk());
    ASSERT_THAT((*client)->Join(), IsOk());
    clients_[id] = std::move(client).value();
  }

  void At(double seconds) {
    const absl::Duration step = origin_ + absl::Seconds(seconds) - clock_.Now();
    ASSERT_GE(step, absl::ZeroDuration());
    clock_.Advance(step);
  }

  // GetTask (long-polling while the server applies what the client waits
  // for), then PullModel as the SDK's users do. Returns the task.
  Task NextTask(const std::string& id) {
    auto task = clients_[id]->GetTask(absl::Seconds(20));
    EXPECT_THAT(task, IsOk()) << id;
    if (!task.ok()) return Task{};
    EXPECT_EQ(task->kind, Task::Kind::kTrain) << id;
    auto model = clients_[id]->PullModel();
    EXPECT_THAT(model, IsOk());
    if (model.ok()) base_[id] = model->version;
    return *task;
  }

  absl::StatusOr<PushResult> Push(const std::string& id, float delta) {
    std::vector<float> d = {delta};
    Update update;
    update.base_version = base_[id];
    update.num_samples = 1;
    update.delta = d;
    return clients_[id]->PushUpdate(update);
  }

  // The model once version `version` is published.
  float ModelAt(uint64_t version) {
    auto& client = *clients_.begin()->second;
    EXPECT_THAT(client.WaitForVersion(version - 1, absl::Seconds(20)), IsOk());
    auto model = client.PullModel();
    EXPECT_THAT(model, IsOk());
    if (!model.ok()) return NAN;
    EXPECT_EQ(model->version, version);
    return model->params[0];
  }

  double Metric(const std::string& name, const std::string& label_value = "") {
    for (const auto& family : registry_->Collect()) {
      if (family.name != name) continue;
      for (const auto& metric : family.metric) {
        if (!label_value.empty() && (metric.label.empty() || metric.label[0].value != label_value)) {
          continue;
        }
        if (family.type == prometheus::MetricType::Histogram) {
          return static_cast<double>(metric.histogram.sample_count);
        }
        return metric.counter.value;
      }
    }
    return -1;
  }
};

// docs/algorithms.md#fedcompass-worked-trace, the deterministic FedCompass trace, up to t = 831.5:
// first arrivals, group aggregation, joins, a group closed by its timer and a
// late arrival in the general buffer. tally deltas are the trace's
// pseudo-gradients with the opposite sign (schedule.h). Every push returns
// at once; a client whose update waits for its group long-polls GetTask.
TEST_F(AsyncServerTest, FedCompassFollowsTheDeterministicTrace) {
  tally::v1::ScheduleConfig s;
  s.set_name("fedcompass");
  s.set_alpha(0.9);
  s.set_num_clients(3);
  s.mutable_staleness()->set_name("polynomial");
  s.mutable_staleness()->set_a(0.5);
  s.set_min_local_steps(20);
  s.set_max_local_steps(100);
  s.set_latest_time_factor(1.5);
  s.set_speed_momentum(0.9);
  StartServer(s);
  for (const char* id : {"c0", "c1", "c2"}) AddClient(id);
  At(0);
  for (const char* id : {"c0", "c1", "c2"}) EXPECT_EQ(NextTask(id).local_steps, 100u);

  At(100);  // c0 first arrival: immediate update, staleness 0.
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(2), -0.3, 1e-6);
  Task t = NextTask("c0");  // NEW g0: Q 100, T_exp 200, T_lat 250.
  EXPECT_EQ(t.local_steps, 100u);
  EXPECT_EQ(t.deadline, origin_ + absl::Seconds(250));

  At(200);  // g0 complete.
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(3), -0.6, 1e-6);
  EXPECT_EQ(NextTask("c0").local_steps, 100u);  // NEW g1 (300, 350).

  At(225);  // c1 first arrival, staleness 2 (versions 2 and 3 since its base).
  ASSERT_THAT(Push("c1", -2), IsOk());
  EXPECT_NEAR(ModelAt(4), -0.946410, 1e-6);
  t = NextTask("c1");  // JOIN g1.
  EXPECT_EQ(t.local_steps, 33u);
  EXPECT_EQ(t.deadline, origin_ + absl::Seconds(350));

  At(299.25);  // c1 arrives on time and waits for g1.
  ASSERT_THAT(Push("c1", -2), IsOk());
  auto waiting = clients_["c1"]->GetTask();
  ASSERT_THAT(waiting, IsOk());
  EXPECT_EQ(waiting->kind, Task::Kind::kWait);
  At(300);  // c0 completes g1: [(c1, 0), (c0, 1)].
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(5), -1.758542, 1e-6);
  EXPECT_EQ(NextTask("c0").local_steps, 100u);  // NEW g2 (400, 450).
  EXPECT_EQ(NextTask("c1").local_steps, 44u);   // JOIN g2.

  At(399);
  ASSERT_THAT(Push("c1", -2), IsOk());
  At(400);
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(6), -2.658542, 1e-6);
  EXPECT_EQ(NextTask("c0").local_steps, 100u);  // NEW g3 (500, 550).
  EXPECT_EQ(NextTask("c1").local_steps, 44u);

  At(475);  // c2 first arrival, staleness 5.
  ASSERT_THAT(Push("c2", -3), IsOk());
  EXPECT_NEAR(ModelAt(7), -3.025966, 1e-6);
  EXPECT_EQ(NextTask("c2").local_steps, 36u);  // NEW g4 (646, 731.5).

  At(499);
  ASSERT_THAT(Push("c1", -2), IsOk());
  At(500);
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(8), -3.662362, 1e-6);
  EXPECT_EQ(NextTask("c0").local_steps, 100u);  // NEW g5 (600, 650).
  EXPECT_EQ(NextTask("c1").local_steps, 64u);   // JOIN g4.

  At(600);
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(9), -3.962362, 1e-6);
  EXPECT_EQ(NextTask("c0").local_steps, 46u);  // JOIN g4.

  At(644);
  ASSERT_THAT(Push("c1", -2), IsOk());
  At(646);
  ASSERT_THAT(Push("c0", -1), IsOk());
  // c2 now runs at 9 s/step and misses g4: the server's timer at T_lat
  // aggregates [(c1, 1), (c0, 0)] with nobody calling in.
  At(731.5);
  EXPECT_NEAR(ModelAt(10), -4.686626, 1e-6);
  EXPECT_EQ(NextTask("c0").local_steps, 100u);  // NEW g6 (831.5, 881.5).
  EXPECT_EQ(NextTask("c1").local_steps, 44u);   // JOIN g6.

  At(799);  // c2 late: general buffer, new group at once.
  ASSERT_THAT(Push("c2", -3), IsOk());
  EXPECT_EQ(NextTask("c2").local_steps, 21u);  // NEW g7.
  At(830.5);
  ASSERT_THAT(Push("c1", -2), IsOk());
  At(831.5);  // g6 with the buffered late update: [(c2, 3), (c1, 0), (c0, 0)].
  ASSERT_THAT(Push("c0", -1), IsOk());
  EXPECT_NEAR(ModelAt(11), -6.036626, 1e-5);
  EXPECT_EQ(NextTask("c1").local_steps, 65u);  // JOIN g7.

  EXPECT_EQ(Metric("tally_update_staleness"), 16);  // Every accepted update.
  EXPECT_EQ(Metric("tally_updates_accepted_total"), 16);
  EXPECT_EQ(Metric("tally_rounds_completed_total"), 10);
}

// FedBuff (K = 2, alpha 1, N = 2, S(u) = (u + 1)^-0.5) with max_staleness 1,
// in an order forced by the test.
TEST_F(AsyncServerTest, FedBuffBuffersWeightsByStalenessAndRejectsTooStale) {
  tally::v1::ScheduleConfig s;
  s.set_name("fedbuff");
  s.set_alpha(1.0);
  s.set_num_clients(2);
  s.set_buffer_size(2);
  s.mutable_staleness()->set_name("polynomial");
  s.mutable_staleness()->set_a(0.5);
  s.set_max_staleness(1);
  StartServer(s);
  for (const char* id : {"a", "b", "c", "d"}) {
    AddClient(id);
    NextTask(id);  // All on version 1.
  }
  ASSERT_THAT(Push("a", 4), IsOk());
  ASSERT_THAT(Push("b", 2), IsOk());
  // (4 + 2) / 2 = 3.
  EXPECT_NEAR(ModelAt(2), 3, 1e-6);
  ASSERT_THAT(Push("c", 8), IsOk());  // Staleness 1: buffered with weight 2^-0.5 / 2.
  NextTask("a");                      // On version 2.
  ASSERT_THAT(Push("a", 1), IsOk());  // Staleness 0.
  EXPECT_NEAR(ModelAt(3), 3 + 8 * 0.35355339 + 0.5, 1e-5);
  // d still trains on version 1: staleness 2 > max_staleness 1.
  EXPECT_THAT(Push("d", 100), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Metric("tally_updates_rejected_total", "stale"), 1);
  // After pulling the current model d is welcome again.
  NextTask("d");
  ASSERT_THAT(Push("d", 2), IsOk());
  ASSERT_THAT(Push("b", 0), StatusIs(absl::StatusCode::kFailedPrecondition));  // No task.
  NextTask("b");
  ASSERT_THAT(Push("b", 2), IsOk());
  EXPECT_NEAR(ModelAt(4), 3 + 8 * 0.35355339 + 0.5 + 2, 1e-5);
  EXPECT_EQ(Metric("tally_update_staleness"), 6);
}

// A restart keeps FedCompass's speed estimates (checkpoint): a known client
// is put into a group with its first task after the restart, where a fresh
// schedule would treat it as a newcomer (Q_max steps, no group, no
// deadline).
TEST_F(AsyncServerTest, FedCompassKeepsItsSpeedsAcrossARestart) {
  const std::string dir = ::testing::TempDir() + "/async_compass_restart";
  std::system(("rm -rf '" + dir + "'").c_str());
  tally::v1::ScheduleConfig s;
  s.set_name("fedcompass");
  s.set_num_clients(2);
  s.set_min_local_steps(20);
  s.set_max_local_steps(100);
  s.set_latest_time_factor(1.5);
  StartServer(s, dir);
  AddClient("a");
  At(0);
  Task first = NextTask("a");
  EXPECT_EQ(first.local_steps, 100u);
  EXPECT_EQ(first.deadline, absl::InfiniteFuture());
  // 100 steps in 50 s: 0.5 s/step; the first arrival is applied at once.
  At(50);
  ASSERT_THAT(Push("a", 1.0f), IsOk());
  ModelAt(2);
  clients_.clear();
  server_->Shutdown(absl::Seconds(1));  // Writes the final checkpoint.
  server_.reset();

  StartServer(s, dir);
  AddClient("a");
  AddClient("b");
  auto status = clients_["a"]->GetServerStatus();
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(status->restored_version, 2u);
  EXPECT_EQ(status->restored_clients, 1u);
  At(60);
  // a: no open group, so a new one with Q = Q_max = 100 steps: expected at
  // 60 + 100·0.5 = 110, latest at 60 + 1.5·50 = 135.
  Task known = NextTask("a");
  EXPECT_EQ(known.local_steps, 100u);
  EXPECT_EQ(known.deadline, origin_ + absl::Seconds(135));
  // b has no speed: a newcomer as on a fresh server.
  Task newcomer = NextTask("b");
  EXPECT_EQ(newcomer.local_steps, 100u);
  EXPECT_EQ(newcomer.deadline, absl::InfiniteFuture());
}

}  // namespace
}  // namespace tally
