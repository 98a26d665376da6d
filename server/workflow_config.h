// The federated-learning workflow's configuration (docs/workflow.md):
// validation of ServerConfig's evaluation, history, client_config,
// rounds.selection and limits.max_metric_names, and the conversions between
// their protos and the pure parts in core/ (config schedules, metrics,
// client sampling, the run history). Stateless functions; thread-safe.
#ifndef TALLY_SERVER_WORKFLOW_CONFIG_H_
#define TALLY_SERVER_WORKFLOW_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/client_sampler.h"
#include "core/config_schedule.h"
#include "core/metrics_aggregator.h"
#include "core/run_history.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {

// Checks the workflow fields of a defaulted config; INVALID_ARGUMENT whose
// message starts with the field's name. Called by ValidateConfig.
absl::Status ValidateWorkflowConfig(const tally::v1::ServerConfig& config);

// client_config.values as core schedules (validated config).
std::map<std::string, ConfigScheduleSpec> ConfigSchedulesFromConfig(
    const tally::v1::ClientConfig& config);
// Sets task->config to `schedules` evaluated for `round`.
void SetTaskConfig(const std::map<std::string, ConfigScheduleSpec>& schedules, uint64_t round,
                   tally::v1::Task* task);

// The selection of TRAIN tasks: rounds.selection, the count
// SelectedPerRound (clients_per_round with over-selection), the fraction,
// seed (default 1) and filter.
SamplingOptions TrainSamplingFromConfig(const tally::v1::RoundConfig& rounds);
// The selection of EVALUATE tasks: first come under FIRST_COME, else a
// seeded random sample (another seed than training's) of
// evaluation.clients (default clients_per_round) or evaluation.fraction of
// the available clients; rounds.filter applies.
SamplingOptions EvaluationSamplingFromConfig(const tally::v1::ServerConfig& config);
// rounds.min_available_clients with its default (clients_per_round for
// RANDOM, 1 for POISSON and FIRST_COME).
uint32_t MinAvailableClients(const tally::v1::RoundConfig& rounds);
// evaluation.timeout_ms, default rounds.round_timeout_ms.
absl::Duration EvaluationTimeout(const tally::v1::ServerConfig& config);

// limits.max_metric_names (default 32) and evaluation.aggregation.
MetricsOptions MetricsOptionsFromConfig(const tally::v1::ServerConfig& config);
size_t MaxMetricNames(const tally::v1::LimitsConfig& limits);

// A client's Join attributes, checked (they are client-controlled): at most
// 16 entries, names 1..64 bytes of [A-Za-z0-9._-], values at most 128
// bytes of printable ASCII. INVALID_ARGUMENT naming the entry.
absl::StatusOr<ClientAttributes> AttributesFromJoin(const tally::v1::JoinRequest& request);

// A client's metric map (UpdateHeader.metrics, EvaluationReport.metrics),
// checked by ValidateMetrics against max_metric_names.
absl::StatusOr<std::map<std::string, double>> MetricsFromProto(
    const google::protobuf::Map<std::string, double>& metrics, size_t max_metric_names);

void HistoryRecordToProto(const HistoryRecord& record, tally::v1::RoundRecord* proto);
// Admin.GetHistory's answer from the history kept in memory.
tally::v1::RunHistory HistoryToProto(const RunHistory& history,
                                     const tally::v1::GetHistoryRequest& request);

}  // namespace tally::server

#endif  // TALLY_SERVER_WORKFLOW_CONFIG_H_
