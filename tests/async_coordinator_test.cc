// The coordinator under the asynchronous schedules, without gRPC: server-side
// staleness, max_staleness, base-version checks, FedAsync / FedBuff / FedFix
// arithmetic against docs/algorithms.md#fedasync, #fedbuff and
// #fedfix-worked-example, robust rules over FedBuff
// batches, buffer recycling. Virtual time (ManualClock + TickForTesting).
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/sync.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/coordinator.h"
#include "tally/client.h"
#include "tests/coordinator_harness.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::FloatNear;
using ::testing::Pointwise;

class AsyncCoordinatorTest : public ::testing::Test {
 protected:
  // `schedule` fields override the test defaults (alpha 1, constant S).
  void Start(const tally::v1::ScheduleConfig& schedule, size_t d = 2,
             const std::string& rule = "mean") {
    coordinator_.reset();
    tally::v1::ServerConfig config;
    auto* w = config.mutable_model()->add_tensors();
    w->set_name("w");
    w->add_shape(static_cast<int64_t>(d));
    config.mutable_rounds()->set_clients_per_round(3);
    config.mutable_rounds()->set_total_rounds(total_rounds_);
    *config.mutable_limits() = limits_;
    *config.mutable_schedule() = schedule;
    config.mutable_strategy()->set_rule(rule);
    coordinator_ = MakeTestCoordinator(config, &clock_, registry_, &metrics_, &layout_);
    ASSERT_NE(coordinator_, nullptr);
  }

  static tally::v1::ScheduleConfig Schedule(const std::string& name) {
    tally::v1::ScheduleConfig s;
    s.set_name(name);
    s.set_alpha(1.0);
    return s;
  }

  void Join(const std::string& id) {
    auto session = coordinator_->Join(id);
    ASSERT_THAT(session, IsOk());
    tokens_[id] = session->token;
  }

  absl::StatusOr<TaskInfo> Task(const std::string& id) {
    return coordinator_->GetTask(id, tokens_[id]);
  }

  // A TRAIN task for `id`; returns its model version (0 on failure).
  uint64_t Train(const std::string& id) {
    auto task = Task(id);
    EXPECT_THAT(task, IsOk());
    if (!task.ok()) return 0;
    EXPECT_EQ(task->kind, TaskInfo::Kind::kTrain) << id;
    return task->model_version;
  }

  // A well-formed header of a whole dense update.
  UpdateHeaderInfo Header(const std::string& id, uint64_t base, uint64_t samples = 1) {
    UpdateHeaderInfo h;
    h.client_id = id;
    h.session_token = tokens_[id];
    h.update_id = absl::StrCat(id, "-", ++pushes_);
    h.base_version = base;
    h.num_samples = samples;
    h.codec_known = true;  // float32.
    h.layout_hash = layout_.Hash();
    h.num_params = layout_.NumParams();
    h.payload_bytes = 4 * layout_.NumParams();
    return h;
  }

  absl::StatusOr<CommitInfo> Push(const std::string& id, uint64_t base,
                                  const std::vector<float>& delta, uint64_t samples = 1) {
    auto upload = coordinator_->BeginUpload(Header(id, base, samples));
    if (!upload.ok()) return upload.status();
    const std::string bytes(reinterpret_cast<const char*>(delta.data()), 4 * delta.size());
    absl::Status added = coordinator_->AddChunk(**upload, 0, bytes);
    if (!added.ok()) return added;
    return coordinator_->FinishUpload(**upload);
  }

  // Applies what the schedule has decided (the worker may have done it
  // already; TickForTesting returns once nothing due is left).
  std::vector<float> Model() {
    coordinator_->TickForTesting();
    return coordinator_->store().Current()->params;
  }
  uint64_t Version() {
    coordinator_->TickForTesting();
    return coordinator_->store().Current()->version;
  }

  double Rejected(const std::string& reason) {
    for (const auto& family : registry_.Collect()) {
      if (family.name != "tally_updates_rejected_total") continue;
      for (const auto& metric : family.metric) {
        if (metric.label[0].value == reason) return metric.counter.value;
      }
    }
    return -1;
  }

  // (sample count, sample sum) of tally_update_staleness.
  std::pair<uint64_t, double> Staleness() {
    for (const auto& family : registry_.Collect()) {
      if (family.name != "tally_update_staleness") continue;
      return {family.metric[0].histogram.sample_count, family.metric[0].histogram.sample_sum};
    }
    return {0, -1};
  }

