// The C++ SDK against a real server on loopback, where the caller can get it
// wrong: the two forms of an update (a delta, or weights with their base).
#include <memory>
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

}  // namespace
}  // namespace tally
