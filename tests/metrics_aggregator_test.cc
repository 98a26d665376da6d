// Client metrics combined per round (core/metrics_aggregator.h). Expected
// values are hand computations from the definitions in
// docs/workflow.md#metrics.
#include "core/metrics_aggregator.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

TEST(MetricsAggregatorTest, WeightedMeanOfTwoClients) {
  MetricsAggregator metrics({});
  metrics.Add(100, {{"loss", 0.5}, {"accuracy", 0.8}});
  metrics.Add(300, {{"loss", 0.3}, {"accuracy", 0.9}});
  EXPECT_EQ(metrics.reports(), 2u);
  const std::map<std::string, double> round = metrics.TakeRound();
  // loss: (100 * 0.5 + 300 * 0.3) / 400 = 140 / 400; accuracy: (80 + 270) / 400.
  EXPECT_DOUBLE_EQ(round.at("loss"), 0.35);
  EXPECT_DOUBLE_EQ(round.at("accuracy"), 0.875);
  EXPECT_EQ(metrics.reports(), 0u);
  EXPECT_TRUE(metrics.TakeRound().empty());  // Reset for the next round.
}

TEST(MetricsAggregatorTest, SumMinMaxPerName) {
  MetricsOptions options;
  options.aggregation = {{"correct", MetricAggregation::kSum},
                         {"worst_loss", MetricAggregation::kMax},
                         {"best_loss", MetricAggregation::kMin}};
  MetricsAggregator metrics(options);
  metrics.Add(100, {{"correct", 80}, {"worst_loss", 0.5}, {"best_loss", 0.5}});
  metrics.Add(300, {{"correct", 270}, {"worst_loss", 0.3}, {"best_loss", 0.3}});
  metrics.Add(50, {{"correct", 45}, {"worst_loss", 0.7}, {"best_loss", 0.7}});
  const std::map<std::string, double> round = metrics.TakeRound();
  EXPECT_EQ(round.at("correct"), 395.0);  // 80 + 270 + 45, unweighted.
  EXPECT_EQ(round.at("worst_loss"), 0.7);
  EXPECT_EQ(round.at("best_loss"), 0.3);
  EXPECT_EQ(metrics.AggregationOf("loss"), MetricAggregation::kWeightedMean);
}

TEST(MetricsAggregatorTest, ANameIsAveragedOverTheClientsThatSentIt) {
  MetricsAggregator metrics({});
  metrics.Add(100, {{"loss", 1.0}});
  metrics.Add(300, {{"loss", 2.0}, {"f1", 0.6}});
  const std::map<std::string, double> round = metrics.TakeRound();
  EXPECT_DOUBLE_EQ(round.at("loss"), 1.75);  // (100 + 600) / 400
  EXPECT_EQ(round.at("f1"), 0.6);             // Only the second client.
}

TEST(MetricsAggregatorTest, NamesBeyondTheCapAreDroppedAndCounted) {
  MetricsOptions options;
  options.max_names = 2;
  MetricsAggregator metrics(options);
  EXPECT_EQ(metrics.Add(1, {{"a", 1}, {"b", 2}, {"c", 3}}), 1u);  // "c" is the third name.
  EXPECT_EQ(metrics.dropped_total(), 1u);
  EXPECT_EQ(metrics.TakeRound().size(), 2u);
  // Admitted names stay admitted; "c" and "d" are refused in later rounds.
  EXPECT_EQ(metrics.Add(1, {{"a", 5}, {"c", 3}, {"d", 4}}), 2u);
  EXPECT_EQ(metrics.dropped_total(), 3u);
  const std::map<std::string, double> round = metrics.TakeRound();
  ASSERT_EQ(round.size(), 1u);
  EXPECT_EQ(round.at("a"), 5.0);
  EXPECT_EQ(metrics.names(), (std::set<std::string>{"a", "b"}));
}

TEST(MetricsAggregatorTest, ValidationOfNamesAndValues) {
  EXPECT_THAT(ValidateMetrics({{"loss", 0.1}, {"val accuracy", 1}}, 32), IsOk());
  EXPECT_THAT(ValidateMetrics({{std::string(64, 'n'), 0}}, 32), IsOk());
  EXPECT_THAT(ValidateMetrics({{std::string(65, 'n'), 0}}, 32),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateMetrics({{"", 0}}, 32), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateMetrics({{"a\nb", 0}}, 32).message(), HasSubstr("0x0a"));
  EXPECT_THAT(ValidateMetrics({{"caf\xc3\xa9", 0}}, 32),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateMetrics({{"loss", std::nan("")}}, 32).message(), HasSubstr("finite"));
  EXPECT_THAT(ValidateMetrics({{"loss", std::numeric_limits<double>::infinity()}}, 32),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateMetrics({{"a", 1}, {"b", 2}, {"c", 3}}, 2).message(),
              HasSubstr("3 metrics, more than the 2"));
}

TEST(MetricsAggregatorTest, AggregationNames) {
  for (MetricAggregation a : {MetricAggregation::kWeightedMean, MetricAggregation::kSum,
                              MetricAggregation::kMin, MetricAggregation::kMax}) {
    absl::StatusOr<MetricAggregation> parsed = ParseMetricAggregation(MetricAggregationName(a));
    ASSERT_THAT(parsed.status(), IsOk());
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_THAT(ParseMetricAggregation("mean").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally
