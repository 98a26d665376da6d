// Unit tests of the client SDK that need no server: options validation, the
// backoff schedule, jitter bounds, update ids, chunk sizing, and the calls
// that must fail before any RPC. RPC behaviour against a real server is
// covered by the integration tests.
#include "tally/client.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/proto_convert.h"
#include "client/retry.h"
#include "tally/v1/tally.pb.h"
#include "client/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using client_internal::BackoffCeiling;
using client_internal::BackoffPolicy;
using client_internal::EffectiveChunkBytes;
using client_internal::IsRetryable;
using client_internal::RandomSource;
using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

ClientOptions ValidOptions() {
  ClientOptions options;
  options.target = "127.0.0.1:1";  // Never dialled by these tests unless said.
  options.client_id = "edge-01";
  return options;
}

TEST(ClientOptionsTest, AcceptsValidOptions) {
  EXPECT_THAT(Client::Create(ValidOptions()), IsOk());
  ClientOptions options = ValidOptions();
  options.client_id = "Az09._:@-";
  EXPECT_THAT(Client::Create(options), IsOk());
  options.client_id = std::string(128, 'x');
  EXPECT_THAT(Client::Create(options), IsOk());
}

TEST(ClientOptionsTest, RejectsBadClientId) {
  for (const std::string& id : {std::string(), std::string(129, 'x'), std::string("a b"),
                                std::string("a/b"), std::string("caf\xc3\xa9")}) {
    ClientOptions options = ValidOptions();
    options.client_id = id;
    absl::Status status = Client::Create(options).status();
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument)) << "client_id '" << id << "'";
    EXPECT_THAT(std::string(status.message()), HasSubstr("client_id")) << status;
  }
}

TEST(ClientOptionsTest, RejectsBadNumbers) {
  ClientOptions options = ValidOptions();
  options.chunk_bytes = 0;
  EXPECT_THAT(Client::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(Client::Create(options).status().message()), HasSubstr("chunk_bytes"));

  options = ValidOptions();
  options.max_attempts = 0;
  EXPECT_THAT(Client::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(Client::Create(options).status().message()), HasSubstr("max_attempts"));

  options = ValidOptions();
  options.connect_timeout = absl::ZeroDuration();
  EXPECT_THAT(Client::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("connect_timeout")));

  options = ValidOptions();
  options.backoff_multiplier = 0.5;
  EXPECT_THAT(Client::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));

  options = ValidOptions();
  options.max_backoff = absl::Milliseconds(1);  // Below initial_backoff.
  EXPECT_THAT(Client::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));

  options = ValidOptions();
  options.call_timeout = absl::ZeroDuration();
  EXPECT_THAT(Client::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));

  options = ValidOptions();
  options.target.clear();
  EXPECT_THAT(Client::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BackoffTest, ExponentialThenCapped) {
  const BackoffPolicy policy{absl::Milliseconds(100), absl::Seconds(5), 2.0};
  // 100 ms * 2^k: 100, 200, 400, 800, 1600, 3200, then capped at 5000.
  const std::vector<absl::Duration> expected = {absl::Milliseconds(100),  absl::Milliseconds(200),
                                                absl::Milliseconds(400),  absl::Milliseconds(800),
                                                absl::Milliseconds(1600), absl::Milliseconds(3200),
                                                absl::Seconds(5),         absl::Seconds(5)};
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(BackoffCeiling(policy, static_cast<int>(k)), expected[k]) << "retry " << k;
  }
  EXPECT_EQ(BackoffCeiling(policy, 1000), absl::Seconds(5));  // pow overflows to inf.
  EXPECT_EQ(BackoffCeiling(policy, -1), absl::Milliseconds(100));
}

TEST(BackoffTest, RetryDelayFollowsTheServersHintForResourceExhausted) {
  const BackoffPolicy policy{absl::Milliseconds(100), absl::Seconds(5), 2.0};
  RandomSource random(7);
  // The hint as the server sends it: a google.rpc.RetryInfo of 1.25 s.
  v1::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(1);
  info.mutable_retry_delay()->set_nanos(250000000);
  absl::Status limited = absl::ResourceExhaustedError("rate");
  limited.SetPayload("type.googleapis.com/google.rpc.RetryInfo",
                     absl::Cord(info.SerializeAsString()));
  EXPECT_EQ(RetryAfter(limited), absl::Milliseconds(1250));
  EXPECT_EQ(client_internal::RetryDelay(limited, 1, policy, random), absl::Milliseconds(1250));
  // Without a hint RESOURCE_EXHAUSTED is final, as are non-transient codes.
  EXPECT_EQ(client_internal::RetryDelay(absl::ResourceExhaustedError("x"), 1, policy, random),
            std::nullopt);
  EXPECT_EQ(client_internal::RetryDelay(absl::InvalidArgumentError("x"), 1, policy, random),
            std::nullopt);
  // UNAVAILABLE: full jitter under the third ceiling (400 ms) on the third failure.
  for (int i = 0; i < 100; ++i) {
    const auto delay = client_internal::RetryDelay(absl::UnavailableError("x"), 3, policy, random);
    ASSERT_TRUE(delay.has_value());
    EXPECT_GE(*delay, absl::ZeroDuration());
    EXPECT_LE(*delay, absl::Milliseconds(400));
  }
}

