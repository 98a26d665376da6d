// The workflow's configuration (server/workflow_config.h): a text config
// with every new field through ParseConfigText, ApplyDefaults and
// ValidateConfig, each refusal naming its field, and the conversions to the
// pure parts in core/ (values checked by hand against docs/workflow.md).
#include "server/workflow_config.h"

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kWorkflowConfig[] = R"pb(
  rounds {
    clients_per_round: 4
    total_rounds: 20
    selection: RANDOM
    sampling_fraction: 0.5
    sampling_seed: 9
    filter { key: "region" value: "eu" }
    min_available_clients: 6
  }
  evaluation {
    every_rounds: 5
    at_end: true
    clients: 3
    timeout_ms: 30000
    aggregation { key: "correct" value: "sum" }
  }
  history { path: "/tmp/run.jsonl" }
  client_config {
    values { key: "lr" value { cosine { max: 0.1 min: 0.001 rounds: 20 } } }
    values { key: "epochs" value { constant: 2 } }
    values { key: "optimizer" value { text: "adam" } }
    values { key: "mu" value { step_decay { initial: 0.01 gamma: 0.5 step_rounds: 5 } } }
  }
  limits { max_metric_names: 8 }
)pb";

tally::v1::ServerConfig Defaulted(const std::string& text) {
  absl::StatusOr<tally::v1::ServerConfig> config = ParseConfigText(text);
  EXPECT_THAT(config.status(), IsOk());
  ApplyDefaults(&*config);
  return *config;
}

// The error of kWorkflowConfig with `edit` applied ("" if valid).
std::string EditedError(void (*edit)(tally::v1::ServerConfig*)) {
  absl::StatusOr<tally::v1::ServerConfig> config = ParseConfigText(kWorkflowConfig);
  EXPECT_THAT(config.status(), IsOk());
  edit(&*config);
  ApplyDefaults(&*config);
  return std::string(ValidateConfig(*config).message());
}

TEST(WorkflowConfigTest, EveryFieldParsesAndValidates) {
  const tally::v1::ServerConfig config = Defaulted(kWorkflowConfig);
  ASSERT_THAT(ValidateConfig(config), IsOk());
  EXPECT_THAT(ValidateConfig(Defaulted("")), IsOk());  // All unset: the defaults are valid.

  const SamplingOptions train = TrainSamplingFromConfig(config.rounds());
  EXPECT_EQ(train.mode, SelectionMode::kRandom);
  EXPECT_EQ(train.count, 4u);
  EXPECT_EQ(train.fraction, 0.5);
  EXPECT_EQ(train.seed, 9u);
  EXPECT_EQ(train.filter, (ClientAttributes{{"region", "eu"}}));
  EXPECT_EQ(MinAvailableClients(config.rounds()), 6u);

  const SamplingOptions evaluation = EvaluationSamplingFromConfig(config);
  EXPECT_EQ(evaluation.mode, SelectionMode::kRandom);
  EXPECT_EQ(evaluation.count, 3u);
  EXPECT_NE(evaluation.seed, train.seed);
  EXPECT_EQ(evaluation.filter, train.filter);
  EXPECT_EQ(EvaluationTimeout(config), absl::Seconds(30));

  const MetricsOptions metrics = MetricsOptionsFromConfig(config);
  EXPECT_EQ(metrics.max_names, 8u);
  EXPECT_EQ(metrics.aggregation.at("correct"), MetricAggregation::kSum);
}

TEST(WorkflowConfigTest, DefaultsOfTheConversions) {
  const tally::v1::ServerConfig config = Defaulted("rounds { clients_per_round: 5 over_selection: 0.2 }");
  const SamplingOptions train = TrainSamplingFromConfig(config.rounds());
  EXPECT_EQ(train.mode, SelectionMode::kFirstCome);
  EXPECT_EQ(train.count, 6u);  // ceil(5 * 1.2)
  EXPECT_EQ(train.seed, 1u);
  EXPECT_EQ(MinAvailableClients(config.rounds()), 1u);
  EXPECT_EQ(EvaluationSamplingFromConfig(config).mode, SelectionMode::kFirstCome);
  EXPECT_EQ(EvaluationSamplingFromConfig(config).count, 5u);
  EXPECT_EQ(EvaluationTimeout(config), absl::Milliseconds(config.rounds().round_timeout_ms()));
  EXPECT_EQ(MaxMetricNames(config.limits()), 32u);
  tally::v1::RoundConfig random;
  random.set_selection(tally::v1::RoundConfig::RANDOM);
  random.set_clients_per_round(7);
  EXPECT_EQ(MinAvailableClients(random), 7u);
}

TEST(WorkflowConfigTest, TaskConfigIsTheSchedulesOfTheRound) {
  const tally::v1::ServerConfig config = Defaulted(kWorkflowConfig);
  const auto schedules = ConfigSchedulesFromConfig(config.client_config());
  tally::v1::Task task;
  SetTaskConfig(schedules, 11, &task);  // t = 10 = T/2 of the cosine.
  ASSERT_EQ(task.config_size(), 4);
  EXPECT_NEAR(task.config().at("lr").number(), 0.0505, 1e-15);  // (0.1 + 0.001) / 2
  EXPECT_EQ(task.config().at("epochs").number(), 2.0);
  EXPECT_EQ(task.config().at("optimizer").text(), "adam");
  EXPECT_DOUBLE_EQ(task.config().at("mu").number(), 0.0025);  // 0.01 * 0.5^floor(10 / 5)
}

