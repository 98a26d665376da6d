// Central differential privacy through a real tally server on loopback
// (docs/privacy.md): clipping bounds each update's contribution exactly and
// the mean has the fixed denominator m; the noise's empirical standard
// deviation over 100,000 coordinates is z * C / m; the privacy budget stops
// the federation at the round the q = 1 closed form predicts and survives
// restarts (the epsilon is restored, never reset); a local-DP client is
// accepted and its declaration counted. Every expected number is computed
// here by hand from the formulas in docs/privacy.md, not by the server's
// code.
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tally/client.h"
#include "tests/raw_client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;

// The gauge `name` of the server's registry (-1 if absent).
double Gauge(Harness& h, const std::string& name) {
  for (const auto& family : h.registry->Collect()) {
    if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
  }
  return -1;
}

// Central DP with the mean in sync rounds of `clients` clients.
tally::v1::ServerConfig PrivateConfig(int64_t params, uint32_t clients, uint32_t min_clients,
                                      double clip_norm, double noise_multiplier,
                                      uint32_t timeout_ms = 600000) {
  tally::v1::ServerConfig config = Harness::Config({params}, clients, min_clients, timeout_ms);
  tally::v1::PrivacyConfig* p = config.mutable_privacy();
  p->set_mode("central");
  p->set_clip_norm(clip_norm);
  p->set_noise_multiplier(noise_multiplier);
  p->set_delta(1e-5);
  return config;
}

// GetTask (TRAIN expected), then push `delta` with `samples`.
absl::Status TrainAndPush(Client& client, const std::vector<float>& delta, uint64_t samples) {
  TALLY_ASSIGN_OR_RETURN(Task task, client.GetTask(absl::Seconds(30)));
  if (task.kind != Task::Kind::kTrain) return absl::InternalError("expected a TRAIN task");
  Update update;
  update.round = task.round;
  update.base_version = task.model_version;
  update.num_samples = samples;
  update.delta = delta;
  return client.PushUpdate(update).status();
}

// Sets the test-only noise seed for the servers of one test.
class SeededNoise {
 public:
  SeededNoise() { setenv("TALLY_INSECURE_TEST_NOISE_SEED", "privacy_server_test", 1); }
  ~SeededNoise() { unsetenv("TALLY_INSECURE_TEST_NOISE_SEED"); }
};

