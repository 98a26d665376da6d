// Local DP in the C++ SDK against a real server on loopback
// (docs/privacy.md#local-dp): the client's declaration reaches the server's
// Join (logged), its update arrives clipped and noised, a malformed
// declaration is refused and counted, and bad settings never leave the SDK.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/privacy/mechanism.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/v1/tally.grpc.pb.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

ClientOptions LocalDpOptions(const Harness& h, const std::string& id, LocalDpSettings dp) {
  ClientOptions options;
  options.target = h.target;
  options.client_id = id;
  options.local_dp = dp;
  return options;
}

// One client, d = 16, delta = 100 everywhere (norm 400) clipped to C = 1:
// each coordinate 0.25, plus noise z C = 0.01 (6-sigma bounds). The server's
// default optimizer (sgd, learning rate 1) makes the new model base + update.
TEST(LocalDpTest, DeclaredAtJoinAndUpdatesArriveClippedAndNoised) {
  auto h = Harness::Start({16}, 1, 1);
  ASSERT_NE(h, nullptr);
  const LocalDpSettings dp{1.0, 0.01, 1e-5};
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client,
                             Client::Create(LocalDpOptions(*h, "private-1", dp)));
  ::testing::internal::CaptureStderr();
  ASSERT_THAT(client->Join(), IsOk());
  const std::string log = ::testing::internal::GetCapturedStderr();
  TALLY_ASSERT_OK_AND_ASSIGN(privacy::EpsilonAndOrder eps, privacy::LocalDpEpsilon(0.01, 1e-5));
  char expected[160];
  std::snprintf(expected, sizeof(expected),
                "declares local_dp{clip_norm=1 noise_multiplier=0.01 epsilon=%g delta=1e-05}",
                eps.epsilon);
  EXPECT_THAT(log, HasSubstr(expected));
  EXPECT_THAT(log, HasSubstr("private-1"));

  TALLY_ASSERT_OK_AND_ASSIGN(Task task, client->GetTask(absl::Seconds(10)));
  TALLY_ASSERT_OK_AND_ASSIGN(Model base, client->PullModel());
  const std::vector<float> delta(16, 100.0f);
  Update update;
  update.round = task.round;
  update.base_version = base.version;
  update.delta = delta;
  ASSERT_THAT(client->PushUpdate(update), IsOk());
  ASSERT_THAT(client->WaitForVersion(base.version, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model next, client->PullModel());
  double norm2 = 0;
  for (size_t j = 0; j < 16; ++j) {
    const double moved = static_cast<double>(next.params[j]) - base.params[j];
    EXPECT_NEAR(moved, 0.25, 6 * 0.01) << j;
    norm2 += moved * moved;
  }
  EXPECT_NEAR(std::sqrt(norm2), 1.0, 6 * 0.01 * 4);
}

TEST(LocalDpTest, MalformedDeclarationIsRefusedAndCounted) {
  auto h = Harness::Start({4}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto stub =
      v1::Aggregator::NewStub(grpc::CreateChannel(h->target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::JoinRequest request;
  request.set_client_id("liar");
  request.mutable_local_dp()->set_clip_norm(1.0);
  request.mutable_local_dp()->set_noise_multiplier(-3.0);
  request.mutable_local_dp()->set_delta(1e-5);
  v1::JoinResponse response;
  const grpc::Status status = stub->Join(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("local_dp.noise_multiplier"));
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "invalid_local_dp"), 1);
}

TEST(LocalDpTest, BadSettingsNeverLeaveTheSdk) {
  auto h = Harness::Start({4}, 1, 1);
  ASSERT_NE(h, nullptr);
  for (const LocalDpSettings& bad :
       {LocalDpSettings{0.0, 1.0, 1e-5}, LocalDpSettings{1.0, 0.0, 1e-5},
        LocalDpSettings{1.0, 1.0, 1.0}, LocalDpSettings{100.0, 100.0, 1e-5}}) {
    EXPECT_THAT(Client::Create(LocalDpOptions(*h, "c", bad)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ClientOptions.local_dp")));
  }
}

}  // namespace
}  // namespace tally
