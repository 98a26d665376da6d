// Loading, defaulting and validation of the text-proto ServerConfig.
#ifndef TALLY_SERVER_CONFIG_H_
#define TALLY_SERVER_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregators/optimizers/optimizer.h"
#include "aggregators/rules/rule.h"
#include "aggregators/schedules/schedule.h"
#include "aggregators/step/aggregation_step.h"
#include "compress/codec.h"
#include "core/model_layout.h"
#include "server/plan.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

// The embedded default config (the demo's model and a 2-client round).
tally::v1::ServerConfig DefaultConfig();

// Parses a text-proto file. Errors name the file, line and field.
absl::StatusOr<tally::v1::ServerConfig> LoadConfigFile(const std::string& path);
absl::StatusOr<tally::v1::ServerConfig> ParseConfigText(const std::string& text);

// Fills every unset (zero/empty) field with its documented default.
void ApplyDefaults(tally::v1::ServerConfig* config);

// Checks a defaulted config; the error message starts with the field's name.
// The status of MakePlan (server/plan.h), which translates it.
absl::Status ValidateConfig(const tally::v1::ServerConfig& config);

// The optimizer options the config describes.
aggregators::OptimizerOptions OptimizerOptionsFromConfig(const tally::v1::OptimizerConfig& config);

// What the server's aggregation step is made of: the strategy's rule (with
// ExpectedBatchSize as the expected n), its pre-steps and the optimizer.
aggregators::AggregationStepOptions AggregationStepOptionsFromConfig(
    const tally::v1::ServerConfig& config);
// The pre-steps the server runs, in order: `pre`, then "nnm" with
// nnm_mixing (default true for krum and bulyan) unless `pre` already lists it.
std::vector<std::string> PreStepNamesFromConfig(const tally::v1::StrategyConfig& strategy);
// True unless the strategy's rule is "mean" (the streaming weighted mean).
bool IsRobustStrategy(const tally::v1::StrategyConfig& strategy);

// True for every schedule but "sync" (the round schedule).
bool IsAsyncSchedule(const tally::v1::ScheduleConfig& schedule);
// The options of an asynchronous schedule (defaults applied).
aggregators::ScheduleOptions ScheduleOptionsFromConfig(const tally::v1::ServerConfig& config);
// TRAIN tasks handed out per synchronous round: clients_per_round plus
// rounds.over_selection of it, rounded up.
uint32_t SelectedPerRound(const tally::v1::RoundConfig& rounds);
// The number of updates a robust rule should expect per batch: the
// round size, FedBuff's buffer, else the federation size.
size_t ExpectedBatchSize(const tally::v1::ServerConfig& config);

// The model layout the config describes.
absl::StatusOr<ModelLayout> LayoutFromConfig(const tally::v1::ModelConfig& model);

// compression.upload as codec specs, in order of preference; INVALID_ARGUMENT
// naming the entry for an unknown codec or invalid parameters.
absl::StatusOr<std::vector<compress::CodecSpec>> UploadCodecsFromConfig(
    const tally::v1::ServerConfig& config, size_t num_params);

// limits.max_update_bytes when unset: the largest worst-case encoded size
// (compress::WorstCaseEncodedBytes) over every codec for num_params
// parameters, so that any update a codec can produce is admitted (spsa
// with the pair limit of its compression.upload entry, if any). At least
// 4 * num_params (a dense float32 update).
uint64_t DefaultMaxUpdateBytes(const tally::v1::ServerConfig& config, uint64_t num_params);

// True for the download codecs whose rounding is a projection (applying it
// twice changes nothing), so a delta chain can end exactly on the full
// encoding: float32, float16, bfloat16 (not int8: its scale moves).
bool DeltaChainCapable(const compress::CodecSpec& full);

// compression.download* as specs; INVALID_ARGUMENT naming the entry for a
// codec not allowed in that role, a duplicate, or invalid parameters.
absl::StatusOr<DownloadCodecs> DownloadCodecsFromConfig(const tally::v1::ServerConfig& config,
                                                        size_t num_params);

}  // namespace tally::server

#endif  // TALLY_SERVER_CONFIG_H_