  uint64_t total_rounds_ = 0;
  tally::v1::LimitsConfig limits_;
  ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  ModelLayout layout_;
  std::unique_ptr<Coordinator> coordinator_;
  std::map<std::string, std::string> tokens_;
  int pushes_ = 0;
};

TEST_F(AsyncCoordinatorTest, FedAsyncAppliesEachUpdateWithItsServerComputedStaleness) {
  // alpha 0.9, N = 2, S(u) = (u + 1)^-0.5 (docs/algorithms.md#fedasync).
  tally::v1::ScheduleConfig s = Schedule("fedasync");
  s.set_alpha(0.9);
  s.set_num_clients(2);
  s.mutable_staleness()->set_name("polynomial");
  Start(s);
  Join("a");
  Join("b");
  ASSERT_EQ(Train("a"), 1u);
  ASSERT_EQ(Train("b"), 1u);
  // a: staleness 0 -> 0.9 * 1 / 2 = 0.45.
  auto a = Push("a", 1, {1, 2});
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->staleness, 0u);
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6), std::vector<float>{0.45f, 0.9f}));
  // b trained on version 1 while version 2 was published: staleness 1,
  // 0.9 * 2^-0.5 / 2 = 0.3181981.
  auto b = Push("b", 1, {-1, 4});
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->staleness, 1u);
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6),
                                 std::vector<float>{0.45f - 0.3181981f, 0.9f + 4 * 0.3181981f}));
  EXPECT_EQ(Version(), 3u);
  EXPECT_EQ(Staleness(), (std::pair<uint64_t, double>{2, 1.0}));
}

TEST_F(AsyncCoordinatorTest, FedBuffWithKEqualToNIsTheSyncMeanOfTheSameUpdates) {
  tally::v1::ScheduleConfig s = Schedule("fedbuff");
  s.set_buffer_size(3);
  s.set_num_clients(3);  // weights 1/3, alpha 1, constant S: the plain mean.
  Start(s);
  for (const char* id : {"a", "b", "c"}) {
    Join(id);
    ASSERT_EQ(Train(id), 1u);
  }
  ASSERT_THAT(Push("a", 1, {3, 0}), IsOk());
  ASSERT_THAT(Push("b", 1, {0, 6}), IsOk());
  EXPECT_EQ(Version(), 1u);  // Buffered, nothing applied yet.
  auto c = Push("c", 1, {3, 3});
  ASSERT_THAT(c, IsOk());
  // (3 + 0 + 3) / 3 = 2, (0 + 6 + 3) / 3 = 3: what a sync round of the same
  // three equally weighted updates gives.
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6), std::vector<float>{2, 3}));
  EXPECT_EQ(Version(), 2u);
  ASSERT_EQ(Train("a"), 2u);
  ASSERT_THAT(Push("a", 2, {1, 1}), IsOk());
  auto stale = Push("b", 1, {0, 0});
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));  // b has no task.
  ASSERT_EQ(Train("b"), 2u);
  auto b = Push("b", 2, {1, 1});
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->staleness, 0u);
  EXPECT_EQ(b->accepted_in_round, 2u);  // a's and b's updates are buffered.
}