TEST(WorkflowConfigTest, RefusalsNameTheField) {
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_rounds()->set_sampling_fraction(1.5);
              }),
              StartsWith("rounds.sampling_fraction"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_rounds()->set_selection(tally::v1::RoundConfig::POISSON);
                c->mutable_rounds()->set_sampling_fraction(0);
              }),
              HasSubstr("POISSON selection needs q"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_rounds()->set_selection(tally::v1::RoundConfig::FIRST_COME);
              }),
              StartsWith("rounds.sampling_fraction: only for"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_schedule()->set_name("fedbuff");
              }),
              StartsWith("rounds.selection: RANDOM"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                (*c->mutable_rounds()->mutable_filter())["re gion"] = "eu";
              }),
              StartsWith("rounds.filter: attribute name"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_evaluation()->set_fraction(-0.1);
              }),
              StartsWith("evaluation.fraction"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                (*c->mutable_evaluation()->mutable_aggregation())["loss"] = "median";
              }),
              StartsWith("evaluation.aggregation['loss']"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_rounds()->set_total_rounds(0);
              }),
              StartsWith("evaluation.at_end"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                (*c->mutable_client_config()->mutable_values())["lr"].mutable_cosine()->set_rounds(0);
              }),
              HasSubstr("client_config 'lr': cosine.rounds"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                (*c->mutable_client_config()->mutable_values())["empty"];
              }),
              HasSubstr("client_config 'empty': set one of"));
  EXPECT_THAT(EditedError([](tally::v1::ServerConfig* c) {
                c->mutable_limits()->set_max_metric_names(1025);
              }),
              StartsWith("limits.max_metric_names"));
}

TEST(WorkflowConfigTest, JoinAttributesAreChecked) {
  tally::v1::JoinRequest request;
  (*request.mutable_attributes())["region"] = "eu";
  (*request.mutable_attributes())["device"] = "gpu";
  absl::StatusOr<ClientAttributes> attributes = AttributesFromJoin(request);
  ASSERT_THAT(attributes.status(), IsOk());
  EXPECT_EQ(*attributes, (ClientAttributes{{"device", "gpu"}, {"region", "eu"}}));

  tally::v1::JoinRequest bad_name;
  (*bad_name.mutable_attributes())["a/b"] = "x";
  EXPECT_THAT(std::string(AttributesFromJoin(bad_name).status().message()), HasSubstr("'a/b'"));
  tally::v1::JoinRequest bad_value;
  (*bad_value.mutable_attributes())["region"] = std::string(129, 'x');
  EXPECT_THAT(std::string(AttributesFromJoin(bad_value).status().message()), HasSubstr("'region'"));
  tally::v1::JoinRequest control;
  (*control.mutable_attributes())["region"] = "e\tu";
  EXPECT_FALSE(AttributesFromJoin(control).ok());
  tally::v1::JoinRequest many;
  for (int i = 0; i < 17; ++i) (*many.mutable_attributes())[absl::StrCat("k", i)] = "v";
  EXPECT_THAT(std::string(AttributesFromJoin(many).status().message()), HasSubstr("at most 16"));
}

TEST(WorkflowConfigTest, MetricsFromTheWire) {
  tally::v1::UpdateHeader header;
  (*header.mutable_metrics())["loss"] = 0.5;
  absl::StatusOr<std::map<std::string, double>> metrics = MetricsFromProto(header.metrics(), 32);
  ASSERT_THAT(metrics.status(), IsOk());
  EXPECT_EQ(metrics->at("loss"), 0.5);
  (*header.mutable_metrics())["nan"] = std::nan("");
  EXPECT_THAT(std::string(MetricsFromProto(header.metrics(), 32).status().message()), StartsWith("metrics: "));
}

TEST(WorkflowConfigTest, HistoryAsTheAdminAnswer) {
  absl::StatusOr<std::unique_ptr<RunHistory>> history = RunHistory::Open("");
  ASSERT_THAT(history.status(), IsOk());
  HistoryRecord fit;
  fit.round = 1;
  fit.model_version = 1;
  fit.participants = 2;
  fit.metrics = {{"loss", 0.5}};
  fit.decisions = {{"rule", "median"}};
  ASSERT_THAT((*history)->Append(fit), IsOk());
  HistoryRecord evaluate;
  evaluate.kind = HistoryRecord::Kind::kEvaluate;
  evaluate.round = 2;
  evaluate.evaluation_id = 1;
  evaluate.metrics = {{"accuracy", 0.9}};
  ASSERT_THAT((*history)->Append(evaluate), IsOk());
  tally::v1::GetHistoryRequest request;
  tally::v1::RunHistory all = HistoryToProto(**history, request);
  ASSERT_EQ(all.records_size(), 2);
  EXPECT_EQ(all.records(0).kind(), "fit");
  EXPECT_EQ(all.records(0).metrics().at("loss"), 0.5);
  EXPECT_EQ(all.records(0).decisions().at("rule"), "median");
  EXPECT_EQ(all.records(1).kind(), "evaluate");
  EXPECT_EQ(all.records(1).evaluation_id(), 1u);
  request.set_after_round(1);
  tally::v1::RunHistory later = HistoryToProto(**history, request);
  ASSERT_EQ(later.records_size(), 1);
  EXPECT_EQ(later.records(0).kind(), "evaluate");
}

}  // namespace
}  // namespace tally::server
