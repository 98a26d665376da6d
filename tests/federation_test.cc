// End to end: the simulator's federation (real client threads, real SDK)
// against a real in-process server, small enough to run in a second.
#include "sim/federation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/server.h"
#include "tests/sim_server.h"
#include "tests/status_matchers.h"

namespace tally::sim {
namespace {

using ::tally::testing::IsOk;

TEST(FederationTest, FourClientsThreeRoundsOverGrpcImproveAccuracy) {
  TALLY_ASSERT_OK_AND_ASSIGN(FederatedData data,
                             sim::GenerateFederatedData(tally::testing::SmallDataOptions()));
  SoftmaxRegression model(8, 3);

  TALLY_ASSERT_OK_AND_ASSIGN(
      auto server, server::Server::Create(tally::testing::SoftmaxServerOptions(model, 4, 4, 3)));

  FederationOptions fed;
  fed.target = "127.0.0.1:" + std::to_string(server->port());
  fed.max_rounds = 3;
  fed.train.seed = 5;
  fed.out = nullptr;
  TALLY_ASSERT_OK_AND_ASSIGN(FederationResult result, RunFederation(fed, model, data));
  ASSERT_GE(result.rounds.size(), 2u);
  EXPECT_EQ(result.rounds.back().round, 3);
  // Three classes: chance is 1/3; the synthetic data is learnable to ~85%.
  EXPECT_LT(result.rounds.front().test.accuracy, 0.5);
  EXPECT_GT(result.rounds.back().test.accuracy, 0.6);
  EXPECT_LT(result.rounds.back().test.loss, result.rounds.front().test.loss);
  EXPECT_EQ(server->model_store().Current()->version, 4u);
  EXPECT_EQ(server->model_store().Current()->round, 3u);
}

}  // namespace
}  // namespace tally::sim
