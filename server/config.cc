#include "server/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "core/model_file.h"
#include "core/exact_sum.h"
#include "core/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "proto/codec_params.h"
#include "server/auth.h"
#include "server/model_init.h"
#include "server/strategy_options.h"

namespace tally::server {
namespace {

// Collects parser errors as "line:col: message".
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!first_.empty()) return;
    first_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

tally::v1::ServerConfig DefaultConfig() {
  tally::v1::ServerConfig config;
  ApplyDefaults(&config);
  return config;
}

absl::StatusOr<tally::v1::ServerConfig> ParseConfigText(const std::string& text) {
  tally::v1::ServerConfig config;
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", errors.first()));
  }
  return config;
}

absl::StatusOr<tally::v1::ServerConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config: cannot open '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto config = ParseConfigText(buffer.str());
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

namespace {

// Rules that keep one or a few updates per round mix neighbours first unless
// told not to (StrategyConfig.nnm_mixing).
bool MixesByDefault(const std::string& rule) { return rule == "krum" || rule == "bulyan"; }

void ApplyModelDefaults(tally::v1::ServerConfig* config) {
  tally::v1::ModelConfig* model = config->mutable_model();
  // A relay's model is the upstream's (ValidateConfig refuses a file).
  if (config->relay().upstream().empty()) TensorsFromInitFile(model);
  if (model->tensors_size() == 0 && model->init().file().empty()) {
    tally::v1::TensorConfig* kernel = model->add_tensors();
    kernel->set_name("dense/kernel");
    kernel->add_shape(32);
    kernel->add_shape(10);
    tally::v1::TensorConfig* bias = model->add_tensors();
    bias->set_name("dense/bias");
    bias->add_shape(10);
  }
  if (model->init().scale() == 0) model->mutable_init()->set_scale(0.01);
  if (model->init().seed() == 0) model->mutable_init()->set_seed(1);
}

void ApplyAggregationDefaults(tally::v1::ServerConfig* config) {
  tally::v1::RoundConfig* rounds = config->mutable_rounds();
  if (rounds->clients_per_round() == 0) rounds->set_clients_per_round(20);
  if (rounds->min_clients() == 0) rounds->set_min_clients(1);
  if (rounds->round_timeout_ms() == 0) rounds->set_round_timeout_ms(600000);
  if (rounds->task_lease_ms() == 0) {
    rounds->set_task_lease_ms(std::max<uint32_t>(1, rounds->round_timeout_ms() / 2));
  }

  tally::v1::OptimizerConfig* optimizer = config->mutable_optimizer();
  if (optimizer->name().empty()) optimizer->set_name("sgd");
  if (optimizer->learning_rate() == 0) {
    optimizer->set_learning_rate(aggregators::DefaultLearningRate(optimizer->name()));
  }

  tally::v1::StrategyConfig* strategy = config->mutable_strategy();
  if (strategy->rule().empty()) strategy->set_rule("mean");
  if (!strategy->has_nnm_mixing() && MixesByDefault(strategy->rule())) {
    strategy->set_nnm_mixing(true);
  }

  tally::v1::ScheduleConfig* schedule = config->mutable_schedule();
  if (schedule->name().empty()) schedule->set_name("sync");
  if (IsAsyncSchedule(*schedule)) {
    if (!schedule->has_alpha()) schedule->set_alpha(0.9);
    if (schedule->client_weights().empty()) schedule->set_client_weights("equal");
    if (schedule->num_clients() == 0) schedule->set_num_clients(rounds->clients_per_round());
    tally::v1::StalenessConfig* staleness = schedule->mutable_staleness();
    if (staleness->name().empty()) staleness->set_name("constant");
    if (!staleness->has_a()) staleness->set_a(0.5);
    if (!staleness->has_b()) staleness->set_b(4.0);
    if (schedule->local_steps() == 0) {
      schedule->set_local_steps(rounds->local_steps() > 0 ? rounds->local_steps() : 5);
    }
    if (schedule->buffer_size() == 0) schedule->set_buffer_size(3);
    if (schedule->window_ms() == 0) schedule->set_window_ms(1000);
    if (schedule->min_local_steps() == 0) schedule->set_min_local_steps(20);
    if (schedule->max_local_steps() == 0) schedule->set_max_local_steps(100);
    if (!schedule->has_speed_momentum()) schedule->set_speed_momentum(0.9);
    if (!schedule->has_latest_time_factor()) schedule->set_latest_time_factor(1.5);
  }
}

void ApplyLimitsDefaults(tally::v1::ServerConfig* config) {
  tally::v1::LimitsConfig* limits = config->mutable_limits();
  if (limits->max_chunk_bytes() == 0) limits->set_max_chunk_bytes(4 << 20);
  if (limits->model_chunk_bytes() == 0) limits->set_model_chunk_bytes(1 << 20);
  if (limits->max_receive_message_bytes() == 0) {
    limits->set_max_receive_message_bytes(limits->max_chunk_bytes() + (64 << 10));
  }
  if (limits->session_timeout_ms() == 0) limits->set_session_timeout_ms(300000);
  if (limits->max_sessions() == 0) limits->set_max_sessions(100000);
  if (limits->max_sessions_per_peer() == 0) limits->set_max_sessions_per_peer(10000);
  if (limits->max_sessions_per_identity() == 0) limits->set_max_sessions_per_identity(10000);
  if (limits->peer_joins_per_minute() == 0) limits->set_peer_joins_per_minute(6000);
  if (limits->heartbeat_interval_ms() == 0) limits->set_heartbeat_interval_ms(30000);
  if (limits->max_wait_ms() == 0) limits->set_max_wait_ms(30000);
  if (limits->max_num_samples() == 0) limits->set_max_num_samples(1000000000);
  if (limits->max_abs_value() == 0) limits->set_max_abs_value(1e6f);
  if (limits->max_concurrent_uploads() == 0) limits->set_max_concurrent_uploads(64);
  if (limits->undo_memory_bytes() == 0) limits->set_undo_memory_bytes(64u << 20);
  if (limits->upload_idle_timeout_ms() == 0) limits->set_upload_idle_timeout_ms(60000);
  if (limits->min_upload_bytes_per_second() == 0) limits->set_min_upload_bytes_per_second(4096);
  if (limits->upload_rate_window_ms() == 0) limits->set_upload_rate_window_ms(120000);
  if (limits->download_stall_timeout_ms() == 0) limits->set_download_stall_timeout_ms(60000);
  if (limits->max_pinned_model_versions() == 0) limits->set_max_pinned_model_versions(4);
  if (limits->max_pinned_model_bytes() == 0) limits->set_max_pinned_model_bytes(uint64_t{1} << 30);
  if (limits->max_watch_streams() == 0) limits->set_max_watch_streams(10000);
  // A relay's model is the upstream's, known once connected (Server::Create
  // applies the defaults again then).
  if (limits->max_update_bytes() == 0 && config->relay().upstream().empty()) {
    auto layout = LayoutFromConfig(config->model());
    if (layout.ok()) {
      limits->set_max_update_bytes(DefaultMaxUpdateBytes(*config, layout->NumParams()));
    }
  }
}

}  // namespace