TEST(PrivacyServerTest, ClippingBoundsEachUpdateAndTheDenominatorIsFixed) {
  // z = 1e-9: the noise is about 1e-9 per coordinate, far below the 1e-6
  // tolerance, while a wrong clip or weight would be off by 0.01 or more.
  auto h = Harness::Start(PrivateConfig(4, 3, 2, /*clip_norm=*/1.0, /*noise_multiplier=*/1e-9,
                                        /*timeout_ms=*/4000));
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), b = h->NewClient("b"), c = h->NewClient("c");
  for (Client* client : {a.get(), b.get(), c.get()}) ASSERT_THAT(client->Join(), IsOk());
  // Round 1. a: norm 5 -> (0.6, 0.8, 0, 0); b: norm 0.1, kept; c: norm 2 ->
  // (0, 0, -1, 0). Weight 1 each whatever num_samples says; divided by m = 3.
  {
    std::thread ta([&] { EXPECT_THAT(TrainAndPush(*a, {3, 4, 0, 0}, 100), IsOk()); });
    std::thread tb([&] { EXPECT_THAT(TrainAndPush(*b, {0.1f, 0, 0, 0}, 1), IsOk()); });
    std::thread tc([&] { EXPECT_THAT(TrainAndPush(*c, {0, 0, -2, 0}, 7), IsOk()); });
    ta.join();
    tb.join();
    tc.join();
  }
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model first, a->PullModel());
  ASSERT_EQ(first.version, 2u);
  const double expected1[4] = {0.7 / 3, 0.8 / 3, -1.0 / 3, 0};
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(first.params[j], expected1[j], 1e-6) << j;

  // Round 2: a sends (0, 0, 0, 10) -> (0, 0, 0, 1), b (0, 0.5, 0, 0); a third
  // client streams the largest values then cancels (it never touches the
  // sum). Only two updates arrive: the round closes at its deadline and the
  // mean is still divided by m = 3, not 2.
  RawClient mallory(h->target, "mallory");
  {
    grpc::ClientContext ctx;
    tally::v1::GetTaskRequest request;
    request.set_client_id("mallory");
    request.set_session_token(mallory.token());
    request.set_wait_ms(10000);
    tally::v1::Task task;
    ASSERT_TRUE(mallory.stub().GetTask(&ctx, request, &task).ok());
    ASSERT_EQ(task.round(), 2u);
  }
  tally::v1::UpdateHeader header = mallory.Header("evil");
  header.set_round(2);
  header.set_base_version(2);
  auto evil = std::make_unique<OpenPush>(mallory, header);
  ASSERT_TRUE(evil->Send({1e6f, -1e6f}));
  std::thread ta([&] { EXPECT_THAT(TrainAndPush(*a, {0, 0, 0, 10}, 1), IsOk()); });
  std::thread tb([&] { EXPECT_THAT(TrainAndPush(*b, {0, 0.5f, 0, 0}, 1), IsOk()); });
  ta.join();
  tb.join();
  evil->Cancel();
  ASSERT_THAT(a->WaitForVersion(2, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model second, a->PullModel());
  ASSERT_EQ(second.version, 3u);
  const double expected2[4] = {expected1[0], expected1[1] + 0.5 / 3, expected1[2], 1.0 / 3};
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(second.params[j], expected2[j], 1e-6) << j;

  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, a->GetServerStatus());
  EXPECT_EQ(status.privacy_steps, 2u);
  EXPECT_EQ(status.privacy_clip_norm, 1.0);
  EXPECT_EQ(status.privacy_delta, 1e-5);
  EXPECT_GT(status.privacy_epsilon, 0);
  EXPECT_EQ(Gauge(*h, "tally_privacy_steps"), 2);
  EXPECT_EQ(Gauge(*h, "tally_privacy_epsilon"), status.privacy_epsilon);
}

TEST(PrivacyServerTest, NoiseStandardDeviationIsZTimesCOverM) {
  SeededNoise seed;
  constexpr int64_t kParams = 100000;
  constexpr double kClip = 0.5, kZ = 1.0;
  constexpr int kClients = 2;
  tally::v1::ServerConfig config = PrivateConfig(kParams, kClients, kClients, kClip, kZ);
  config.mutable_rounds()->set_total_rounds(1);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::thread> threads;
  const std::vector<float> zeros(kParams, 0.0f);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(h->NewClient(absl::StrCat("c", i)));
    ASSERT_THAT(clients.back()->Join(), IsOk());
  }
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { EXPECT_THAT(TrainAndPush(*clients[i], zeros, 1), IsOk()); });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_THAT(clients[0]->WaitForVersion(1, absl::Seconds(60)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, clients[0]->PullModel());
  ASSERT_EQ(model.version, 2u);
  // sigma in lanes = ceil(z (C 2^40 + sqrt(d) / 2)) (docs/privacy.md, step
  // 3), in value units / 2^40, and the mean divides by m = 2.
  const double sigma_lanes = std::ceil(kZ * (kClip * std::ldexp(1.0, 40) + std::sqrt(1e5) / 2));
  const double sigma = sigma_lanes * std::ldexp(1.0, -40) / kClients;
  EXPECT_NEAR(sigma, 0.25, 1e-9);
  double sum = 0, sum_sq = 0;
  int64_t within = 0;
  for (float v : model.params) {
    sum += v;
    sum_sq += static_cast<double>(v) * v;
    within += std::fabs(v) <= sigma;
  }
  const double n = kParams;
  const double mean = sum / n;
  const double sd = std::sqrt(sum_sq / n - mean * mean);
  // Six standard errors: the sample mean's is sigma / sqrt(n), the sample
  // standard deviation's sigma / sqrt(2n), a proportion's sqrt(p (1-p) / n).
  EXPECT_LT(std::fabs(mean), 6 * sigma / std::sqrt(n));
  EXPECT_NEAR(sd / sigma, 1.0, 6 / std::sqrt(2 * n));
  const double p = 0.682689492137;  // P(|N(0,1)| <= 1).
  EXPECT_NEAR(within / n, p, 6 * std::sqrt(p * (1 - p) / n));
}

