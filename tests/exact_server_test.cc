// The exact-aggregation attacks through a real tally server on loopback: a
// hostile client folds the largest values and weight the server admits into
// a round while honest uploads are in flight, then sends NaN, cancels, or
// stalls past the deadline. Every honest client is told OK, no round fails,
// and the published model is the honest weighted mean bit for bit (computed
// here independently: the honest values are dyadic, so the mean is exact).
// Then the same federation run twice, with different arrival orders, gives
// the same model bits.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tally/client.h"
#include "tests/raw_client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::testing::HasSubstr;

constexpr int64_t kParams = 1024;
constexpr size_t kHalf = kParams / 2;

// Honest client i's update: dyadic values, so that the weighted mean below
// is exact in float.
std::vector<float> HonestDelta(int i) {
  std::vector<float> v(kParams);
  for (int64_t j = 0; j < kParams; ++j) {
    v[j] = static_cast<float>(((j * (i + 3)) % 17) - 8) * std::ldexp(1.0f, -10 - i);
  }
  return v;
}
constexpr uint64_t kHonestSamples[3] = {1, 2, 1};

// (1 x0 + 2 x1 + 1 x2) / 4, computed in double (exact for these values).
std::vector<float> HonestMean() {
  std::vector<float> mean(kParams);
  for (int64_t j = 0; j < kParams; ++j) {
    double s = 0;
    for (int i = 0; i < 3; ++i) s += static_cast<double>(kHonestSamples[i]) * HonestDelta(i)[j];
    mean[j] = static_cast<float>(s / 4.0);
  }
  return mean;
}

std::vector<float> Slice(const std::vector<float>& v, size_t begin, size_t end) {
  return std::vector<float>(v.begin() + begin, v.begin() + end);
}

enum class Attack { kNaNAfterHugeChunk, kCancelAfterHugeChunk, kStallPastDeadline };

// Round of 4 slots (3 honest + mallory), deadline `timeout_ms` after the
// first task. The honest uploads send their first half, mallory folds in a
// chunk of the largest values (limits.max_abs_value) at the largest weight
// (limits.max_num_samples), the honest uploads finish, then mallory attacks.
void RunAttack(Attack attack) {
  tally::v1::ServerConfig config = Harness::Config({kParams}, 4, 3, /*timeout_ms=*/3000);
  config.mutable_limits()->set_max_chunk_bytes(4 * kHalf);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient mallory(h->target, "mallory");
  std::vector<std::unique_ptr<RawClient>> honest;
  for (int i = 0; i < 3; ++i) {
    honest.push_back(std::make_unique<RawClient>(h->target, absl::StrCat("honest-", i)));
  }
  {  // A task for mallory starts the round's deadline.
    grpc::ClientContext ctx;
    tally::v1::GetTaskRequest request;
    request.set_client_id("mallory");
    request.set_session_token(mallory.token());
    tally::v1::Task task;
    ASSERT_TRUE(mallory.stub().GetTask(&ctx, request, &task).ok());
  }
  std::vector<std::unique_ptr<OpenPush>> pushes;
  for (int i = 0; i < 3; ++i) {
    tally::v1::UpdateHeader header = honest[i]->Header(absl::StrCat("h", i));
    header.set_num_samples(kHonestSamples[i]);
    pushes.push_back(std::make_unique<OpenPush>(*honest[i], header));
    ASSERT_TRUE(pushes.back()->Send(Slice(HonestDelta(i), 0, kHalf)));
  }
  tally::v1::UpdateHeader evil_header = mallory.Header("evil");
  evil_header.set_num_samples(1000000000);  // The default limits.max_num_samples.
  auto evil = std::make_unique<OpenPush>(mallory, evil_header);
  std::vector<float> huge(kHalf);
  for (size_t j = 0; j < kHalf; ++j) huge[j] = j % 2 ? 1e6f : -1e6f;  // limits.max_abs_value.
  ASSERT_TRUE(evil->Send(huge));
  // Wait until the server has taken all four first halves.
  auto observer = h->NewClient("observer");
  ASSERT_THAT(observer->Join(), IsOk());
  for (int i = 0; i < 2000; ++i) {
    auto status = observer->GetServerStatus();
    if (status.ok() && status->bytes_received >= 4 * 4 * kHalf) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pushes[i]->Send(Slice(HonestDelta(i), kHalf, kParams)));
    EXPECT_TRUE(pushes[i]->Finish().ok()) << "honest " << i;
  }
  switch (attack) {
    case Attack::kNaNAfterHugeChunk: {
      std::vector<float> nan(kHalf, 1.0f);
      nan[7] = std::numeric_limits<float>::quiet_NaN();
      evil->Send(nan);
      const grpc::Status s = evil->Finish();
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_THAT(s.error_message(), HasSubstr("non-finite"));
      EXPECT_EQ(h->Counter("tally_updates_rejected_total", "non_finite"), 1);
      break;
    }
    case Attack::kCancelAfterHugeChunk:
      evil->Cancel();
      break;
    case Attack::kStallPastDeadline:
      break;  // Mallory keeps the stream open; the deadline closes the round.
  }
  ASSERT_THAT(observer->WaitForVersion(1, absl::Seconds(30)), IsOk());
  if (attack == Attack::kStallPastDeadline) evil->Cancel();
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, observer->PullModel());
  EXPECT_EQ(model.version, 2u);
  const std::vector<float> expected = HonestMean();
  for (int64_t j = 0; j < kParams; ++j) {
    ASSERT_EQ(model.params[j], expected[j]) << "parameter " << j;
  }
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, observer->GetServerStatus());
  EXPECT_EQ(status.rounds_failed, 0u);
  EXPECT_EQ(status.updates_accepted, 3u);
}

