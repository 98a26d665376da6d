// Relay mode: real servers on loopback, clients -> relays -> root, compared
// with clients -> root directly; a relay killed mid-round.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/relay.h"
#include "server/server.h"
#include "tally/client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

// A relay of `upstream`: its model section stays the default (ignored).
tally::v1::ServerConfig RelayConfig(const std::string& upstream, const std::string& id,
                                    uint32_t clients) {
  tally::v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:0");
  config.set_metrics_port(-1);
  config.mutable_relay()->set_upstream(upstream);
  config.mutable_relay()->set_id(id);
  config.mutable_rounds()->set_clients_per_round(clients);
  config.mutable_rounds()->set_min_clients(1);
  config.mutable_rounds()->set_round_timeout_ms(600000);
  return config;
}

std::unique_ptr<Client> NewClient(const std::string& target, const std::string& id) {
  ClientOptions options;
  options.target = target;
  options.client_id = id;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.max_attempts = 20;
  auto client = Client::Create(options);
  EXPECT_THAT(client, IsOk());
  return client.ok() ? std::move(client).value() : nullptr;
}

// Join (if needed), wait for a TRAIN task, pull, push `delta`.
absl::Status TrainAndPush(Client& client, const std::vector<float>& delta, uint64_t samples) {
  absl::StatusOr<Task> task;
  for (int i = 0; i < 100; ++i) {
    task = client.GetTask(absl::Seconds(2));
    if (!task.ok()) return task.status();
    if (task->kind == Task::Kind::kTrain) break;
  }
  if (task->kind != Task::Kind::kTrain) return absl::DeadlineExceededError("no TRAIN task");
  TALLY_ASSIGN_OR_RETURN(Model model, client.PullModel());
  if (model.version != task->model_version) return absl::InternalError("pulled another version");
  Update update;
  update.round = task->round;
  update.base_version = task->model_version;
  update.num_samples = samples;
  update.delta = delta;
  return client.PushUpdate(update).status();
}

const std::vector<std::vector<float>> kDeltas = {
    {1, 2, 3, 4}, {0, 0, 3, 3}, {4, 0, -3, 0}, {2, 2, 2, 2}};
const std::vector<uint64_t> kSamples = {10, 20, 10, 40};

// Four clients' round: (10·(1,2,3,4) + 20·(0,0,3,3) + 10·(4,0,−3,0) +
// 40·(2,2,2,2)) / 80 = (1.625, 1.25, 1.75, 2.25), whether they reach the
// root directly or through two relays (each forwards its two clients'
// weighted mean with their total weight). The relays then serve the root's
// version 2, bit for bit, and pass DONE on.
TEST(RelayTest, TwoRelaysGiveTheRootTheSameFedAvgModelAsDirectClients) {
  const std::vector<float> expected = {1.625f, 1.25f, 1.75f, 2.25f};
  auto direct = Harness::Start(Harness::Config({4}, 4, 4));
  ASSERT_NE(direct, nullptr);
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        auto client = NewClient(direct->target, "c" + std::to_string(i));
        ASSERT_THAT(client->Join(), IsOk());
        EXPECT_THAT(TrainAndPush(*client, kDeltas[i], kSamples[i]), IsOk());
      });
    }
    for (std::thread& t : threads) t.join();
  }

  tally::v1::ServerConfig root_config = Harness::Config({4}, 2, 2);
  root_config.mutable_rounds()->set_total_rounds(1);
  auto root = Harness::Start(root_config);
  ASSERT_NE(root, nullptr);
  auto relay_a = Harness::Start(RelayConfig(root->target, "relay-a", 2));
  auto relay_b = Harness::Start(RelayConfig(root->target, "relay-b", 2));
  ASSERT_NE(relay_a, nullptr);
  ASSERT_NE(relay_b, nullptr);
  EXPECT_EQ(relay_a->server->model_store().layout().NumParams(), 4u);  // The root's layout.
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < 4; ++i) {
    clients.push_back(
        NewClient(i < 2 ? relay_a->target : relay_b->target, "c" + std::to_string(i)));
    ASSERT_THAT(clients.back()->Join(), IsOk());
  }
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < 4; ++i) {
      threads.emplace_back(
          [&, i] { EXPECT_THAT(TrainAndPush(*clients[i], kDeltas[i], kSamples[i]), IsOk()); });
    }
    for (std::thread& t : threads) t.join();
  }
  auto watcher = NewClient(root->target, "watcher");
  ASSERT_THAT(watcher->Join(), IsOk());
  ASSERT_THAT(watcher->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model via_relays, watcher->PullModel());
  const auto& direct_model = direct->server->model_store().Current()->params;
  EXPECT_THAT(direct_model, Pointwise(FloatNear(1e-6), expected));
  EXPECT_THAT(via_relays.params, Pointwise(FloatNear(1e-6), direct_model));
  EXPECT_EQ(relay_a->Counter("tally_relay_batches_forwarded_total"), 1);
  EXPECT_EQ(relay_b->Counter("tally_relay_batches_forwarded_total"), 1);

  // A relay client gets the root's version 2 exactly, then DONE.
  ASSERT_THAT(clients[0]->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model from_relay, clients[0]->PullModel());
  EXPECT_EQ(from_relay.version, via_relays.version);
  EXPECT_EQ(from_relay.params, via_relays.params);
  absl::StatusOr<Task> task;
  for (int i = 0; i < 20; ++i) {
    task = clients[3]->GetTask(absl::Seconds(1));
    ASSERT_THAT(task, IsOk());
    if (task->kind == Task::Kind::kDone) break;
  }
  EXPECT_EQ(task->kind, Task::Kind::kDone);
}