void ApplyDefaults(tally::v1::ServerConfig* config) {
  if (config->listen_address().empty()) config->set_listen_address("0.0.0.0:50051");
  if (config->metrics_port() == 0) config->set_metrics_port(9464);
  if (config->metrics_address().empty()) config->set_metrics_address("0.0.0.0");
  if (config->checkpoint_interval_ms() == 0) config->set_checkpoint_interval_ms(60000);
  if (!config->grpc().has_bdp_probe()) config->mutable_grpc()->set_bdp_probe(true);
  ApplyModelDefaults(config);
  ApplyAggregationDefaults(config);
  ApplyLimitsDefaults(config);
}

aggregators::OptimizerOptions OptimizerOptionsFromConfig(const tally::v1::OptimizerConfig& config) {
  aggregators::OptimizerOptions options;
  options.name = config.name().empty() ? "sgd" : config.name();
  options.learning_rate = config.learning_rate();
  if (config.has_momentum()) options.momentum = config.momentum();
  if (config.has_beta1()) options.beta1 = config.beta1();
  if (config.has_beta2()) options.beta2 = config.beta2();
  if (config.has_tau()) options.tau = config.tau();
  return options;
}

bool IsRobustStrategy(const tally::v1::StrategyConfig& strategy) {
  return !strategy.rule().empty() && strategy.rule() != "mean";
}