TEST(BackoffTest, DegeneratePolicies) {
  EXPECT_EQ(BackoffCeiling({absl::ZeroDuration(), absl::Seconds(1), 2.0}, 3), absl::ZeroDuration());
  EXPECT_EQ(BackoffCeiling({absl::Milliseconds(10), absl::Seconds(1), 1.0}, 50),
            absl::Milliseconds(10));
}

TEST(BackoffTest, FullJitterStaysWithinCeiling) {
  RandomSource random(42);
  const absl::Duration ceiling = absl::Milliseconds(400);
  absl::Duration low = ceiling;
  absl::Duration high = absl::ZeroDuration();
  for (int i = 0; i < 10000; ++i) {
    const absl::Duration d = random.FullJitter(ceiling);
    ASSERT_GE(d, absl::ZeroDuration());
    ASSERT_LE(d, ceiling);
    low = std::min(low, d);
    high = std::max(high, d);
  }
  // Full jitter uses the whole range, not just the top of it.
  EXPECT_LT(low, absl::Milliseconds(10));
  EXPECT_GT(high, absl::Milliseconds(390));
  EXPECT_EQ(random.FullJitter(absl::ZeroDuration()), absl::ZeroDuration());
  EXPECT_EQ(random.FullJitter(-absl::Seconds(1)), absl::ZeroDuration());
  EXPECT_LE(random.FullJitter(absl::InfiniteDuration()), absl::Hours(1));
}

TEST(BackoffTest, SameSeedSameJitter) {
  RandomSource a(7);
  RandomSource b(7);
  RandomSource c(8);
  bool any_difference = false;
  for (int i = 0; i < 100; ++i) {
    const absl::Duration da = a.FullJitter(absl::Seconds(1));
    EXPECT_EQ(da, b.FullJitter(absl::Seconds(1)));
    any_difference |= da != c.FullJitter(absl::Seconds(1));
  }
  EXPECT_TRUE(any_difference);
}

TEST(RetryTest, OnlyTransientCodesAreRetried) {
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kDeadlineExceeded));
  for (absl::StatusCode code :
       {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument, absl::StatusCode::kAlreadyExists,
        absl::StatusCode::kAborted, absl::StatusCode::kUnauthenticated,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kFailedPrecondition,
        absl::StatusCode::kInternal}) {
    EXPECT_FALSE(IsRetryable(code)) << absl::StatusCodeToString(code);
  }
}

TEST(UpdateIdTest, Is32LowercaseHexDigitsAndUnique) {
  RandomSource random(123);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = random.UpdateId();
    ASSERT_EQ(id.size(), 32u) << id;
    for (char c : id) {
      ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
    }
    EXPECT_THAT(client_internal::ValidateUpdateId(id), IsOk());
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  RandomSource again(123);
  RandomSource same(123);
  EXPECT_EQ(again.UpdateId(), same.UpdateId());  // Reproducible given the seed.
}