// A FedBuff flush is an exact sum (docs/aggregation.md): the same three
// updates buffered in any arrival order give the same model bits, and an
// upload refused mid-stream (NaN after a chunk of the largest admitted
// values) changes nothing. Values chosen so that a float sum would depend on
// the order: 1e6 + 1e-3 - 1e6.
TEST_F(AsyncCoordinatorTest, FedBuffFlushesDoNotDependOnArrivalOrder) {
  const std::vector<std::vector<float>> deltas = {{1e6f, 0.1f}, {1e-3f, 0.2f}, {-1e6f, 0.3f}};
  std::vector<float> first;
  for (const std::vector<int>& order :
       std::vector<std::vector<int>>{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}}) {
    tally::v1::ScheduleConfig s = Schedule("fedbuff");
    s.set_buffer_size(3);
    s.set_num_clients(3);
    Start(s);
    const std::vector<std::string> ids = {"a", "b", "c"};
    for (const std::string& id : ids) {
      Join(id);
      ASSERT_EQ(Train(id), 1u);
    }
    Join("m");
    ASSERT_EQ(Train("m"), 1u);
    for (int i : order) {
      if (i == 1) {  // Mallory, in the middle of the buffer's arrivals.
        auto upload = coordinator_->BeginUpload(Header("m", 1));
        ASSERT_THAT(upload, IsOk());
        const float big[1] = {1e6f};
        ASSERT_THAT(coordinator_->AddChunk(**upload, 0,
                                           absl::string_view(reinterpret_cast<const char*>(big), 4)),
                    IsOk());
        const float nan[1] = {std::numeric_limits<float>::quiet_NaN()};
        EXPECT_THAT(coordinator_->AddChunk(
                        **upload, 4, absl::string_view(reinterpret_cast<const char*>(nan), 4)),
                    StatusIs(absl::StatusCode::kInvalidArgument));
      }
      ASSERT_THAT(Push(ids[i], 1, deltas[i]), IsOk());
    }
    const std::vector<float> model = Model();
    ASSERT_EQ(Version(), 2u);
    // (1e6 + 1e-3 - 1e6) / 3 and (0.1 + 0.2 + 0.3) / 3, by hand: within the
    // documented 2^-40 steps of the exact values.
    EXPECT_NEAR(model[0], 1e-3 / 3, 1e-9);
    EXPECT_NEAR(model[1], 0.2, 1e-7);
    if (first.empty()) {
      first = model;
    } else {
      EXPECT_EQ(std::memcmp(model.data(), first.data(), 8), 0);
    }
  }
}

TEST_F(AsyncCoordinatorTest, MaxStalenessRejectsWithAbortedAndKeepsTheModel) {
  tally::v1::ScheduleConfig s = Schedule("fedasync");
  s.set_max_staleness(1);
  Start(s);
  for (const char* id : {"a", "b", "c"}) {
    Join(id);
    ASSERT_EQ(Train(id), 1u);
  }
  ASSERT_THAT(Push("a", 1, {1, 1}), IsOk());  // Version 2.
  ASSERT_THAT(Push("b", 1, {1, 1}), IsOk());  // Staleness 1: accepted; version 3.
  const std::vector<float> before = Model();
  EXPECT_THAT(Push("c", 1, {100, 100}), StatusIs(absl::StatusCode::kAborted));  // Staleness 2.
  EXPECT_EQ(Rejected("stale"), 1);
  EXPECT_EQ(Model(), before);
  EXPECT_EQ(Version(), 3u);
}

