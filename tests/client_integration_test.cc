// The C++ SDK against a real server on loopback, where the caller can get it
// wrong: the two forms of an update (a delta, or weights with their base), and
// a server that is not up yet. (TLS set-ups that do not fit: tls_test.cc.)
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tally/client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// One round of one client: pulls the model, pushes `fill(model)`, waits for
// the next version and returns it.
template <typename Fill>
absl::StatusOr<Model> OneRound(Client& client, Fill fill) {
  TALLY_ASSIGN_OR_RETURN(Task task, client.GetTask(absl::Seconds(10)));
  if (task.kind != Task::Kind::kTrain) return absl::InternalError("no TRAIN task");
  TALLY_ASSIGN_OR_RETURN(Model model, client.PullModel());
  Update update;
  update.round = task.round;
  update.base_version = model.version;
  TALLY_RETURN_IF_ERROR(fill(model, update));
  TALLY_RETURN_IF_ERROR(client.WaitForVersion(model.version, absl::Seconds(30)).status());
  return client.PullModel();
}

// Weights with their base are sent as their difference: after a round at
// [1, 1] (from a delta), local weights [1.5, 3] make the model [1.5, 3],
// where the same weights as a delta would have made it [2.5, 4].
TEST(ClientIntegrationTest, WeightsWithTheirBaseAreSentAsTheirDifference) {
  auto h = Harness::Start({2}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto client = h->NewClient("a");
  ASSERT_THAT(client->Join(), IsOk());
  const std::vector<float> ones = {1, 1};
  absl::StatusOr<Model> model = OneRound(*client, [&](const Model&, Update& update) {
    update.delta = ones;
    return client->PushUpdate(update).status();
  });
  ASSERT_THAT(model, IsOk());
  ASSERT_THAT(model->params, ElementsAre(1.0f, 1.0f));
  const std::vector<float> local = {1.5f, 3.0f};
  model = OneRound(*client, [&](const Model& pulled, Update& update) {
    update.weights = local;
    update.base = pulled.params;
    return client->PushUpdate(update).status();
  });
  ASSERT_THAT(model, IsOk());
  EXPECT_THAT(model->params, ElementsAre(1.5f, 3.0f));
}

// Weights without their base, or mixed with a delta, are refused before
// anything is sent, with the fields to set.
TEST(ClientIntegrationTest, AmbiguousUpdatesAreRefusedBeforeSending) {
  auto h = Harness::Start({2}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto client = h->NewClient("a");
  ASSERT_THAT(client->Join(), IsOk());
  const std::vector<float> local = {1.5f, 3.0f}, base = {1, 1};
  Update update;
  update.weights = local;
  EXPECT_THAT(client->PushUpdate(update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("set Update.base")));
  update.weights = {};
  update.base = base;
  EXPECT_THAT(client->PushUpdate(update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without Update.weights")));
  update.weights = local;
  update.delta = local;
  EXPECT_THAT(client->PushUpdate(update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
  update.delta = {};
  update.base = absl::MakeConstSpan(base).subspan(1);
  EXPECT_THAT(client->PushUpdate(update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Update.base 1")));
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, client->GetServerStatus());
  EXPECT_EQ(status.updates_accepted + status.updates_rejected, 0u);
}

// A port where a server was and no longer is: connections are refused.
int StoppedServerPort() {
  auto h = Harness::Start({2}, 1, 1);
  return h == nullptr ? 0 : h->server->port();
}

ClientOptions OptionsFor(int port) {
  ClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.client_id = "early";
  options.max_attempts = 1;  // Waiting for the connection is not an attempt.
  return options;
}

// A client started before its server joins once the server is up, instead
// of giving up after its retries.
TEST(ClientIntegrationTest, WaitsForAServerThatIsNotUpYet) {
  const int port = StoppedServerPort();
  ASSERT_NE(port, 0);
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(OptionsFor(port)));
  absl::StatusOr<JoinResult> joined;
  std::thread join([&] { joined = client->Join(); });
  absl::SleepFor(absl::Milliseconds(1500));  // The server starts late: the scenario itself.
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.set_listen_address("127.0.0.1:" + std::to_string(port));
  auto h = Harness::Start(config);
  join.join();
  ASSERT_NE(h, nullptr);
  EXPECT_THAT(joined, IsOk());
}

// With no server, a call fails after connect_timeout saying where nothing
// listens and which option waits longer.
TEST(ClientIntegrationTest, GivesUpAfterConnectTimeoutSayingNothingListens) {
  const int port = StoppedServerPort();
  ASSERT_NE(port, 0);
  ClientOptions options = OptionsFor(port);
  options.connect_timeout = absl::Seconds(1);
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  const absl::Time start = absl::Now();
  const absl::Status status = client->Join().status();
  const absl::Duration waited = absl::Now() - start;
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("no connection to " + options.target)));
  EXPECT_THAT(std::string(status.message()), HasSubstr("ClientOptions.connect_timeout = 1s"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("nothing accepts connections there"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("Connection refused"));
  EXPECT_GE(waited, absl::Seconds(1));
  EXPECT_LT(waited, absl::Seconds(30));
}

}  // namespace
}  // namespace tally
