// The server's parts without gRPC (docs/server.md, "Parts and seams"):
// admission, task waiters and the three update sinks. Expected numbers are
// hand computations.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "aggregators/step/aggregation_step.h"
#include "compress/codec.h"
#include "core/buffer_pool.h"
#include "core/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/admission.h"
#include "server/buffered_sink.h"
#include "server/mean_sink.h"
#include "server/metrics.h"
#include "server/row_sink.h"
#include "server/task_waiters.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

// --- Admission.

TEST(AdmissionTest, OneUploadAtATimePerClient) {
  Admission admission({/*max_concurrent_uploads=*/10, /*client_uploads_per_minute=*/0});
  RejectReason reason = RejectReason::kInternal;
  absl::Duration retry;
  ASSERT_THAT(admission.Admit("a", kT0, &reason, &retry), IsOk());
  EXPECT_THAT(admission.Admit("a", kT0, &reason, &retry),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("one at a time")));
  EXPECT_EQ(reason, RejectReason::kOverloaded);
  EXPECT_EQ(retry, absl::Seconds(1));
  EXPECT_THAT(admission.Admit("b", kT0, &reason, &retry), IsOk());
  EXPECT_EQ(admission.in_flight(), 2u);
  admission.Release("a");
  EXPECT_THAT(admission.Admit("a", kT0, &reason, &retry), IsOk());
}