TEST_F(AsyncCoordinatorTest, BaseVersionMustBeOneTheServerGaveTheClient) {
  Start(Schedule("fedasync"));
  Join("a");
  Join("b");
  EXPECT_THAT(Push("a", 1, {1, 1}), StatusIs(absl::StatusCode::kFailedPrecondition));  // No task.
  ASSERT_EQ(Train("a"), 1u);
  ASSERT_EQ(Train("b"), 1u);
  ASSERT_THAT(Push("a", 1, {1, 1}), IsOk());
  ASSERT_EQ(Version(), 2u);
  // b's task is on version 1 and it never pulled version 2: claiming 2
  // (which would lower its staleness) is refused, as is a version 0 or 9.
  EXPECT_THAT(Push("b", 2, {1, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Push("b", 0, {1, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Push("b", 9, {1, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Rejected("malformed"), 3);
  // Once PullModel served it version 2, that base is its own.
  coordinator_->NotePulled("b", 2);
  auto b = Push("b", 2, {1, 1});
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->staleness, 0u);
}

TEST_F(AsyncCoordinatorTest, NonFiniteAndTruncatedUploadsAreRejectedAndFreeTheClient) {
  Start(Schedule("fedasync"));
  Join("a");
  ASSERT_EQ(Train("a"), 1u);
  EXPECT_THAT(Push("a", 1, {1, std::nanf("")}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Rejected("non_finite"), 1);
  // Truncated: the header promises 8 bytes, 4 arrive.
  auto upload = coordinator_->BeginUpload(Header("a", 1));
  ASSERT_THAT(upload, IsOk());
  const float one = 1;
  ASSERT_THAT(coordinator_->AddChunk(**upload, 0,
                                     absl::string_view(reinterpret_cast<const char*>(&one), 4)),
              IsOk());
  EXPECT_THAT(coordinator_->FinishUpload(**upload), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Rejected("length"), 1);
  EXPECT_EQ(Version(), 1u);
  // The client can still upload a good update for its task.
  ASSERT_THAT(Push("a", 1, {2, 2}), IsOk());
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6), std::vector<float>{2.0f / 3, 2.0f / 3}));
}

TEST_F(AsyncCoordinatorTest, FedFixFollowsTheWorkedExampleOfAlgorithmsSection4_3) {
  // M = 3, tau = (1.0, 0.6, 0.2) s, window 0.5 s, uniform p = 1/3, lr 1;
  // local work one gradient step of lr 0.5 on (theta - c_i)^2 / 2, c = 1, 2, 3:
  // delta_i = 0.5 (c_i - theta_start).
  tally::v1::ScheduleConfig s = Schedule("fedfix");
  s.set_window_ms(500);
  s.set_num_clients(3);
  Start(s, /*d=*/1);
  for (const char* id : {"c0", "c1", "c2"}) {
    Join(id);
    ASSERT_EQ(Train(id), 1u);  // All start at t = 0 on theta^0 = 0.
  }
  auto delta = [](double c, double theta) { return std::vector<float>{float(0.5 * (c - theta))}; };
  clock_.Advance(absl::Milliseconds(200));
  ASSERT_THAT(Push("c2", 1, delta(3, 0)), IsOk());
  auto wait = Task("c2");  // Its update waits for the window's end.
  ASSERT_THAT(wait, IsOk());
  EXPECT_EQ(wait->kind, TaskInfo::Kind::kWait);
  clock_.Advance(absl::Milliseconds(300));  // t = 0.5: window 0 = {c2}, d = 1/3.
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6), std::vector<float>{0.5f}));
  ASSERT_EQ(Train("c2"), 2u);  // Restarts on theta^1 = 0.5.
  clock_.Advance(absl::Milliseconds(100));
  ASSERT_THAT(Push("c1", 1, delta(2, 0)), IsOk());  // t = 0.6
  clock_.Advance(absl::Milliseconds(100));
  ASSERT_THAT(Push("c2", 2, delta(3, 0.5)), IsOk());  // t = 0.7
  // c0 returns at t = 1.0 in the example; 0.99 lands in the same window
  // without racing the coordinator's worker for the timer at 1.0.
  clock_.Advance(absl::Milliseconds(290));
  ASSERT_THAT(Push("c0", 1, delta(1, 0)), IsOk());
  clock_.Advance(absl::Milliseconds(10));
  // 0.5 + (2/3)(0.5) + (2/3)(1.0) + (1/3)(1.25) = 1.916667
  // (docs/algorithms.md#fedfix-worked-example).
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-5), std::vector<float>{1.916667f}));
  EXPECT_EQ(Version(), 3u);
}

TEST_F(AsyncCoordinatorTest, RobustRuleOverFedBuffBatches) {
  // Median of each buffer of 3, scaled by the sum of the weights (3 x 1/3).
  tally::v1::ScheduleConfig s = Schedule("fedbuff");
  s.set_buffer_size(3);
  s.set_num_clients(3);
  Start(s, /*d=*/2, "median");
  for (const char* id : {"a", "b", "c"}) {
    Join(id);
    ASSERT_EQ(Train(id), 1u);
  }
  ASSERT_THAT(Push("a", 1, {1, -2}), IsOk());
  ASSERT_THAT(Push("b", 1, {2, -1}), IsOk());
  ASSERT_THAT(Push("c", 1, {1000, 500}), IsOk());  // An attacker: the mean would be 334.3.
  EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6), std::vector<float>{2, -1}));
}

TEST_F(AsyncCoordinatorTest, AverageRuleOverFedBuffEqualsTheLinearPath) {
  // "average" weighted by the schedule's coefficients, times their sum, is
  // exactly sum_i w_i delta_i: the robust seam reproduces plain FedBuff.
  tally::v1::ScheduleConfig s = Schedule("fedbuff");
  s.set_buffer_size(2);
  s.set_alpha(0.9);
  s.set_num_clients(4);
  s.set_client_weights("sample_size");
  for (const std::string rule : {"mean", "average"}) {
    Start(s, /*d=*/2, rule);
    tokens_.clear();
    for (const char* id : {"a", "b"}) {
      Join(id);
      ASSERT_EQ(Train(id), 1u);
    }
    ASSERT_THAT(Push("a", 1, {4, 0}, /*samples=*/1), IsOk());
    ASSERT_THAT(Push("b", 1, {0, 4}, /*samples=*/3), IsOk());
    // sample_size: weights 0.9 * 1/4 and 0.9 * 3/4 (n_j seen so far: 1, 3).
    EXPECT_THAT(Model(), Pointwise(FloatNear(1e-6), std::vector<float>{0.9f, 2.7f})) << rule;
  }
}