TEST(PrivacyServerTest, FedBuffFlushIsCoefficientTimesTheClippedSumAndDecodesFirst) {
  // FedBuff, K = 2, alpha = 0.5, N = 4, constant staleness, equal weights:
  // every coefficient is c = alpha / N = 0.125 and the flush is
  // c (sum of clipped updates + noise) (docs/privacy.md, FedBuff). b
  // uploads in float16 (exact for its values): decoded, then clipped.
  tally::v1::ServerConfig config =
      PrivateConfig(4, 2, 1, /*clip_norm=*/1.0, /*noise_multiplier=*/1e-9);
  tally::v1::ScheduleConfig* schedule = config.mutable_schedule();
  schedule->set_name("fedbuff");
  schedule->set_buffer_size(2);
  schedule->set_alpha(0.5);
  schedule->set_num_clients(4);
  schedule->mutable_staleness()->set_name("constant");
  schedule->set_client_weights("equal");
  config.mutable_compression()->add_upload()->set_codec("float16");
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), b = h->NewClient("b", {"float16"});
  ASSERT_THAT(a->Join(), IsOk());
  ASSERT_THAT(b->Join(), IsOk());
  EXPECT_THAT(TrainAndPush(*a, {3, 4, 0, 0}, 50), IsOk());  // -> (0.6, 0.8, 0, 0)
  EXPECT_THAT(TrainAndPush(*b, {0, 0, -2, 0}, 1), IsOk());  // -> (0, 0, -1, 0)
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  ASSERT_EQ(model.version, 2u);
  const double expected[4] = {0.125 * 0.6, 0.125 * 0.8, -0.125, 0};
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(model.params[j], expected[j], 1e-6) << j;
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, a->GetServerStatus());
  EXPECT_EQ(status.privacy_steps, 1u);
}

TEST(PrivacyServerTest, AdaptiveClippingMovesTheClipNormTowardTheQuantile) {
  // Andrew et al.: C <- C exp(-eta (b~ - gamma)). Three unclipped updates of
  // three sampled: b~ = 1 (the count's noise, sigma_b = 1e-6, is far below
  // the tolerance), so C = 1 becomes exp(-0.2 * 0.5) = 0.904837...; the
  // next round clips with it.
  tally::v1::ServerConfig config =
      PrivateConfig(2, 3, 3, /*clip_norm=*/1.0, /*noise_multiplier=*/1e-9);
  tally::v1::PrivacyConfig* p = config.mutable_privacy();
  p->set_adaptive_clipping(true);
  p->set_target_quantile(0.5);
  p->set_clip_learning_rate(0.2);
  p->set_clipped_count_stddev(1e-6);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(h->NewClient(absl::StrCat("c", i)));
    ASSERT_THAT(clients.back()->Join(), IsOk());
  }
  auto round = [&](const std::vector<float>& delta) {
    std::vector<std::thread> threads;
    for (auto& c : clients) {
      threads.emplace_back([&] { EXPECT_THAT(TrainAndPush(*c, delta, 1), IsOk()); });
    }
    for (std::thread& t : threads) t.join();
  };
  round({0.1f, 0});
  ASSERT_THAT(clients[0]->WaitForVersion(1, absl::Seconds(30)), IsOk());
  const double c1 = std::exp(-0.2 * 0.5);
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, clients[0]->GetServerStatus());
  EXPECT_NEAR(status.privacy_clip_norm, c1, 1e-4);
  EXPECT_NEAR(Gauge(*h, "tally_privacy_clip_norm"), status.privacy_clip_norm, 1e-12);
  // Round 2: three updates of norm 10, clipped to c1 each; mean = c1 (m = 3).
  round({0, 10});
  ASSERT_THAT(clients[0]->WaitForVersion(2, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, clients[0]->PullModel());
  ASSERT_EQ(model.version, 3u);
  EXPECT_NEAR(model.params[0], 0.1, 1e-6);
  EXPECT_NEAR(model.params[1], status.privacy_clip_norm, 1e-6);
  // All clipped: b~ = 0, C <- c1 exp(0.2 * 0.5) = 1.
  TALLY_ASSERT_OK_AND_ASSIGN(status, clients[0]->GetServerStatus());
  EXPECT_NEAR(status.privacy_clip_norm, 1.0, 1e-4);
}