TEST(AdmissionTest, MaxConcurrentUploads) {
  Admission admission({/*max_concurrent_uploads=*/2, /*client_uploads_per_minute=*/0});
  RejectReason reason = RejectReason::kInternal;
  absl::Duration retry;
  ASSERT_THAT(admission.Admit("a", kT0, &reason, &retry), IsOk());
  ASSERT_THAT(admission.Admit("b", kT0, &reason, &retry), IsOk());
  EXPECT_THAT(admission.Admit("c", kT0, &reason, &retry),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limits.max_concurrent_uploads 2")));
  EXPECT_EQ(reason, RejectReason::kOverloaded);
  EXPECT_FALSE(admission.busy("c"));
  admission.Release("b");
  EXPECT_THAT(admission.Admit("c", kT0, &reason, &retry), IsOk());
}

TEST(AdmissionTest, UploadRatePerClientAndRefusalsCostNoToken) {
  // 2 a minute: a full bucket of 2, then one token every 30 s.
  Admission admission({/*max_concurrent_uploads=*/1, /*client_uploads_per_minute=*/2});
  RejectReason reason = RejectReason::kInternal;
  absl::Duration retry;
  ASSERT_THAT(admission.Admit("a", kT0, &reason, &retry), IsOk());
  // Refused for concurrency: takes no token from b.
  EXPECT_THAT(admission.Admit("b", kT0, &reason, &retry),
              StatusIs(absl::StatusCode::kResourceExhausted));
  admission.Release("a");
  ASSERT_THAT(admission.Admit("a", kT0, &reason, &retry), IsOk());
  admission.Release("a");
  EXPECT_THAT(admission.Admit("a", kT0 + absl::Seconds(10), &reason, &retry),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limits.client_uploads_per_minute 2")));
  EXPECT_EQ(reason, RejectReason::kRateLimited);
  EXPECT_EQ(retry, absl::Seconds(20));  // The next token at 30 s.
  EXPECT_THAT(admission.Admit("a", kT0 + absl::Seconds(30), &reason, &retry), IsOk());
  admission.Release("a");
  // b's bucket is still full.
  ASSERT_THAT(admission.Admit("b", kT0, &reason, &retry), IsOk());
  admission.Release("b");
  EXPECT_THAT(admission.Admit("b", kT0, &reason, &retry), IsOk());
}

TEST(AdmissionTest, DrainingRefusesNewUploads) {
  Admission admission({10, 0});
  RejectReason reason = RejectReason::kInternal;
  EXPECT_THAT(admission.CheckOpen(&reason), IsOk());
  admission.BeginDrain();
  EXPECT_THAT(admission.CheckOpen(&reason),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_EQ(reason, RejectReason::kDraining);
}

// --- Task waiters.

TaskInfo Task(TaskInfo::Kind kind) {
  TaskInfo task;
  task.kind = kind;
  return task;
}

TEST(TaskWaitersTest, ReleasesAnsweredAndTimedOutWaitersInOrder) {
  TaskWaiters waiters;
  std::vector<std::string> ran;
  auto record = [&ran](std::string name) {
    return [&ran, name](absl::StatusOr<TaskInfo>) { ran.push_back(name); };
  };
  const uint64_t a = waiters.Add({"a", "ta", kT0 + absl::Seconds(5), record("a")});
  const uint64_t b = waiters.Add({"b", "tb", kT0 + absl::Seconds(1), record("b")});
  const uint64_t c = waiters.Add({"c", "tc", kT0 + absl::Seconds(5), record("c")});
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
  // c's answer is TRAIN now; a and b still WAIT, b's time is up at 2 s.
  auto answer = [](const TaskWaiters::Waiter& w) -> absl::StatusOr<TaskInfo> {
    return Task(w.client_id == "c" ? TaskInfo::Kind::kTrain : TaskInfo::Kind::kWait);
  };
  TaskWaiters::Ready ready = waiters.TakeReady(kT0 + absl::Seconds(2), false, answer);
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0].second->kind, TaskInfo::Kind::kWait);  // b, timed out.
  EXPECT_EQ(ready[1].second->kind, TaskInfo::Kind::kTrain);  // c.
  for (auto& [done, task] : ready) done(task);
  EXPECT_THAT(ran, ElementsAre("b", "c"));
  EXPECT_EQ(waiters.size(), 1u);
  EXPECT_FALSE(waiters.Cancel(c));
  EXPECT_TRUE(waiters.Cancel(a));
  EXPECT_EQ(waiters.size(), 0u);
}

TEST(TaskWaitersTest, AllReleasesEveryWaiterAndErrorsAreAnswers) {
  TaskWaiters waiters;
  waiters.Add({"a", "ta", absl::InfiniteFuture(), [](absl::StatusOr<TaskInfo>) {}});
  waiters.Add({"b", "tb", absl::InfiniteFuture(), [](absl::StatusOr<TaskInfo>) {}});
  // b's session is gone: its answer is the error, whatever `all`.
  auto answer = [](const TaskWaiters::Waiter& w) -> absl::StatusOr<TaskInfo> {
    if (w.client_id == "b") return absl::UnauthenticatedError("no session");
    return Task(TaskInfo::Kind::kWait);
  };
  TaskWaiters::Ready ready = waiters.TakeReady(kT0, false, answer);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_THAT(ready[0].second, StatusIs(absl::StatusCode::kUnauthenticated));
  ready = waiters.TakeReady(kT0, true, answer);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].second->kind, TaskInfo::Kind::kWait);
  EXPECT_EQ(waiters.size(), 0u);
}

// --- Sinks.

UpdateHeaderInfo Header(const std::string& client, uint64_t num_samples, size_t d,
                        compress::CodecSpec codec = {}) {
  UpdateHeaderInfo h;
  h.client_id = client;
  h.update_id = client + "-1";
  h.num_samples = num_samples;
  h.codec = codec;
  h.codec_known = true;
  h.num_params = d;
  h.payload_bytes = 4 * d;
  return h;
}

std::string Bytes(const std::vector<float>& x) {
  return std::string(reinterpret_cast<const char*>(x.data()), 4 * x.size());
}

// The bytes of `x` in pieces split inside floats (as gRPC slices may be).
absl::Status TakeSplit(UpdateSink& sink, SinkSlot& slot, const std::vector<float>& x,
                       RejectReason* why = nullptr) {
  const std::string bytes = Bytes(x);
  const std::vector<absl::string_view> pieces = {absl::string_view(bytes).substr(0, 6),
                                                 absl::string_view(bytes).substr(6)};
  RejectReason reason = RejectReason::kInternal;
  return sink.Take(slot, 0, pieces, why != nullptr ? why : &reason);
}

// No optimizer: the aggregate is published as it is.
absl::Status Keep(float*, size_t, size_t) { return absl::OkStatus(); }

