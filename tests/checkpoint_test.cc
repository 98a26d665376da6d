// Checkpoints: atomic write/read round trip, corruption and layout checks,
// and a real server resuming from its checkpoint after a restart.
#include "server/checkpoint.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tally/client.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  return dir;
}

TEST(CheckpointTest, RoundTripsAndDetectsCorruption) {
  const std::string dir = FreshDir("ckpt_roundtrip");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {3}}}));
  auto none = ReadCheckpoint(dir, layout);
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());

  ModelSnapshot snapshot;
  snapshot.version = 7;
  snapshot.round = 6;
  snapshot.params = {1.5f, -2.0f, 3.25f};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->version, 7u);
  EXPECT_EQ(loaded->round, 6u);
  EXPECT_THAT(loaded->params, ElementsAre(1.5f, -2.0f, 3.25f));

  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout other, ModelLayout::Create({{"v", {3}}}));
  EXPECT_THAT(ReadCheckpoint(dir, other), StatusIs(absl::StatusCode::kFailedPrecondition));

  // Flip one parameter byte: the checksum catches it.
  const std::string path = dir + "/" + kCheckpointFileName;
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 32 + 5);
    f.put('\x7f');
  }
  EXPECT_THAT(ReadCheckpoint(dir, layout), StatusIs(absl::StatusCode::kDataLoss));
  // Truncation too.
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "TALLYCK1";
  EXPECT_THAT(ReadCheckpoint(dir, layout), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(CheckpointTest, RestartedServerResumesFromItsCheckpoint) {
  const std::string dir = FreshDir("ckpt_server");
  auto make_options = [&] {
    ServerOptions options;
    options.config.set_listen_address("127.0.0.1:0");
    options.config.set_metrics_port(-1);
    options.config.set_checkpoint_dir(dir);
    auto* t = options.config.mutable_model()->add_tensors();
    t->set_name("w");
    t->add_shape(2);
    options.config.mutable_rounds()->set_clients_per_round(1);
    return options;
  };
  {
    TALLY_ASSERT_OK_AND_ASSIGN(auto server, Server::Create(make_options()));
    ClientOptions copts;
    copts.target = "127.0.0.1:" + std::to_string(server->port());
    copts.client_id = "a";
    TALLY_ASSERT_OK_AND_ASSIGN(auto client, Client::Create(copts));
    ASSERT_THAT(client->Join(), IsOk());
    TALLY_ASSERT_OK_AND_ASSIGN(Task task, client->GetTask(absl::Seconds(10)));
    std::vector<float> delta = {0.5f, -4.0f};
    Update update;
    update.round = task.round;
    update.base_version = task.model_version;
    update.delta = delta;
    ASSERT_THAT(client->PushUpdate(update), IsOk());
    ASSERT_THAT(client->WaitForVersion(1, absl::Seconds(30)), IsOk());
    server->Shutdown(absl::Seconds(1));  // Writes the final checkpoint.
  }
  TALLY_ASSERT_OK_AND_ASSIGN(auto server, Server::Create(make_options()));
  const auto model = server->model_store().Current();
  EXPECT_EQ(model->version, 2u);
  EXPECT_EQ(model->round, 1u);
  EXPECT_THAT(model->params, ElementsAre(0.5f, -4.0f));
  ClientOptions copts;
  copts.target = "127.0.0.1:" + std::to_string(server->port());
  copts.client_id = "b";
  TALLY_ASSERT_OK_AND_ASSIGN(auto client, Client::Create(copts));
  ASSERT_THAT(client->Join(), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Task task, client->GetTask());
  EXPECT_EQ(task.round, 2u);  // Round numbering continues.
  EXPECT_EQ(task.model_version, 2u);
}

}  // namespace
}  // namespace tally::server
