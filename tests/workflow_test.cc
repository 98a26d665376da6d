// server/workflow.h: the calls the round driver and the RPC handlers make,
// on a ManualClock and a real history file, with hand-computed aggregates:
// Join attributes and filtered selection, per-round config, fit metrics
// into the history and status, an evaluation from sampling to its record
// (complete, timed out, queued, refused reports), the metric name cap.
#include "server/workflow.h"

#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;

const absl::Time kStart = absl::FromUnixSeconds(1765152000);

std::string TempPath(const std::string& name) {
  const std::string path = ::testing::TempDir() + "/workflow_test_" + name;
  std::remove(path.c_str());
  return path;
}

std::unique_ptr<Workflow> Make(const std::string& text, ManualClock* clock) {
  absl::StatusOr<tally::v1::ServerConfig> config = ParseConfigText(text);
  EXPECT_THAT(config.status(), IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(ValidateConfig(*config), IsOk());
  absl::StatusOr<std::unique_ptr<Workflow>> workflow = Workflow::Create(*config, clock);
  EXPECT_THAT(workflow.status(), IsOk());
  return workflow.ok() ? *std::move(workflow) : nullptr;
}

absl::Status Join(Workflow& workflow, const std::string& id,
                  const std::map<std::string, std::string>& attributes = {}) {
  tally::v1::JoinRequest request;
  request.set_client_id(id);
  request.mutable_attributes()->insert(attributes.begin(), attributes.end());
  return workflow.OnJoin(id, request);
}

tally::v1::EvaluationReport Report(uint64_t id, uint64_t version, uint64_t examples,
                                   const std::map<std::string, double>& metrics) {
  tally::v1::EvaluationReport report;
  report.set_evaluation_id(id);
  report.set_model_version(version);
  report.set_num_examples(examples);
  report.mutable_metrics()->insert(metrics.begin(), metrics.end());
  return report;
}

RoundOutcome Outcome(uint64_t round) {
  RoundOutcome outcome;
  outcome.round = round;
  outcome.model_version = round + 1;  // The initial model is version 1.
  outcome.participants = 2;
  outcome.bytes_received = 64;
  outcome.num_examples = 400;
  return outcome;
}

TEST(WorkflowTest, AttributesAndAFilteredSelection) {
  ManualClock clock(kStart);
  auto workflow = Make(R"pb(rounds { clients_per_round: 2 filter { key: "region" value: "eu" } })pb",
                       &clock);
  ASSERT_THAT(Join(*workflow, "a", {{"region", "eu"}}), IsOk());
  ASSERT_THAT(Join(*workflow, "b", {{"region", "us"}}), IsOk());
  ASSERT_THAT(Join(*workflow, "c", {{"region", "eu"}, {"device", "gpu"}}), IsOk());
  ASSERT_THAT(Join(*workflow, "d"), IsOk());
  EXPECT_THAT(Join(*workflow, "e", {{"re gion", "eu"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // First come among the matching, in arrival order.
  EXPECT_THAT(workflow->SelectForRound(1, {"d", "c", "b", "a"}), ElementsAre("c", "a"));
  // A re-join with other attributes replaces them.
  ASSERT_THAT(Join(*workflow, "c", {{"region", "us"}}), IsOk());
  EXPECT_THAT(workflow->SelectForRound(1, {"d", "c", "b", "a"}), ElementsAre("a"));
  workflow->OnLeave("a");  // Unknown ids have no attributes: never match a filter.
  EXPECT_TRUE(workflow->SelectForRound(2, {"a", "b"}).empty());
}

TEST(WorkflowTest, TrainTasksCarryTheRoundsConfig) {
  ManualClock clock(kStart);
  auto workflow = Make(R"pb(client_config {
                              values { key: "lr" value { cosine { max: 0.1 min: 0.001 rounds: 40 } } }
                              values { key: "opt" value { text: "sgd" } }
                            })pb",
                       &clock);
  tally::v1::Task task;
  workflow->SetTrainConfig(21, &task);  // t = 20 = T/2: (0.1 + 0.001) / 2.
  EXPECT_NEAR(task.config().at("lr").number(), 0.0505, 1e-15);
  EXPECT_EQ(task.config().at("opt").text(), "sgd");
}

TEST(WorkflowTest, FitMetricsGoToTheHistoryAndTheStatus) {
  ManualClock clock(kStart);
  const std::string path = TempPath("fit.jsonl");
  auto workflow = Make(absl::StrCat("history { path: \"", path, "\" }"), &clock);
  tally::v1::UpdateHeader header;
  (*header.mutable_metrics())["loss"] = 0.5;
  absl::StatusOr<std::map<std::string, double>> metrics = workflow->CheckMetrics(header);
  ASSERT_THAT(metrics.status(), IsOk());
  workflow->AddFitMetrics(100, *metrics);
  workflow->AddFitMetrics(300, {{"loss", 0.3}});
  (*header.mutable_metrics())["bad"] = std::numeric_limits<double>::infinity();
  EXPECT_THAT(workflow->CheckMetrics(header).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  RoundOutcome outcome = Outcome(1);
  outcome.decisions = {{"rule", "mean"}};
  const std::map<std::string, double> fit = workflow->OnRoundCompleted(outcome);
  EXPECT_DOUBLE_EQ(fit.at("loss"), 0.35);  // (50 + 90) / 400
  EXPECT_EQ(MetricsText(fit), "loss=0.35");
  EXPECT_THAT(workflow->TakeHistoryError(), IsOk());

  absl::StatusOr<std::vector<HistoryRecord>> records = ReadHistoryFile(path);
  ASSERT_THAT(records.status(), IsOk());
  ASSERT_EQ(records->size(), 1u);
  const HistoryRecord& r = (*records)[0];
  EXPECT_EQ(r.kind, HistoryRecord::Kind::kFit);
  EXPECT_EQ(r.unix_ms, absl::ToUnixMillis(kStart));
  EXPECT_EQ(r.round, 1u);
  EXPECT_EQ(r.model_version, 2u);
  EXPECT_EQ(r.participants, 2u);
  EXPECT_EQ(r.bytes_received, 64u);
  EXPECT_EQ(r.decisions.at("rule"), "mean");

  tally::v1::ServerStatus status;
  workflow->FillStatus(&status);
  EXPECT_DOUBLE_EQ(status.fit_metrics().at("loss"), 0.35);
  EXPECT_EQ(status.fit_metrics_round(), 1u);
  EXPECT_EQ(status.history_path(), path);
  EXPECT_EQ(workflow->History({}).records_size(), 1);
}

TEST(WorkflowTest, AnEvaluationFromSamplingToItsRecord) {
  ManualClock clock(kStart);
  const std::string path = TempPath("evaluate.jsonl");
  auto workflow = Make(absl::StrCat(R"pb(evaluation { every_rounds: 2 clients: 2 }
                                         history { path: ")pb",
                                    path, "\" }"),
                       &clock);
  ASSERT_THAT(Join(*workflow, "relay-1", {{"tally.role", "relay"}}), IsOk());  // Never asked.
  for (const char* id : {"a", "b", "c"}) ASSERT_THAT(Join(*workflow, id), IsOk());
  tally::v1::Task task;
  workflow->OnRoundCompleted(Outcome(1));
  EXPECT_FALSE(workflow->EvaluationPending());
  EXPECT_THAT(workflow->Report("a", Report(1, 2, 10, {})).status(),
              StatusIs(absl::StatusCode::kAborted));  // None is open.
  workflow->OnRoundCompleted(Outcome(2));  // Due: version 3, first come asks a and b.
  EXPECT_TRUE(workflow->EvaluationPending());
  ASSERT_TRUE(workflow->EvaluationTask("a", 3, &task));
  EXPECT_EQ(task.kind(), tally::v1::Task::EVALUATE);
  EXPECT_EQ(task.model_version(), 3u);
  EXPECT_EQ(task.round(), 2u);
  EXPECT_EQ(task.evaluation().evaluation_id(), 1u);
  EXPECT_EQ(task.deadline_unix_ms(), absl::ToUnixMillis(kStart + absl::Minutes(10)));
  tally::v1::Task other;
  EXPECT_FALSE(workflow->EvaluationTask("c", 3, &other));  // Not asked.
  EXPECT_FALSE(workflow->EvaluationTask("relay-1", 3, &other));
  EXPECT_THAT(workflow->Report("c", Report(1, 3, 10, {})).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  absl::StatusOr<tally::v1::EvaluationAck> ack =
      workflow->Report("a", Report(1, 3, 100, {{"accuracy", 0.9}}));
  ASSERT_THAT(ack.status(), IsOk());
  EXPECT_EQ(ack->reports_received(), 1u);
  EXPECT_TRUE(workflow->Poll().empty());  // b has not reported.
  ASSERT_THAT(workflow->Report("b", Report(1, 3, 300, {{"accuracy", 0.5}})).status(), IsOk());
  const std::vector<EvaluationResult> closed = workflow->Poll();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_DOUBLE_EQ(closed[0].metrics.at("accuracy"), 0.6);  // (90 + 150) / 400
  EXPECT_FALSE(workflow->EvaluationPending());

  tally::v1::ServerStatus status;
  workflow->FillStatus(&status);
  EXPECT_DOUBLE_EQ(status.evaluation_metrics().at("accuracy"), 0.6);
  EXPECT_EQ(status.evaluation_version(), 3u);
  EXPECT_EQ(status.evaluations_completed(), 1u);
  absl::StatusOr<std::vector<HistoryRecord>> records = ReadHistoryFile(path);
  ASSERT_THAT(records.status(), IsOk());
  ASSERT_EQ(records->size(), 3u);  // fit 1, fit 2, evaluate.
  const HistoryRecord& r = (*records)[2];
  EXPECT_EQ(r.kind, HistoryRecord::Kind::kEvaluate);
  EXPECT_EQ(r.round, 2u);
  EXPECT_EQ(r.model_version, 3u);
  EXPECT_EQ(r.participants, 2u);
  EXPECT_EQ(r.num_examples, 400u);
  EXPECT_EQ(r.evaluation_id, 1u);
}

TEST(WorkflowTest, AnEvaluationClosesAtItsDeadlineAndDueOnesWait) {
  ManualClock clock(kStart);
  auto workflow = Make(R"pb(rounds { total_rounds: 3 }
                            evaluation { every_rounds: 1 at_end: true clients: 3 timeout_ms: 5000 })pb",
                       &clock);
  for (const char* id : {"a", "b", "c"}) ASSERT_THAT(Join(*workflow, id), IsOk());
  workflow->OnRoundCompleted(Outcome(1));
  workflow->OnRoundCompleted(Outcome(2));  // Queued behind evaluation 1.
  workflow->OnRoundCompleted(Outcome(3));  // The newest replaces the queued one.
  ASSERT_THAT(workflow->Report("a", Report(1, 2, 50, {{"loss", 0.4}})).status(), IsOk());
  workflow->OnLeave("b");  // Not waited for any more.
  clock.Advance(absl::Milliseconds(4999));
  EXPECT_TRUE(workflow->Poll().empty());  // c is still expected.
  clock.Advance(absl::Milliseconds(1));
  std::vector<EvaluationResult> closed = workflow->Poll();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_TRUE(closed[0].timed_out);
  EXPECT_EQ(closed[0].asked, 3u);
  EXPECT_EQ(closed[0].reported, 1u);
  EXPECT_EQ(closed[0].metrics.at("loss"), 0.4);
  EXPECT_EQ(EvaluationText(closed[0]),
            "evaluation 1 of version 2 (round 1): 1 of 3 clients, 50 examples, closed at its "
            "timeout: loss=0.4");
  // The final model's evaluation (round 3, version 4) started at once.
  EXPECT_TRUE(workflow->EvaluationPending());
  tally::v1::Task task;
  ASSERT_TRUE(workflow->EvaluationTask("c", 4, &task));
  EXPECT_EQ(task.model_version(), 4u);
  EXPECT_EQ(task.evaluation().evaluation_id(), 2u);
  EXPECT_FALSE(workflow->EvaluationTask("b", 4, &task));  // Left.
  EXPECT_THAT(workflow->Report("c", Report(1, 2, 5, {})).status(),
              StatusIs(absl::StatusCode::kAborted));  // The closed one.
  ASSERT_THAT(workflow->Report("a", Report(2, 4, 10, {{"loss", 0.2}})).status(), IsOk());
  ASSERT_THAT(workflow->Report("c", Report(2, 4, 30, {{"loss", 0.1}})).status(), IsOk());
  closed = workflow->Poll();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_FALSE(closed[0].timed_out);
  EXPECT_DOUBLE_EQ(closed[0].metrics.at("loss"), 0.125);  // (2 + 3) / 40
  EXPECT_FALSE(workflow->EvaluationPending());
}

TEST(WorkflowTest, MetricNamesOverTheCapAreCounted) {
  ManualClock clock(kStart);
  auto workflow = Make("limits { max_metric_names: 2 }", &clock);
  workflow->AddFitMetrics(1, {{"a", 1}, {"b", 2}});
  workflow->AddFitMetrics(1, {{"c", 3}});
  EXPECT_EQ(workflow->OnRoundCompleted(Outcome(1)).size(), 2u);
  tally::v1::ServerStatus status;
  workflow->FillStatus(&status);
  EXPECT_EQ(status.metric_names_dropped(), 1u);
  tally::v1::UpdateHeader header;
  for (const char* name : {"x", "y", "z"}) (*header.mutable_metrics())[name] = 1;
  EXPECT_THAT(workflow->CheckMetrics(header).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));  // 3 entries > 2.
}

TEST(WorkflowTest, AnUnwritableHistoryPathFailsCreate) {
  ManualClock clock(kStart);
  absl::StatusOr<tally::v1::ServerConfig> config =
      ParseConfigText("history { path: \"/nonexistent-dir/run.jsonl\" }");
  ASSERT_THAT(config.status(), IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(Workflow::Create(*config, &clock).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally::server