MeanSink::Options MeanOptions(size_t d) {
  MeanSink::Options options;
  options.num_params = d;
  options.max_abs_value = 1e6f;
  options.undo_memory_bytes = 1 << 20;
  options.clock = RealClock::Get();
  options.pool = std::make_shared<BufferPool>(d, 1);
  return options;
}

TEST(MeanSinkTest, WeightedMeanWithoutTheAbortedUpload) {
  MeanSink sink(MeanOptions(4));
  RejectReason reason = RejectReason::kInternal;
  // (1 * (1,2,3,4) + 3 * (5,6,7,8)) / 4 = (4,5,6,7); the aborted upload
  // (weight 2) is subtracted exactly.
  TALLY_ASSERT_OK_AND_ASSIGN(auto a, sink.Open(Header("a", 1, 4), &reason));
  TALLY_ASSERT_OK_AND_ASSIGN(auto b, sink.Open(Header("b", 3, 4), &reason));
  TALLY_ASSERT_OK_AND_ASSIGN(auto c, sink.Open(Header("c", 2, 4), &reason));
  ASSERT_THAT(TakeSplit(sink, *a, {1, 2, 3, 4}), IsOk());
  ASSERT_THAT(TakeSplit(sink, *c, {100, -7.5f, 3e5f, 0.1f}), IsOk());
  ASSERT_THAT(TakeSplit(sink, *b, {5, 6, 7, 8}), IsOk());
  EXPECT_TRUE(sink.Undo(*c));
  SinkBatch batch;
  batch.updates.push_back({sink.Commit(*a, Header("a", 1, 4)), "a", 1, 0});
  batch.updates.push_back({sink.Commit(*b, Header("b", 3, 4)), "b", 3, 0});
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> mean, sink.Combine(batch, Keep));
  EXPECT_THAT(mean, ElementsAre(4, 5, 6, 7));
}

TEST(MeanSinkTest, RefusesNonFiniteValuesAndDecodesCompressedUploads) {
  MeanSink sink(MeanOptions(2));
  RejectReason reason = RejectReason::kInternal;
  TALLY_ASSERT_OK_AND_ASSIGN(auto bad, sink.Open(Header("bad", 1, 2), &reason));
  EXPECT_THAT(TakeSplit(sink, *bad, {1, std::nanf("")}, &reason),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parameter 1")));
  EXPECT_EQ(reason, RejectReason::kNonFinite);
  EXPECT_TRUE(sink.Undo(*bad));
  compress::CodecSpec half;
  half.id = compress::CodecId::kFloat16;
  std::string payload;
  ASSERT_THAT(compress::Encode(half, std::vector<float>{0.5f, -2}, &payload), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto h, sink.Open(Header("h", 1, 2, half), &reason));
  ASSERT_THAT(sink.TakeEncoded(*h, half, payload, &reason), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto f, sink.Open(Header("f", 1, 2), &reason));
  ASSERT_THAT(TakeSplit(sink, *f, {1.5f, 4}), IsOk());
  SinkBatch batch;
  batch.updates.push_back({sink.Commit(*h, Header("h", 1, 2, half)), "h", 1, 0});
  batch.updates.push_back({sink.Commit(*f, Header("f", 1, 2)), "f", 1, 0});
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> mean, sink.Combine(batch, Keep));
  EXPECT_THAT(mean, ElementsAre(1, 1));  // ((0.5, -2) + (1.5, 4)) / 2.
}