aggregators::AggregationStepOptions AggregationStepOptionsFromConfig(
    const tally::v1::ServerConfig& config) {
  aggregators::AggregationStepOptions options;
  options.optimizer = OptimizerOptionsFromConfig(config.optimizer());
  if (const auto& strategy = config.strategy(); IsRobustStrategy(strategy)) {
    const size_t n = ExpectedBatchSize(config);
    options.rule = RuleOptionsFromConfig(strategy, strategy.rule(), n);
    for (const std::string& pre : PreStepNamesFromConfig(strategy)) {
      options.pre_steps.push_back(RuleOptionsFromConfig(strategy, pre, n));
    }
  }
  return options;
}

std::vector<std::string> PreStepNamesFromConfig(const tally::v1::StrategyConfig& strategy) {
  std::vector<std::string> names(strategy.pre().begin(), strategy.pre().end());
  if (strategy.nnm_mixing() && std::find(names.begin(), names.end(), "nnm") == names.end()) {
    names.push_back("nnm");
  }
  return names;
}

bool IsAsyncSchedule(const tally::v1::ScheduleConfig& schedule) {
  return !schedule.name().empty() && schedule.name() != "sync";
}

aggregators::ScheduleOptions ScheduleOptionsFromConfig(const tally::v1::ServerConfig& config) {
  const tally::v1::ScheduleConfig& s = config.schedule();
  aggregators::ScheduleOptions o;
  o.name = s.name();
  o.alpha = s.alpha();
  o.client_weights = s.client_weights();
  o.num_clients = s.num_clients();
  o.staleness.name = s.staleness().name();
  o.staleness.a = s.staleness().a();
  o.staleness.b = s.staleness().b();
  o.local_steps = s.local_steps();
  o.task_timeout =
      s.task_timeout_ms() == 0 ? absl::InfiniteDuration() : absl::Milliseconds(s.task_timeout_ms());
  o.buffer_size = s.buffer_size();
  o.window = absl::Milliseconds(s.window_ms());
  o.min_local_steps = s.min_local_steps();
  o.max_local_steps = s.max_local_steps();
  o.speed_momentum = s.speed_momentum();
  o.latest_time_factor = s.latest_time_factor();
  return o;
}

uint32_t SelectedPerRound(const tally::v1::RoundConfig& rounds) {
  // Less a hair, so that 10 x 0.3 (2.9999999999999996 or 3.0000000000000004
  // in binary) is 3.
  const double extra = std::ceil(rounds.clients_per_round() * rounds.over_selection() - 1e-9);
  return rounds.clients_per_round() + static_cast<uint32_t>(std::max(0.0, extra));
}

size_t ExpectedBatchSize(const tally::v1::ServerConfig& config) {
  const tally::v1::ScheduleConfig& s = config.schedule();
  if (!IsAsyncSchedule(s)) return config.rounds().clients_per_round();
  if (s.name() == "fedbuff") return s.buffer_size();
  return s.num_clients();
}

absl::StatusOr<ModelLayout> LayoutFromConfig(const tally::v1::ModelConfig& model) {
  std::vector<ModelLayout::TensorDef> defs;
  for (const tally::v1::TensorConfig& t : model.tensors()) {
    defs.push_back({t.name(), {t.shape().begin(), t.shape().end()}});
  }
  return ModelLayout::Create(defs);
}