// Runs TRAIN tasks of one client (update (0.25, 0)) until DONE; returns the
// rounds it trained.
int TrainUntilDone(Client& client) {
  int rounds = 0;
  const std::vector<float> delta = {0.25f, 0};
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Task> task = client.GetTask(absl::Seconds(30));
    if (!task.ok()) {
      ADD_FAILURE() << task.status();
      return rounds;
    }
    if (task->kind == Task::Kind::kDone) return rounds;
    if (task->kind != Task::Kind::kTrain) continue;
    Update update;
    update.round = task->round;
    update.base_version = task->model_version;
    update.delta = delta;
    EXPECT_THAT(client.PushUpdate(update), IsOk());
    ++rounds;
  }
  ADD_FAILURE() << "never DONE";
  return rounds;
}

// A server of 1 client per round with the budget `target_epsilon` (q = 1,
// z = 2, delta = 1e-5) checkpointing into `dir`: one client trains until
// DONE; the status after that, once the run has finished; then shut down.
ServerStatusInfo RunBudgeted(const std::string& dir, double target_epsilon, int* trained) {
  tally::v1::ServerConfig config = PrivateConfig(2, 1, 1, /*clip_norm=*/1.0,
                                                 /*noise_multiplier=*/2.0);
  config.mutable_privacy()->set_target_epsilon(target_epsilon);
  config.mutable_rounds()->set_total_rounds(10);
  config.set_checkpoint_dir(dir);
  config.set_checkpoint_interval_ms(1);
  auto h = Harness::Start(config);
  if (h == nullptr) return {};
  auto client = h->NewClient("a");
  EXPECT_THAT(client->Join(), IsOk());
  *trained = TrainUntilDone(*client);
  absl::StatusOr<ServerStatusInfo> status = client->GetServerStatus();
  EXPECT_THAT(status, IsOk());
  EXPECT_NEAR(Gauge(*h, "tally_privacy_epsilon"), status->privacy_epsilon, 1e-12);
  for (int i = 0; i < 1000 && !h->server->RunFinished(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(h->server->RunFinished());
  h->server->Shutdown(absl::Seconds(1));
  return status.ok() ? *status : ServerStatusInfo{};
}

TEST(PrivacyServerTest, BudgetStopsAtThePredictedRoundAndSurvivesRestarts) {
  // q = 1, z = 2, delta = 1e-5: RDP(alpha) = T alpha / 8 and
  // epsilon(T) = min_alpha [T alpha / 8 + log1p(-1/alpha) - log(delta alpha) / (alpha - 1)]
  // over alpha = 2..256, evaluated separately (Python, math module):
  //   epsilon(3) = 4.01191164235448 (alpha 6), epsilon(4) = 4.752728... (alpha 5),
  //   epsilon(6) = 6.002728336819822 (alpha 5), epsilon(7) = 6.587862... (alpha 4).
  // A budget of 4.5 allows 3 rounds; 6.1 allows 6.
  constexpr double kEpsilon3 = 4.01191164235448, kEpsilon6 = 6.002728336819822;
  const std::string dir = ::testing::TempDir() + "/privacy_budget";
  std::system(("rm -rf '" + dir + "'").c_str());
  int trained = -1;
  ServerStatusInfo status = RunBudgeted(dir, 4.5, &trained);
  EXPECT_EQ(trained, 3);
  EXPECT_TRUE(status.done);
  EXPECT_EQ(status.rounds_completed, 3u);
  EXPECT_EQ(status.model_version, 4u);
  EXPECT_EQ(status.privacy_steps, 3u);
  EXPECT_NEAR(status.privacy_epsilon, kEpsilon3, 1e-9);
  EXPECT_EQ(status.privacy_target_epsilon, 4.5);

  // The same budget after a restart: done at once, epsilon restored.
  status = RunBudgeted(dir, 4.5, &trained);
  EXPECT_EQ(trained, 0);
  EXPECT_TRUE(status.done);
  EXPECT_EQ(status.restored_version, 4u);
  EXPECT_EQ(status.model_version, 4u);
  EXPECT_EQ(status.privacy_steps, 3u);
  EXPECT_NEAR(status.privacy_epsilon, kEpsilon3, 1e-9);

  // A larger budget continues from the 3 steps spent, not from 0.
  status = RunBudgeted(dir, 6.1, &trained);
  EXPECT_EQ(trained, 3);
  EXPECT_TRUE(status.done);
  EXPECT_EQ(status.rounds_completed, 6u);  // The checkpoint's 3 and this run's 3.
  EXPECT_EQ(status.model_version, 7u);
  EXPECT_EQ(status.privacy_steps, 6u);
  EXPECT_NEAR(status.privacy_epsilon, kEpsilon6, 1e-9);
}

TEST(PrivacyServerTest, LocalDpClientIsAcceptedAndDeclared) {
  auto h = Harness::Start({4}, 1, 1);
  ASSERT_NE(h, nullptr);
  ClientOptions options;
  options.target = h->target;
  options.client_id = "ldp";
  options.local_dp = LocalDpSettings{/*clip_norm=*/1.0, /*noise_multiplier=*/4.0, /*delta=*/1e-5};
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  ASSERT_THAT(client->Join(), IsOk());
  EXPECT_EQ(h->Counter("tally_joins_local_dp_total"), 1);
  auto plain = h->NewClient("plain");
  ASSERT_THAT(plain->Join(), IsOk());
  EXPECT_EQ(h->Counter("tally_joins_local_dp_total"), 1);
  EXPECT_THAT(TrainAndPush(*client, {3, 4, 0, 0}, 1), IsOk());
  ASSERT_THAT(client->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, client->PullModel());
  EXPECT_EQ(model.version, 2u);
}

TEST(PrivacyServerTest, ARestartWithAnotherDeltaIsRefused) {
  // The ledger's past steps were accounted at delta = 1e-5; their epsilon at
  // another delta is not what was reported, so the start is refused.
  const std::string dir = ::testing::TempDir() + "/privacy_delta";
  std::system(("rm -rf '" + dir + "'").c_str());
  int trained = -1;
  RunBudgeted(dir, 4.5, &trained);
  EXPECT_EQ(trained, 3);
  server::ServerOptions options;
  options.config = PrivateConfig(2, 1, 1, 1.0, 2.0);
  options.config.mutable_privacy()->set_delta(1e-6);
  options.config.set_checkpoint_dir(dir);
  options.registry = std::make_shared<prometheus::Registry>();
  auto server = server::Server::Create(std::move(options));
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()), ::testing::HasSubstr("privacy.delta"));
}

}  // namespace
}  // namespace tally