TEST(ExactServerTest, HugeValuesThenNaNLeaveTheHonestMeanExact) {
  RunAttack(Attack::kNaNAfterHugeChunk);
}

TEST(ExactServerTest, HugeValuesThenCancelLeaveTheHonestMeanExact) {
  RunAttack(Attack::kCancelAfterHugeChunk);
}

TEST(ExactServerTest, HugeValuesStalledPastTheDeadlineLeaveTheHonestMeanExact) {
  RunAttack(Attack::kStallPastDeadline);
}

// Values the exact sum cannot hold (1e30, 3e38) and weights above
// limits.max_num_samples are refused up front with their own reason; the
// honest round that follows is exact.
TEST(ExactServerTest, OutOfRangeValuesAndWeightsAreRefusedUpFront) {
  auto h = Harness::Start({kParams}, 3, 3);
  ASSERT_NE(h, nullptr);
  RawClient mallory(h->target, "mallory");
  std::vector<float> big(kParams, 1e30f);
  grpc::Status s = mallory.Push(mallory.Header("e1"), {Floats(big)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("exceeds limits.max_abs_value 1e+06"));
  big.assign(kParams, 0.0f);
  big[kParams - 1] = 3e38f;  // The last value of an otherwise harmless update.
  s = mallory.Push(mallory.Header("e2"), {Floats(big)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("at parameter ", kParams - 1)));
  tally::v1::UpdateHeader heavy = mallory.Header("e3");
  heavy.set_num_samples(1000000001);
  s = mallory.Push(heavy, {Floats(std::vector<float>(kParams, 1.0f))});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "value_range"), 2);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "malformed"), 1);

  std::vector<std::unique_ptr<RawClient>> honest;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    honest.push_back(std::make_unique<RawClient>(h->target, absl::StrCat("honest-", i)));
  }
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      tally::v1::UpdateHeader header = honest[i]->Header(absl::StrCat("h", i));
      header.set_num_samples(kHonestSamples[i]);
      EXPECT_TRUE(honest[i]->Push(header, {Floats(HonestDelta(i))}).ok());
    });
  }
  for (auto& t : threads) t.join();
  auto observer = h->NewClient("observer");
  ASSERT_THAT(observer->Join(), IsOk());
  ASSERT_THAT(observer->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, observer->PullModel());
  EXPECT_EQ(model.params, HonestMean());
}

// The same federation twice on fresh servers: 4 SDK clients, 6 rounds, each
// client's delta a deterministic function of the model it pulled, pushed in
// 5 chunks after a random delay (seeded differently in the two runs, so the
// arrival order and the interleaving of chunks differ). The final models are
// bit-identical, for the streaming mean and for a robust rule.
std::vector<float> RunFederation(const std::string& rule, uint32_t jitter_seed) {
  constexpr int kClients = 4, kRounds = 6;
  constexpr int64_t d = 5000;
  tally::v1::ServerConfig config = Harness::Config({d}, kClients, kClients);
  config.mutable_rounds()->set_total_rounds(kRounds);
  config.mutable_optimizer()->set_name("fedavgm");
  if (!rule.empty()) {
    config.mutable_strategy()->set_rule(rule);
    config.mutable_strategy()->set_f(1);
  }
  auto h = Harness::Start(config);
  if (h == nullptr) return {};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      ClientOptions options;
      options.target = h->target;
      options.client_id = absl::StrCat("client-", c);
      options.chunk_bytes = 4 * d / 5;
      auto client = Client::Create(options);
      ASSERT_THAT(client, IsOk());
      ASSERT_THAT((*client)->Join(), IsOk());
      std::mt19937 jitter(jitter_seed * 31 + c);
      while (true) {
        auto task = (*client)->GetTask(absl::Seconds(30));
        ASSERT_THAT(task, IsOk());
        if (task->kind == Task::Kind::kDone) break;
        if (task->kind != Task::Kind::kTrain) continue;
        auto model = (*client)->PullModel();
        ASSERT_THAT(model, IsOk());
        std::vector<float> delta(d);
        for (int64_t j = 0; j < d; ++j) {
          // "Local training": a step towards a client-specific target.
          const float target = std::sin(0.001f * j * (c + 1)) * (c + 1);
          delta[j] = 0.3f * (target - model->params[j]) + 1e-3f / (1 + j);
        }
        Update update;
        update.round = task->round;
        update.base_version = task->model_version;
        update.num_samples = 10 + 7 * c;
        update.delta = delta;
        absl::SleepFor(absl::Microseconds(jitter() % 20000));
        ASSERT_THAT((*client)->PushUpdate(update), IsOk());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto observer = h->NewClient("observer");
  EXPECT_THAT(observer->Join(), IsOk());
  auto model = observer->PullModel();
  EXPECT_THAT(model, IsOk());
  if (!model.ok()) return {};
  EXPECT_EQ(model->version, 1u + kRounds);
  return model->params;
}

TEST(ExactServerTest, TheSameFederationTwiceGivesTheSameModelBits) {
  for (const std::string rule : {"", "geometric_median"}) {
    const std::vector<float> first = RunFederation(rule, 1);
    const std::vector<float> second = RunFederation(rule, 2);
    ASSERT_EQ(first.size(), 5000u) << rule;
    ASSERT_EQ(second.size(), first.size()) << rule;
    EXPECT_EQ(std::memcmp(first.data(), second.data(), 4 * first.size()), 0)
        << (rule.empty() ? "mean" : rule);
  }
}

}  // namespace
}  // namespace tally