TEST(BufferedSinkTest, CombinesWithTheScheduleWeightsBlockByBlock) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry);
  TALLY_ASSERT_OK_AND_ASSIGN(auto step,
                             aggregators::AggregationStep::Create(aggregators::AggregationStepOptions{}));
  BufferedSink sink({/*num_params=*/3, /*max_abs_value=*/1e6f, /*robust=*/false,
                     std::make_shared<BufferPool>(3, 4)},
                    RuleRunner(step.get(), &metrics));
  RejectReason reason = RejectReason::kInternal;
  TALLY_ASSERT_OK_AND_ASSIGN(auto a, sink.Open(Header("a", 1, 3), &reason));
  TALLY_ASSERT_OK_AND_ASSIGN(auto b, sink.Open(Header("b", 1, 3), &reason));
  TALLY_ASSERT_OK_AND_ASSIGN(auto c, sink.Open(Header("c", 1, 3), &reason));
  ASSERT_THAT(TakeSplit(sink, *a, {2, 4, -8}), IsOk());
  ASSERT_THAT(TakeSplit(sink, *b, {4, 8, 16}), IsOk());
  ASSERT_THAT(TakeSplit(sink, *c, {1, 1, 1}), IsOk());
  const aggregators::UpdateHandle ha = sink.Commit(*a, Header("a", 1, 3));
  const aggregators::UpdateHandle hb = sink.Commit(*b, Header("b", 1, 3));
  const aggregators::UpdateHandle hc = sink.Commit(*c, Header("c", 1, 3));
  EXPECT_EQ(sink.stored(), 3u);
  EXPECT_EQ(sink.Drop(hc), "c");
  SinkBatch batch;
  batch.updates.push_back({ha, "a", 0.5, 0});
  batch.updates.push_back({hb, "b", 0.25, 0});
  size_t covered = 0;
  auto block = [&covered](float*, size_t begin, size_t count) {
    EXPECT_EQ(begin, covered);
    covered += count;
    return absl::OkStatus();
  };
  // 0.5 (2, 4, -8) + 0.25 (4, 8, 16) = (2, 4, 0).
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> g, sink.Combine(batch, block));
  EXPECT_THAT(g, ElementsAre(2, 4, 0));
  EXPECT_EQ(covered, 3u);
  EXPECT_EQ(sink.stored(), 0u);
}

TEST(RowSinkTest, MedianOverCommittedRowsAndFreedRows) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry);
  aggregators::AggregationStepOptions options;
  options.rule.name = "median";
  TALLY_ASSERT_OK_AND_ASSIGN(auto step, aggregators::AggregationStep::Create(options));
  RowSink sink({/*num_params=*/2, /*rows=*/3, /*max_abs_value=*/1e6f, "",
                std::make_shared<BufferPool>(2, 1)},
               RuleRunner(step.get(), &metrics));
  RejectReason reason = RejectReason::kInternal;
  TALLY_ASSERT_OK_AND_ASSIGN(auto a, sink.Open(Header("a", 1, 2), &reason));
  TALLY_ASSERT_OK_AND_ASSIGN(auto x, sink.Open(Header("x", 1, 2), &reason));
  TALLY_ASSERT_OK_AND_ASSIGN(auto b, sink.Open(Header("b", 1, 2), &reason));
  // Three rows: a fourth upload finds none until one is freed.
  EXPECT_THAT(sink.Open(Header("d", 1, 2), &reason),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no free update slot")));
  EXPECT_EQ(reason, RejectReason::kNotSelected);
  ASSERT_THAT(TakeSplit(sink, *x, {1e5f, 1e5f}), IsOk());
  EXPECT_TRUE(sink.Undo(*x));
  TALLY_ASSERT_OK_AND_ASSIGN(auto c, sink.Open(Header("c", 1, 2), &reason));
  ASSERT_THAT(TakeSplit(sink, *a, {1, 10}), IsOk());
  ASSERT_THAT(TakeSplit(sink, *b, {2, 20}), IsOk());
  ASSERT_THAT(TakeSplit(sink, *c, {100, -5}), IsOk());
  SinkBatch batch;
  batch.updates.push_back({sink.Commit(*a, Header("a", 1, 2)), "a", 1, 0});
  batch.updates.push_back({sink.Commit(*b, Header("b", 1, 2)), "b", 1, 0});
  batch.updates.push_back({sink.Commit(*c, Header("c", 1, 2)), "c", 1, 0});
  // Coordinate-wise medians of (1, 2, 100) and (10, 20, -5).
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> median, sink.Combine(batch, Keep));
  EXPECT_THAT(median, ElementsAre(2, 10));
}

}  // namespace
}  // namespace tally::server
