#include "server/workflow_config.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/config.h"

namespace tally::server {
namespace {

using tally::v1::RoundConfig;
using tally::v1::ServerConfig;

constexpr uint32_t kDefaultMaxMetricNames = 32;
constexpr uint32_t kMaxMetricNamesLimit = 1024;
constexpr size_t kMaxConfigValues = 64;
// Evaluation samples are drawn with another seed than the rounds'.
constexpr uint64_t kEvaluationSeedSalt = 0x6576616c75617465ULL;  // "evaluate"

template <typename... Parts>
absl::Status Invalid(const Parts&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(parts...));
}

ConfigScheduleSpec ScheduleFromProto(const tally::v1::ConfigSchedule& proto) {
  ConfigScheduleSpec spec;
  switch (proto.kind_case()) {
    case tally::v1::ConfigSchedule::kText:
      spec.kind = ConfigScheduleSpec::Kind::kText;
      spec.text = proto.text();
      break;
    case tally::v1::ConfigSchedule::kStepDecay:
      spec.kind = ConfigScheduleSpec::Kind::kStepDecay;
      spec.initial = proto.step_decay().initial();
      spec.gamma = proto.step_decay().gamma();
      spec.step_rounds = proto.step_decay().step_rounds();
      break;
    case tally::v1::ConfigSchedule::kCosine:
      spec.kind = ConfigScheduleSpec::Kind::kCosine;
      spec.max = proto.cosine().max();
      spec.min = proto.cosine().min();
      spec.rounds = proto.cosine().rounds();
      break;
    default:
      spec.number = proto.constant();
      break;
  }
  return spec;
}

absl::Status ValidateSelection(const ServerConfig& config) {
  const RoundConfig& rounds = config.rounds();
  const double fraction = rounds.sampling_fraction();
  if (!(fraction >= 0 && fraction <= 1)) {
    return Invalid("rounds.sampling_fraction: ", fraction, " must be in [0, 1]");
  }
  if (rounds.selection() == RoundConfig::POISSON && fraction == 0) {
    return Invalid("rounds.sampling_fraction: POISSON selection needs q in (0, 1]");
  }
  if (rounds.selection() == RoundConfig::FIRST_COME && fraction != 0) {
    return Invalid("rounds.sampling_fraction: only for selection RANDOM or POISSON");
  }
  if (rounds.selection() != RoundConfig::FIRST_COME) {
    if (IsAsyncSchedule(config.schedule())) {
      return Invalid("rounds.selection: ", RoundConfig::Selection_Name(rounds.selection()),
                     " selects the clients of synchronous rounds; asynchronous schedules take "
                     "clients as they come (leave it FIRST_COME)");
    }
    if (!config.relay().upstream().empty()) {
      return Invalid("rounds.selection: a relay takes its clients first come");
    }
  }
  for (const auto& [name, value] : rounds.filter()) {
    if (absl::Status s = ValidateClientAttribute(name, value); !s.ok()) {
      return Invalid("rounds.filter: ", s.message());
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateEvaluation(const ServerConfig& config) {
  const tally::v1::EvaluationConfig& evaluation = config.evaluation();
  if (!(evaluation.fraction() >= 0 && evaluation.fraction() <= 1)) {
    return Invalid("evaluation.fraction: ", evaluation.fraction(), " must be in [0, 1]");
  }
  if (evaluation.clients() > 100000) {
    return Invalid("evaluation.clients: ", evaluation.clients(), " > 100000");
  }
  for (const auto& [name, aggregation] : evaluation.aggregation()) {
    if (absl::Status s = ValidateMetricName(name); !s.ok()) {
      return Invalid("evaluation.aggregation: ", s.message());
    }
    if (absl::StatusOr<MetricAggregation> a = ParseMetricAggregation(aggregation); !a.ok()) {
      return Invalid("evaluation.aggregation['", name, "']: ", a.status().message());
    }
  }
  const bool evaluates = evaluation.every_rounds() > 0 || evaluation.at_end();
  if (evaluates && !config.relay().upstream().empty()) {
    return Invalid("evaluation: a relay does not evaluate (configure it on the upstream)");
  }
  if (evaluation.at_end() && config.rounds().total_rounds() == 0) {
    return Invalid("evaluation.at_end: needs rounds.total_rounds (a run without an end)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateWorkflowConfig(const ServerConfig& config) {
  if (absl::Status s = ValidateSelection(config); !s.ok()) return s;
  if (absl::Status s = ValidateEvaluation(config); !s.ok()) return s;
  const auto& values = config.client_config().values();
  if (values.size() > kMaxConfigValues) {
    return Invalid("client_config.values: ", values.size(), " entries, at most 64");
  }
  for (const auto& [name, schedule] : values) {
    if (schedule.kind_case() == tally::v1::ConfigSchedule::KIND_NOT_SET) {
      return Invalid("client_config '", name,
                     "': set one of constant, text, step_decay or cosine");
    }
    if (absl::Status s = ValidateConfigSchedule(name, ScheduleFromProto(schedule)); !s.ok()) {
      return s;
    }
  }
  if (config.limits().max_metric_names() > kMaxMetricNamesLimit) {
    return Invalid("limits.max_metric_names: ", config.limits().max_metric_names(),
                   " must be at most 1024");
  }
  return absl::OkStatus();
}

std::map<std::string, ConfigScheduleSpec> ConfigSchedulesFromConfig(
    const tally::v1::ClientConfig& config) {
  std::map<std::string, ConfigScheduleSpec> schedules;
  for (const auto& [name, schedule] : config.values()) {
    schedules.emplace(name, ScheduleFromProto(schedule));
  }
  return schedules;
}

void SetTaskConfig(const std::map<std::string, ConfigScheduleSpec>& schedules, uint64_t round,
                   tally::v1::Task* task) {
  auto* config = task->mutable_config();
  config->clear();
  for (auto& [name, value] : ConfigValuesAt(schedules, round)) {
    tally::v1::ConfigValue& out = (*config)[name];
    if (const double* number = std::get_if<double>(&value)) {
      out.set_number(*number);
    } else {
      out.set_text(std::get<std::string>(std::move(value)));
    }
  }
}

SamplingOptions TrainSamplingFromConfig(const RoundConfig& rounds) {
  SamplingOptions options;
  switch (rounds.selection()) {
    case RoundConfig::RANDOM:
      options.mode = SelectionMode::kRandom;
      break;
    case RoundConfig::POISSON:
      options.mode = SelectionMode::kPoisson;
      break;
    default:
      options.mode = SelectionMode::kFirstCome;
      break;
  }
  options.count = SelectedPerRound(rounds);
  options.fraction = rounds.sampling_fraction();
  options.seed = rounds.sampling_seed() != 0 ? rounds.sampling_seed() : 1;
  options.filter = ClientAttributes(rounds.filter().begin(), rounds.filter().end());
  return options;
}

SamplingOptions EvaluationSamplingFromConfig(const ServerConfig& config) {
  SamplingOptions options = TrainSamplingFromConfig(config.rounds());
  if (options.mode != SelectionMode::kFirstCome) options.mode = SelectionMode::kRandom;
  const tally::v1::EvaluationConfig& evaluation = config.evaluation();
  options.count = evaluation.clients() != 0 ? evaluation.clients()
                                            : config.rounds().clients_per_round();
  options.fraction = evaluation.fraction();
  if (options.mode == SelectionMode::kFirstCome && options.fraction > 0) {
    options.mode = SelectionMode::kRandom;  // A fraction of those available: sampled.
  }
  options.seed ^= kEvaluationSeedSalt;
  return options;
}

uint32_t MinAvailableClients(const RoundConfig& rounds) {
  if (rounds.min_available_clients() != 0) return rounds.min_available_clients();
  return rounds.selection() == RoundConfig::RANDOM ? std::max(rounds.clients_per_round(), 1u) : 1;
}

absl::Duration EvaluationTimeout(const ServerConfig& config) {
  const uint32_t ms = config.evaluation().timeout_ms() != 0 ? config.evaluation().timeout_ms()
                                                            : config.rounds().round_timeout_ms();
  return absl::Milliseconds(ms);
}

size_t MaxMetricNames(const tally::v1::LimitsConfig& limits) {
  return limits.max_metric_names() != 0 ? limits.max_metric_names() : kDefaultMaxMetricNames;
}

MetricsOptions MetricsOptionsFromConfig(const ServerConfig& config) {
  MetricsOptions options;
  options.max_names = MaxMetricNames(config.limits());
  for (const auto& [name, aggregation] : config.evaluation().aggregation()) {
    if (absl::StatusOr<MetricAggregation> a = ParseMetricAggregation(aggregation); a.ok()) {
      options.aggregation[name] = *a;
    }
  }
  return options;
}

absl::StatusOr<ClientAttributes> AttributesFromJoin(const tally::v1::JoinRequest& request) {
  ClientAttributes attributes(request.attributes().begin(), request.attributes().end());
  if (absl::Status valid = ValidateClientAttributes(attributes); !valid.ok()) {
    return Invalid("attributes: ", valid.message());
  }
  return attributes;
}

absl::StatusOr<std::map<std::string, double>> MetricsFromProto(
    const google::protobuf::Map<std::string, double>& metrics, size_t max_metric_names) {
  std::map<std::string, double> out(metrics.begin(), metrics.end());
  if (absl::Status valid = ValidateMetrics(out, max_metric_names); !valid.ok()) {
    return Invalid("metrics: ", valid.message());
  }
  return out;
}

void HistoryRecordToProto(const HistoryRecord& record, tally::v1::RoundRecord* proto) {
  proto->set_kind(std::string(HistoryKindName(record.kind)));
  proto->set_unix_ms(record.unix_ms);
  proto->set_round(record.round);
  proto->set_model_version(record.model_version);
  proto->set_participants(record.participants);
  proto->set_bytes_received(record.bytes_received);
  proto->set_num_examples(record.num_examples);
  proto->mutable_metrics()->insert(record.metrics.begin(), record.metrics.end());
  proto->mutable_decisions()->insert(record.decisions.begin(), record.decisions.end());
  proto->set_evaluation_id(record.evaluation_id);
}

tally::v1::RunHistory HistoryToProto(const RunHistory& history,
                                     const tally::v1::GetHistoryRequest& request) {
  tally::v1::RunHistory proto;
  for (const HistoryRecord& record : history.Records(request.after_round(), request.max_records())) {
    HistoryRecordToProto(record, proto.add_records());
  }
  return proto;
}

}  // namespace tally::server
