// One federated evaluation (core/evaluation_round.h): who was asked, who
// reported, refusals, the deadline and the weighted aggregate (computed by
// hand).
#include "core/evaluation_round.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(EvaluationRoundTest, AggregatesWhenEveryAskedClientReported) {
  MetricsAggregator metrics({});
  EvaluationRound evaluation(/*evaluation_id=*/4, /*model_version=*/10, /*round=*/10,
                             {"a", "b"}, kStart + absl::Seconds(60), &metrics);
  EXPECT_TRUE(evaluation.ShouldEvaluate("a"));
  EXPECT_FALSE(evaluation.ShouldEvaluate("c"));
  absl::StatusOr<uint32_t> first = evaluation.Report("a", 4, 10, 100, {{"accuracy", 0.9}}, 32);
  ASSERT_THAT(first.status(), IsOk());
  EXPECT_EQ(*first, 1u);
  EXPECT_FALSE(evaluation.ShouldEvaluate("a"));
  EXPECT_FALSE(evaluation.Complete(kStart));
  ASSERT_THAT(evaluation.Report("b", 4, 10, 300, {{"accuracy", 0.5}}, 32).status(), IsOk());
  EXPECT_TRUE(evaluation.Complete(kStart));
  const EvaluationResult result = evaluation.Finish(kStart);
  EXPECT_EQ(result.evaluation_id, 4u);
  EXPECT_EQ(result.model_version, 10u);
  EXPECT_EQ(result.asked, 2u);
  EXPECT_EQ(result.reported, 2u);
  EXPECT_EQ(result.num_examples, 400u);
  EXPECT_FALSE(result.timed_out);
  EXPECT_DOUBLE_EQ(result.metrics.at("accuracy"), 0.6);  // (90 + 150) / 400
}

TEST(EvaluationRoundTest, RefusalsRecordNothing) {
  MetricsAggregator metrics({});
  EvaluationRound evaluation(2, 5, 5, {"a", "b"}, kStart + absl::Seconds(60), &metrics);
  EXPECT_THAT(evaluation.Report("a", 1, 5, 10, {}, 32).status(),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(evaluation.Report("x", 2, 5, 10, {}, 32).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(evaluation.Report("a", 2, 4, 10, {}, 32).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(evaluation.Report("a", 2, 5, 0, {}, 32).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(evaluation.Report("a", 2, 5, 10, {{"loss", std::nan("")}}, 32).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(evaluation.Report("a", 2, 5, 10, {{"l1", 1}, {"l2", 2}}, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(metrics.reports(), 0u);
  ASSERT_THAT(evaluation.Report("a", 2, 5, 10, {{"loss", 1}}, 32).status(), IsOk());
  EXPECT_THAT(evaluation.Report("a", 2, 5, 10, {{"loss", 3}}, 32).status(),
              StatusIs(absl::StatusCode::kAlreadyExists));
  evaluation.Forget("b");
  EXPECT_THAT(evaluation.Report("b", 2, 5, 10, {}, 32).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(evaluation.Complete(kStart));  // "b" left: nobody is waited for.
  const EvaluationResult result = evaluation.Finish(kStart);
  EXPECT_EQ(result.reported, 1u);
  EXPECT_EQ(result.metrics.at("loss"), 1.0);  // The duplicate's 3 was not taken.
  EXPECT_THAT(evaluation.Report("a", 2, 5, 10, {}, 32).status(),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_FALSE(evaluation.ShouldEvaluate("a"));
}

TEST(EvaluationRoundTest, ClosesAtTheDeadlineWithWhatWasReported) {
  MetricsAggregator metrics({});
  EvaluationRound evaluation(1, 3, 3, {"a", "b", "c"}, kStart + absl::Seconds(30), &metrics);
  ASSERT_THAT(evaluation.Report("c", 1, 3, 50, {{"loss", 0.4}}, 32).status(), IsOk());
  EXPECT_FALSE(evaluation.Complete(kStart + absl::Seconds(29)));
  EXPECT_TRUE(evaluation.Complete(kStart + absl::Seconds(30)));
  const EvaluationResult result = evaluation.Finish(kStart + absl::Seconds(30));
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.asked, 3u);
  EXPECT_EQ(result.reported, 1u);
  EXPECT_EQ(result.metrics.at("loss"), 0.4);
}

TEST(EvaluationRoundTest, NobodyReportingGivesNoMetrics) {
  MetricsAggregator metrics({});
  EvaluationRound evaluation(1, 3, 3, {"a"}, kStart, &metrics);
  const EvaluationResult result = evaluation.Finish(kStart);
  EXPECT_TRUE(result.timed_out);
  EXPECT_TRUE(result.metrics.empty());
}

TEST(EvaluationRoundTest, WhenAnEvaluationIsDue) {
  EXPECT_FALSE(EvaluationDue(0, 1, true, 0));
  EXPECT_TRUE(EvaluationDue(5, 5, false, 0));
  EXPECT_FALSE(EvaluationDue(6, 5, false, 0));
  EXPECT_TRUE(EvaluationDue(10, 5, false, 12));
  EXPECT_TRUE(EvaluationDue(12, 5, true, 12));   // The end.
  EXPECT_FALSE(EvaluationDue(12, 5, false, 12));
  EXPECT_TRUE(EvaluationDue(7, 0, true, 7));     // Only at the end.
  EXPECT_FALSE(EvaluationDue(6, 0, true, 7));
  EXPECT_FALSE(EvaluationDue(3, 0, false, 3));
}

}  // namespace
}  // namespace tally