namespace {

// One compression entry as a validated spec; `allowed` (empty: any codec)
// restricts the codecs the role takes.
absl::StatusOr<compress::CodecSpec> SpecFromChoice(
    const tally::v1::CodecChoice& choice, const std::string& field, size_t num_params,
    absl::Span<const compress::CodecId> allowed = {}) {
  const compress::CodecInfo* info = compress::FindCodec(choice.codec());
  std::vector<std::string> names;
  for (compress::CodecId id : allowed) names.push_back(compress::FindCodec(id)->name);
  if (allowed.empty()) names = compress::CodecNames();
  if (info == nullptr ||
      (!allowed.empty() && std::find(allowed.begin(), allowed.end(), info->id) == allowed.end())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".codec: '", choice.codec(),
                                                   "' is not one of ", absl::StrJoin(names, ", ")));
  }
  auto spec = SpecFromProto(static_cast<tally::v1::Codec>(info->id), choice.params());
  if (spec.ok()) {
    if (absl::Status valid = compress::ValidateSpec(*spec, num_params); !valid.ok()) spec = valid;
  }
  if (!spec.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".params: ", spec.status().message()));
  }
  return spec;
}

}  // namespace

absl::StatusOr<std::vector<compress::CodecSpec>> UploadCodecsFromConfig(
    const tally::v1::ServerConfig& config, size_t num_params) {
  std::vector<compress::CodecSpec> specs;
  for (int i = 0; i < config.compression().upload_size(); ++i) {
    TALLY_ASSIGN_OR_RETURN(compress::CodecSpec spec,
                           SpecFromChoice(config.compression().upload(i),
                                          absl::StrCat("compression.upload[", i, "]"), num_params));
    specs.push_back(spec);
  }
  return specs;
}

uint64_t DefaultMaxUpdateBytes(const tally::v1::ServerConfig& config, uint64_t num_params) {
  if (num_params == 0 || num_params > compress::kMaxDim) return 4 * num_params;
  uint64_t spsa_pairs = 1;
  absl::StatusOr<std::vector<compress::CodecSpec>> upload =
      UploadCodecsFromConfig(config, num_params);
  if (upload.ok()) {
    for (const compress::CodecSpec& spec : *upload) {
      if (spec.id == compress::CodecId::kSpsa) spsa_pairs = std::max(spsa_pairs, spec.k);
    }
  }
  uint64_t limit = 4 * num_params;
  for (const compress::CodecInfo& codec : compress::AllCodecs()) {
    limit = std::max<uint64_t>(limit,
                               compress::WorstCaseEncodedBytes(codec.id, num_params, spsa_pairs));
  }
  return limit;
}

bool DeltaChainCapable(const compress::CodecSpec& full) {
  return full.id == compress::CodecId::kFloat32 || full.id == compress::CodecId::kFloat16 ||
         full.id == compress::CodecId::kBfloat16;
}

absl::StatusOr<DownloadCodecs> DownloadCodecsFromConfig(const tally::v1::ServerConfig& config,
                                                        size_t num_params) {
  using compress::CodecId;
  static constexpr CodecId kFull[] = {CodecId::kFloat32, CodecId::kFloat16, CodecId::kBfloat16,
                                      CodecId::kInt8};
  static constexpr CodecId kDelta[] = {CodecId::kFloat32, CodecId::kFloat16, CodecId::kBfloat16,
                                       CodecId::kInt8,    CodecId::kSign,    CodecId::kTopK};
  const tally::v1::CompressionConfig& compression = config.compression();
  DownloadCodecs codecs;
  for (int i = 0; i < compression.download_size(); ++i) {
    const std::string field = absl::StrCat("compression.download[", i, "]");
    TALLY_ASSIGN_OR_RETURN(compress::CodecSpec spec,
                           SpecFromChoice(compression.download(i), field, num_params, kFull));
    for (const compress::CodecSpec& earlier : codecs.full) {
      if (earlier.id == spec.id) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".codec: '", compression.download(i).codec(), "' is listed twice"));
      }
    }
    codecs.full.push_back(spec);
  }
  if (!compression.download_delta().codec().empty()) {
    TALLY_ASSIGN_OR_RETURN(
        codecs.delta, SpecFromChoice(compression.download_delta(), "compression.download_delta",
                                     num_params, kDelta));
  }
  if (compression.delta_history() > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression.delta_history: ", compression.delta_history(), " must be at most 1024"));
  }
  if (compression.delta_history() > 0) codecs.delta_history = compression.delta_history();
  return codecs;
}

}  // namespace tally::server