TEST(UpdateIdTest, ApplicationIdsAreValidated) {
  EXPECT_THAT(client_internal::ValidateUpdateId("round-3/attempt#1"), IsOk());
  EXPECT_THAT(client_internal::ValidateUpdateId(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client_internal::ValidateUpdateId(std::string(129, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client_internal::ValidateUpdateId("has space"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ChunkBytesTest, MinOfClientAndServerRoundedToFloats) {
  EXPECT_EQ(*EffectiveChunkBytes(1 << 20, 0), size_t{1} << 20);  // No server cap.
  EXPECT_EQ(*EffectiveChunkBytes(1 << 20, 65536), 65536u);       // Server cap wins.
  EXPECT_EQ(*EffectiveChunkBytes(1 << 20, 65537), 65536u);       // Rounded down to 4.
  EXPECT_EQ(*EffectiveChunkBytes(1001, 1 << 20), 1000u);         // Client size wins.
  EXPECT_THAT(EffectiveChunkBytes(3, 0), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(EffectiveChunkBytes(1 << 20, 2), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ClientTest, SessionCallsRequireJoin) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(ValidOptions()));
  const std::vector<float> delta(4, 0.0f);
  Update update;
  update.delta = delta;
  absl::StatusOr<PushResult> pushed = client->PushUpdate(update);
  EXPECT_THAT(pushed, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(pushed.status().message()), HasSubstr("Join")) << pushed.status();
  EXPECT_THAT(client->GetTask(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(client->PullModel(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(client->Heartbeat(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ClientTest, PushRejectsZeroSamplesBeforeAnyRpc) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(ValidOptions()));
  Update update;
  update.num_samples = 0;
  EXPECT_THAT(client->PushUpdate(update), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ClientOptionsTest, RejectsBadAttributes) {
  ClientOptions options = ValidOptions();
  options.attributes = {{"region", "eu"}, {"device", "gpu"}};
  EXPECT_THAT(Client::Create(options), IsOk());
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, std::string>>{{"", "x"},
                                                        {"re gion", "eu"},
                                                        {std::string(65, 'n'), "x"},
                                                        {"region", std::string(129, 'v')},
                                                        {"region", "e\nu"}}) {
    options.attributes = {{name, value}};
    absl::Status status = Client::Create(options).status();
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument)) << name;
    EXPECT_THAT(std::string(status.message()), HasSubstr("ClientOptions.attributes")) << status;
  }
  options.attributes.clear();
  for (int i = 0; i < 17; ++i) options.attributes[absl::StrCat("k", i)] = "v";
  EXPECT_THAT(Client::Create(options).status().message(), HasSubstr("at most 16"));
}

// An EVALUATE task from the wire: its kind, config (numbers and strings)
// and evaluation id reach the application.
TEST(TaskTest, EvaluateTaskWithConfigFromTheWire) {
  v1::Task proto;
  proto.set_kind(v1::Task::EVALUATE);
  proto.set_round(7);
  proto.set_model_version(6);
  (*proto.mutable_config())["lr"].set_number(0.05);
  (*proto.mutable_config())["optimizer"].set_text("sgd");
  proto.mutable_evaluation()->set_evaluation_id(3);
  const Task task = client_internal::TaskFromProto(proto);
  EXPECT_EQ(task.kind, Task::Kind::kEvaluate);
  EXPECT_EQ(task.model_version, 6u);
  EXPECT_EQ(task.evaluation_id, 3u);
  ASSERT_EQ(task.config.size(), 2u);
  EXPECT_EQ(task.ConfigNumber("lr", 1.0), 0.05);
  EXPECT_EQ(task.ConfigText("optimizer", ""), "sgd");
  EXPECT_EQ(task.ConfigNumber("optimizer", 1.0), 1.0);  // A string: the fallback.
  EXPECT_EQ(task.ConfigText("lr", "none"), "none");     // A number: the fallback.
  EXPECT_EQ(task.ConfigNumber("epochs", 2.0), 2.0);     // Absent: the fallback.
  v1::Task train;
  train.set_kind(v1::Task::TRAIN);
  EXPECT_TRUE(client_internal::TaskFromProto(train).config.empty());
}

TEST(ClientTest, ReportEvaluationIsCheckedBeforeAnyRpc) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(ValidOptions()));
  Task task;
  task.kind = Task::Kind::kTrain;
  EXPECT_THAT(client->ReportEvaluation(task, 10, {}).status().message(),
              HasSubstr("not an EVALUATE task"));
  task.kind = Task::Kind::kEvaluate;
  EXPECT_THAT(client->ReportEvaluation(task, 0, {}).status().message(),
              HasSubstr("num_examples"));
  EXPECT_THAT(client->ReportEvaluation(task, 10, {{"loss", std::nan("")}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client->ReportEvaluation(task, 10, {{std::string(65, 'm'), 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A valid report needs a session first.
  EXPECT_THAT(client->ReportEvaluation(task, 10, {{"accuracy", 0.9}}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ClientTest, UnreachableServerIsUnavailableAfterConnectTimeout) {
  // Port 1 on loopback refuses connections at once.
  ClientOptions options = ValidOptions();
  options.connect_timeout = absl::Milliseconds(100);
  options.call_timeout = absl::Seconds(10);
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  absl::Status status = client->Join().status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable)) << status;
  EXPECT_EQ(status.message().rfind("Join: ", 0), 0u) << status;  // RPC name prefix.
}

}  // namespace
}  // namespace tally
