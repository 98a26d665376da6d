// The coordinator under concurrent use, without gRPC: client threads stream
// chunked uploads into the same rounds (or the same asynchronous schedule)
// while the worker thread closes them and an observer reads status and model
// snapshots. Written for ThreadSanitizer (scripts/tsan.sh): the RPC tests
// drive the same paths, but gRPC's own synchronisation is invisible to TSan,
// so these are the tests through which it checks them.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/sync.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/coordinator.h"
#include "tests/coordinator_harness.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::testing::Each;
using ::testing::FloatEq;

constexpr size_t kParams = 1024;
constexpr size_t kChunkFloats = 16;  // 64 chunks per upload: they interleave.
constexpr int kClients = 4;

class CoordinatorStressTest : public ::testing::Test {
 protected:
  void Start(const std::string& rule, const std::string& schedule, uint64_t total_rounds) {
    tally::v1::ServerConfig config;
    auto* w = config.mutable_model()->add_tensors();
    w->set_name("w");
    w->add_shape(kParams);
    config.mutable_rounds()->set_clients_per_round(kClients);
    config.mutable_rounds()->set_min_clients(kClients);
    config.mutable_rounds()->set_total_rounds(total_rounds);
    config.mutable_strategy()->set_rule(rule);
    if (!schedule.empty()) {
      config.mutable_schedule()->set_name(schedule);
      config.mutable_schedule()->set_buffer_size(kClients);
    }
    config.set_spool_dir(::testing::TempDir());
    coordinator_ = MakeTestCoordinator(config, &clock_, registry_, &metrics_, &layout_);
    ASSERT_NE(coordinator_, nullptr);
  }

  // Client `i` (delta all i + 1) until the coordinator answers DONE (a
  // failure after a minute); returns the number of updates committed.
  int RunClient(int i) {
    const std::string id = absl::StrCat("c", i);
    auto session = coordinator_->Join(id);
    EXPECT_THAT(session, IsOk());
    if (!session.ok()) return 0;
    const std::vector<float> delta(kParams, static_cast<float>(i + 1));
    int committed = 0;
    const absl::Time give_up = absl::Now() + absl::Minutes(1);
    for (int attempt = 0;; ++attempt) {
      const absl::Duration left = give_up - absl::Now();
      if (left <= absl::ZeroDuration()) {
        ADD_FAILURE() << id << " never got DONE";
        break;
      }
      tally::Notification answered;
      absl::StatusOr<TaskInfo> task;
      coordinator_->AwaitTask(id, session->token, left, [&](absl::StatusOr<TaskInfo> t) {
        task = std::move(t);
        answered.Notify();
      });
      answered.WaitForNotification();
      EXPECT_THAT(task, IsOk());
      if (!task.ok() || task->kind == TaskInfo::Kind::kDone) break;
      if (task->kind != TaskInfo::Kind::kTrain) continue;
      UpdateHeaderInfo h;
      h.client_id = id;
      h.session_token = session->token;
      h.update_id = absl::StrCat(id, "-", attempt);
      h.round = task->round;
      h.base_version = task->model_version;
      h.num_samples = 1;
      h.codec_known = true;  // float32.
      h.layout_hash = layout_.Hash();
      h.num_params = kParams;
      h.payload_bytes = 4 * kParams;
      if (Push(h, delta).ok()) ++committed;
    }
    return committed;
  }

  absl::Status Push(const UpdateHeaderInfo& header, const std::vector<float>& delta) {
    auto upload = coordinator_->BeginUpload(header);
    if (!upload.ok()) return upload.status();
    const char* bytes = reinterpret_cast<const char*>(delta.data());
    for (size_t f = 0; f < delta.size(); f += kChunkFloats) {
      absl::Status added = coordinator_->AddChunk(
          **upload, 4 * f, absl::string_view(bytes + 4 * f, 4 * kChunkFloats));
      if (!added.ok()) return added;
    }
    return coordinator_->FinishUpload(**upload).status();
  }

  // Runs kClients client threads and an observer until every client is done.
  std::vector<int> RunFederation() {
    std::atomic<bool> stop{false};
    std::thread observer([&] {
      uint64_t seen = 0;
      while (!stop.load()) {
        const auto model = coordinator_->store().Current();
        EXPECT_GE(model->version, seen);
        seen = model->version;
        EXPECT_EQ(model->params.size(), kParams);
        EXPECT_GE(coordinator_->Status().model_version, 1u);
      }
    });
    std::vector<int> committed(kClients, 0);
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([this, i, &committed] { committed[i] = RunClient(i); });
    }
    for (auto& t : clients) t.join();
    stop = true;
    observer.join();
    return committed;
  }

  ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  ModelLayout layout_;
  std::unique_ptr<Coordinator> coordinator_;
};

// Every client takes part in every round, so each round's mean (and median)
// of the deltas 1..4 is 2.5, and sgd (lr 1) adds it: 5 rounds give 12.5.
TEST_F(CoordinatorStressTest, StreamingMeanRounds) {
  Start("mean", "", /*total_rounds=*/5);
  EXPECT_THAT(RunFederation(), Each(5));
  EXPECT_EQ(coordinator_->store().Current()->version, 6u);
  EXPECT_THAT(coordinator_->store().Current()->params, Each(FloatEq(12.5f)));
}

TEST_F(CoordinatorStressTest, RobustRuleRounds) {
  Start("median", "", /*total_rounds=*/5);
  EXPECT_THAT(RunFederation(), Each(5));
  EXPECT_EQ(coordinator_->store().Current()->version, 6u);
  EXPECT_THAT(coordinator_->store().Current()->params, Each(FloatEq(12.5f)));
}

// FedBuff: uploads are received whole into pooled buffers and flushed by the
// worker every kClients updates; stale ones may be refused, so only the
// number of flushes is exact.
TEST_F(CoordinatorStressTest, FedBuffSchedule) {
  Start("mean", "fedbuff", /*total_rounds=*/5);
  RunFederation();
  coordinator_->TickForTesting();
  EXPECT_EQ(coordinator_->store().Current()->version, 6u);
}

}  // namespace
}  // namespace tally::server