// Relay A takes c0's update, then dies before its round is complete: that
// batch is lost. c1, connected through a client-side list of both relays
// (what a load balancer does), fails over to relay B, joins again there and
// contributes with c2. The root closes its round at the deadline with B's
// batch alone: (20·(0,0,3,3) + 10·(4,0,−3,0)) / 30 = (4/3, 0, 1, 2).
TEST(RelayTest, AKilledRelayLosesOnlyItsBatchAndClientsRetryThroughTheOther) {
  auto root = Harness::Start(Harness::Config({4}, 2, 1, 8000));
  ASSERT_NE(root, nullptr);
  auto relay_a = Harness::Start(RelayConfig(root->target, "relay-a", 2));
  auto relay_b = Harness::Start(RelayConfig(root->target, "relay-b", 2));
  ASSERT_NE(relay_a, nullptr);
  ASSERT_NE(relay_b, nullptr);
  const std::string both = "ipv4:" + relay_a->target + "," + relay_b->target;
  auto c0 = NewClient(relay_a->target, "c0");
  auto c1 = NewClient(both, "c1");  // pick_first: relay A while it lives.
  auto c2 = NewClient(relay_b->target, "c2");
  for (Client* c : {c0.get(), c1.get(), c2.get()}) ASSERT_THAT(c->Join(), IsOk());
  ASSERT_THAT(TrainAndPush(*c0, kDeltas[0], kSamples[0]), IsOk());  // Acknowledged by A.
  relay_a->server->Shutdown(absl::ZeroDuration());
  std::thread t1([&] { EXPECT_THAT(TrainAndPush(*c1, kDeltas[1], kSamples[1]), IsOk()); });
  std::thread t2([&] { EXPECT_THAT(TrainAndPush(*c2, kDeltas[2], kSamples[2]), IsOk()); });
  t1.join();
  t2.join();
  auto watcher = NewClient(root->target, "watcher");
  ASSERT_THAT(watcher->Join(), IsOk());
  ASSERT_THAT(watcher->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, watcher->PullModel());
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-6), {4.0f / 3, 0.0f, 1.0f, 2.0f}));
  EXPECT_EQ(relay_b->Counter("tally_relay_batches_forwarded_total"), 1);
}

// Limits derived from the model (max_update_bytes) come from the upstream's
// model, not from the relay config's (default) one, even after ApplyDefaults
// ran on it as tally-server's main does.
TEST(RelayTest, ModelDerivedLimitsFollowTheUpstreamModel) {
  auto root = Harness::Start(Harness::Config({1000}, 1, 1));
  ASSERT_NE(root, nullptr);
  tally::v1::ServerConfig relay_config = RelayConfig(root->target, "relay-a", 1);
  server::ApplyDefaults(&relay_config);
  ASSERT_THAT(server::ValidateConfig(relay_config), IsOk());
  auto relay = Harness::Start(relay_config);
  ASSERT_NE(relay, nullptr);
  // server::DefaultMaxUpdateBytes for d = 1000: topk's 2 + 1000 · 6 = 6002,
  // in a zstd frame 6002 + 23 + 61 = 6086.
  EXPECT_EQ(relay->server->config().limits().max_update_bytes(), 6086u);
}

TEST(RelayTest, ConfigErrorsAreCaughtBeforeConnecting) {
  tally::v1::ServerConfig config = RelayConfig("127.0.0.1:1", "r", 2);
  config.mutable_strategy()->set_rule("median");
  server::ServerOptions options;
  options.config = config;
  options.connect_upstream = server::RelayLink::Connect;
  EXPECT_THAT(server::Server::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("relay")));
  config = RelayConfig("127.0.0.1:1", "r", 2);
  config.set_checkpoint_dir("/tmp/x");
  options.config = config;
  EXPECT_THAT(server::Server::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("checkpoint_dir")));
  config = RelayConfig("nowhere", "r", 2);
  options.config = config;
  EXPECT_THAT(server::Server::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("relay.upstream")));
}

// The server library runs a relay only through the connector its program
// hands it (tally_relay: server/relay.h); without one a valid relay config is
// refused before anything is bound.
TEST(RelayTest, WithoutAConnectorARelayConfigIsUnimplemented) {
  server::ServerOptions options;
  options.config = RelayConfig("127.0.0.1:1", "r", 2);
  EXPECT_THAT(server::Server::Create(options),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("relay.upstream")));
}

}  // namespace
}  // namespace tally