TEST_F(AsyncCoordinatorTest, ARobustRuleNeedsABufferedSchedule) {
  tally::v1::ServerConfig config;
  config.mutable_schedule()->set_name("fedasync");
  config.mutable_strategy()->set_rule("median");
  ApplyDefaults(&config);
  EXPECT_THAT(ValidateConfig(config), StatusIs(absl::StatusCode::kInvalidArgument));
  config.mutable_schedule()->set_name("fedbuf");
  EXPECT_THAT(ValidateConfig(config), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AsyncCoordinatorTest, BuffersAreRecycledNotAllocatedPerUpdate) {
  Start(Schedule("fedasync"), /*d=*/1024);
  Join("a");
  const std::vector<float> delta(1024, 0.5f);
  for (int i = 0; i < 50; ++i) {
    const uint64_t version = Train("a");
    ASSERT_THAT(Push("a", version, delta), IsOk()) << i;
    ASSERT_EQ(Version(), version + 1);
  }
  // One upload, one aggregate and the models cycling through the pool: a
  // handful of allocations in all, not one per update.
  EXPECT_LE(coordinator_->Status().buffer_allocations, 4u);
  EXPECT_FLOAT_EQ(coordinator_->store().Current()->params[7], 50 * 0.5f / 3);
}

TEST_F(AsyncCoordinatorTest, TotalRoundsCountsScheduleSteps) {
  total_rounds_ = 2;
  Start(Schedule("fedasync"));
  Join("a");
  ASSERT_THAT(Push("a", Train("a"), {1, 1}), IsOk());
  // Until the worker has applied a's update, a's next task waits for it.
  EXPECT_EQ(Version(), 2u);
  ASSERT_THAT(Push("a", Train("a"), {1, 1}), IsOk());
  EXPECT_EQ(Version(), 3u);
  auto task = Task("a");
  ASSERT_THAT(task, IsOk());
  EXPECT_EQ(task->kind, TaskInfo::Kind::kDone);
  EXPECT_TRUE(coordinator_->Status().done);
}

TEST_F(AsyncCoordinatorTest, UploadRateAndConcurrencyLimitsAnswerWithARetryHint) {
  limits_.set_client_uploads_per_minute(2);
  limits_.set_max_concurrent_uploads(1);
  Start(Schedule("fedasync"));
  Join("a");
  Join("b");
  // Two uploads in the first minute, then a token every 30 s.
  ASSERT_THAT(Push("a", Train("a"), {1, 1}), IsOk());
  ASSERT_EQ(Version(), 2u);
  ASSERT_THAT(Push("a", Train("a"), {1, 1}), IsOk());
  ASSERT_EQ(Version(), 3u);
  clock_.Advance(absl::Seconds(6));
  const uint64_t base = Train("a");
  auto limited = Push("a", base, {1, 1});
  EXPECT_THAT(limited, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(tally::RetryAfter(limited.status()), absl::Seconds(24));  // (1 - 0.2 tokens) / (1/30 s)
  EXPECT_EQ(Rejected("rate_limited"), 1);
  clock_.Advance(absl::Seconds(24));
  ASSERT_THAT(Push("a", base, {1, 1}), IsOk());
  ASSERT_EQ(Version(), 4u);

  // One upload at a time over all clients.
  auto open = coordinator_->BeginUpload(Header("b", Train("b")));
  ASSERT_THAT(open, IsOk());
  clock_.Advance(absl::Seconds(30));
  auto busy = Push("a", Train("a"), {1, 1});
  EXPECT_THAT(busy, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(tally::RetryAfter(busy.status()), absl::Seconds(1));
  EXPECT_EQ(Rejected("overloaded"), 1);
  open->reset();  // b goes away: its upload is aborted and the slot freed.
  EXPECT_THAT(Push("a", Train("a"), {1, 1}), IsOk());  // The refusal cost a no token.
}

}  // namespace
}  // namespace tally::server
