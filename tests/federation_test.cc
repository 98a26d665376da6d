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

// A robust rule with its defaults over the real server, no attacker: it must
// learn like FedAvg (the rule "mean") on the same data and seed. 4 clients x
// 100 samples, 3 classes: chance is 1/3, FedAvg reaches ~0.9 in 3 rounds.
absl::StatusOr<double> FinalAccuracyWith(
    const tally::v1::StrategyConfig& strategy,
    const SyntheticDataOptions& data_options = tally::testing::SmallDataOptions(),
    int rounds = 3) {
  const int kRounds = rounds;
  absl::StatusOr<FederatedData> data = GenerateFederatedData(data_options);
  if (!data.ok()) return data.status();
  SoftmaxRegression model(data_options.num_features, data_options.num_classes);
  const auto n = static_cast<uint32_t>(data_options.num_clients);
  server::ServerOptions options = tally::testing::SoftmaxServerOptions(model, n, n, kRounds);
  *options.config.mutable_strategy() = strategy;
  absl::StatusOr<std::unique_ptr<server::Server>> server =
      server::Server::Create(std::move(options));
  if (!server.ok()) return server.status();
  FederationOptions fed;
  fed.target = "127.0.0.1:" + std::to_string((*server)->port());
  fed.max_rounds = kRounds;
  fed.train.seed = 5;
  fed.out = nullptr;
  absl::StatusOr<FederationResult> result = RunFederation(fed, model, *data);
  if (!result.ok()) return result.status();
  if (result->rounds.back().round != kRounds) return absl::InternalError("rounds missing");
  return result->rounds.back().test.accuracy;
}

// "A few points" of the issue: 0.05 of FedAvg's accuracy.
constexpr double kFewPoints = 0.05;

// Flag Aggregator with its defaults (r = 1, output at the median update
// norm). The reference's scale (1/r times a sum of n unit vectors, applied
// at learning rate 1) overshoots: in this run it ends ~0.13 below FedAvg.
TEST(FederationTest, FlagDefaultsLearnLikeFedAvgOverGrpc) {
  tally::v1::StrategyConfig strategy;
  TALLY_ASSERT_OK_AND_ASSIGN(double fedavg, FinalAccuracyWith(strategy));
  strategy.set_rule("flag");
  TALLY_ASSERT_OK_AND_ASSIGN(double flag, FinalAccuracyWith(strategy));
  EXPECT_GT(fedavg, 0.8);
  EXPECT_GT(flag, fedavg - kFewPoints);
}

// MoNNA with f = 1: the mean of the 3 updates nearest to a trusted client's
// (it leaves out a quarter of the non-IID updates every round, so it trails
// FedAvg after 3 rounds, ~0.81 vs ~0.90): far above chance, 1/3.
TEST(FederationTest, MonnaWithATrustedClientLearnsOverGrpc) {
  tally::v1::StrategyConfig strategy;
  strategy.set_rule("monna");
  strategy.set_f(1);
  strategy.set_trusted_client("sim-client-003");
  TALLY_ASSERT_OK_AND_ASSIGN(double monna, FinalAccuracyWith(strategy));
  EXPECT_GT(monna, 0.7);
}

// Krum with its default nearest-neighbour mixing on strongly non-IID clients
// (10 clients, 10 classes, Dirichlet alpha = 0.5, f = 2, 10 rounds; chance is
// 0.1): each round's step is the mean of the n - f updates around the
// selected one. The reference Krum (nnm_mixing: false) applies one client's
// update per round. On seeds 1-5 of this data FedAvg ends at 0.80-0.84,
// mixed Krum at 0.71-0.75 and the reference at 0.45-0.66
// (docs/strategies.md#nearest-neighbour-mixing has the PyTorch example).
TEST(FederationTest, KrumDefaultsMixAndLearnFarBetterThanTheReferenceOnNonIidClients) {
  SyntheticDataOptions data;
  data.num_features = 16;
  data.num_clients = 10;
  data.samples_per_client = 100;
  data.test_samples = 1000;
  data.seed = 2;
  constexpr int kRounds = 10;
  tally::v1::StrategyConfig strategy;
  TALLY_ASSERT_OK_AND_ASSIGN(double fedavg, FinalAccuracyWith(strategy, data, kRounds));
  strategy.set_rule("krum");
  strategy.set_f(2);
  TALLY_ASSERT_OK_AND_ASSIGN(double krum, FinalAccuracyWith(strategy, data, kRounds));
  strategy.set_nnm_mixing(false);
  TALLY_ASSERT_OK_AND_ASSIGN(double reference, FinalAccuracyWith(strategy, data, kRounds));
  EXPECT_GT(fedavg, 0.7);
  EXPECT_GT(krum, 0.6);
  EXPECT_LT(reference, krum - 2 * kFewPoints);
}

}  // namespace
}  // namespace tally::sim
