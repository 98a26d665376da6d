#include "server/plan.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/exact_sum.h"
#include "core/model_file.h"
#include "core/status_macros.h"
#include "proto/secagg_config.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/model_init.h"
#include "server/privacy_config.h"
#include "server/strategy_options.h"
#include "server/workflow_config.h"
#include "tally/v1/config.pb.h"

namespace tally::server {
namespace {

// MoNNA's trusted vector is a named client's update (StrategyConfig
// trusted_client), never a row position.
absl::Status ValidateTrustedClient(const tally::v1::ServerConfig& config) {
  const tally::v1::StrategyConfig& strategy = config.strategy();
  const bool monna = strategy.rule() == "monna";
  if (strategy.idx() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy.idx: ", strategy.idx(),
                     " is not used; name monna's trusted client in strategy.trusted_client"));
  }
  if (!monna) {
    if (strategy.trusted_client().empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("strategy.trusted_client: only rule \"monna\" "
                     "uses a trusted client, the rule is \"",
                     strategy.rule(), "\""));
  }
  if (strategy.trusted_client().empty()) {
    return absl::InvalidArgumentError(
        "strategy.trusted_client: rule \"monna\" needs the client_id of a trusted client "
        "(its update is the vector the n - f nearest updates are averaged around); without "
        "one the trusted vector would be whichever update arrived first");
  }
  if (IsAsyncSchedule(config.schedule())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy.trusted_client: monna needs synchronous rounds (schedule \"sync\"), not \"",
        config.schedule().name(), "\""));
  }
  for (const std::string& pre : strategy.pre()) {
    if (!aggregators::KeepsRowOrder(pre)) {
      return absl::InvalidArgumentError(
          absl::StrCat("strategy.pre: \"", pre,
                       "\" merges or reorders updates, so monna's trusted_client row is lost"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckServing(const tally::v1::ServerConfig& config) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (config.listen_address().find(':') == std::string::npos) {
    return invalid("listen_address: '", config.listen_address(), "' must be HOST:PORT");
  }
  if (config.metrics_port() < -1 || config.metrics_port() > 65535) {
    return invalid("metrics_port: ", config.metrics_port(), " is not -1 or a port number");
  }
  if (const uint64_t bytes = config.grpc().memory_bytes(); bytes != 0 && bytes < (16u << 20)) {
    return invalid("grpc.memory_bytes: ", bytes, " must be 0 (unbounded) or at least 16777216");
  }
  if (absl::Status init = ValidateModelInit(config); !init.ok()) return init;
  if (absl::Status secure = ValidateSecureAggregation(config); !secure.ok()) return secure;
  if (const std::string& path = config.final_model_path(); !path.empty()) {
    if (absl::StatusOr<ModelFileFormat> format = ModelFileFormatOf(path); !format.ok()) {
      return invalid("final_model_path: ", format.status().message());
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRounds(const tally::v1::ServerConfig& config) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  const auto& init = config.model().init();
  if (!(init.scale() > 0) || init.scale() > 1e6) {
    return invalid("model.init.scale: ", init.scale(), " must be in (0, 1e6]");
  }
  const auto& rounds = config.rounds();
  if (rounds.min_clients() > rounds.clients_per_round()) {
    return invalid("rounds.min_clients: ", rounds.min_clients(),
                   " exceeds rounds.clients_per_round ", rounds.clients_per_round());
  }
  if (rounds.clients_per_round() > 100000) {
    return invalid("rounds.clients_per_round: ", rounds.clients_per_round(), " > 100000");
  }
  if (!(rounds.over_selection() >= 0 && rounds.over_selection() <= 10)) {
    return invalid("rounds.over_selection: ", rounds.over_selection(), " must be in [0, 10]");
  }
  if (auto optimizer = aggregators::CreateOptimizer(OptimizerOptionsFromConfig(config.optimizer()));
      !optimizer.ok()) {
    return optimizer.status();
  }
  return absl::OkStatus();
}

absl::Status CheckStrategy(const tally::v1::ServerConfig& config) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  const auto& schedule = config.schedule();
  if (IsAsyncSchedule(schedule)) {
    if (absl::Status valid =
            aggregators::ValidateScheduleOptions(ScheduleOptionsFromConfig(config));
        !valid.ok()) {
      return valid;
    }
    if (schedule.name() == "fedasync" && IsRobustStrategy(config.strategy())) {
      return invalid("strategy.rule: \"", config.strategy().rule(),
                     "\" needs batches of updates; fedasync applies each update alone. Use "
                     "schedule fedbuff, fedfix or fedcompass, or rule \"mean\"");
    }
  }
  const auto& strategy = config.strategy();
  if (IsRobustStrategy(strategy)) {
    const size_t n = ExpectedBatchSize(config);
    auto rule = aggregators::CreateRule(RuleOptionsFromConfig(strategy, strategy.rule(), n));
    if (!rule.ok()) {
      return invalid("strategy.rule: ", rule.status().message());
    }
    for (const std::string& pre : PreStepNamesFromConfig(strategy)) {
      auto step = aggregators::CreatePreStep(RuleOptionsFromConfig(strategy, pre, n));
      if (!step.ok()) return invalid("strategy.pre: ", step.status().message());
    }
  } else if (strategy.pre_size() > 0 || strategy.f() > 0 || strategy.nnm_mixing()) {
    return invalid(
        "strategy.rule: \"mean\" takes no pre-steps (nor nnm_mixing) and no f; choose a robust "
        "rule");
  }
  if (absl::Status trusted = ValidateTrustedClient(config); !trusted.ok()) return trusted;
  if (absl::Status security = ValidateSecurityConfig(config); !security.ok()) return security;
  if (absl::Status privacy = ValidatePrivacyConfig(config); !privacy.ok()) return privacy;
  if (absl::Status workflow = ValidateWorkflowConfig(config); !workflow.ok()) return workflow;
  return absl::OkStatus();
}

absl::Status CheckRelay(const tally::v1::ServerConfig& config) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (const tally::v1::RelayConfig& relay = config.relay(); !relay.upstream().empty()) {
    if (relay.upstream().find(':') == std::string::npos) {
      return invalid("relay.upstream: '", relay.upstream(), "' must be HOST:PORT");
    }
    if (IsRobustStrategy(config.strategy()) || IsAsyncSchedule(config.schedule())) {
      return invalid(
          "relay: a relay forwards the weighted mean of synchronous rounds; leave "
          "strategy and schedule unset (the upstream runs the robust rule or schedule)");
    }
    if (!config.checkpoint_dir().empty()) {
      return invalid("checkpoint_dir: a relay keeps no state (the upstream checkpoints)");
    }
    if (config.rounds().total_rounds() != 0) {
      return invalid(
          "rounds.total_rounds: a relay follows the upstream, which decides when to stop");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLimits(const tally::v1::ServerConfig& config, size_t num_params) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  const auto& limits = config.limits();
  if (limits.max_chunk_bytes() < 1024 || limits.max_chunk_bytes() > (64u << 20)) {
    return invalid("limits.max_chunk_bytes: ", limits.max_chunk_bytes(),
                   " must be in [1024, 67108864]");
  }
  if (limits.model_chunk_bytes() < 1024 || limits.model_chunk_bytes() > (64u << 20) ||
      limits.model_chunk_bytes() % 4 != 0) {
    return invalid("limits.model_chunk_bytes: ", limits.model_chunk_bytes(),
                   " must be a multiple of 4 in [1024, 67108864]");
  }
  if (limits.max_receive_message_bytes() < limits.max_chunk_bytes() + 1024) {
    return invalid("limits.max_receive_message_bytes: ", limits.max_receive_message_bytes(),
                   " must exceed limits.max_chunk_bytes by at least 1024");
  }
  if (limits.max_num_samples() > kMaxExactWeight) {
    return invalid("limits.max_num_samples: ", limits.max_num_samples(), " is above ",
                   kMaxExactWeight, " (2^40), the largest weight the exact sum holds");
  }
  if (!(limits.max_abs_value() > 0 && limits.max_abs_value() <= kMaxExactAbsValue)) {
    return invalid("limits.max_abs_value: ", limits.max_abs_value(), " must be in (0, ",
                   kMaxExactAbsValue, "] (2^22, the largest value the exact sum holds)");
  }
  if (limits.upload_rate_window_ms() < 100) {
    return invalid("limits.upload_rate_window_ms: ", limits.upload_rate_window_ms(),
                   " must be at least 100");
  }
  const bool relay_unknown_model =
      !config.relay().upstream().empty() && limits.max_update_bytes() == 0;
  if (!relay_unknown_model && limits.max_update_bytes() < 4 * num_params) {
    return invalid("limits.max_update_bytes: ", limits.max_update_bytes(),
                   " is smaller than a dense update of the model (", 4 * num_params,
                   " bytes)");
  }
  return absl::OkStatus();
}

void FillLimits(const tally::v1::ServerConfig& config, ServerPlan* plan) {
  const tally::v1::LimitsConfig& limits = config.limits();
  plan->sessions.session_timeout_ms = limits.session_timeout_ms();
  plan->sessions.max_sessions = limits.max_sessions();
  plan->sessions.max_sessions_per_peer = limits.max_sessions_per_peer();
  plan->sessions.max_sessions_per_identity = limits.max_sessions_per_identity();
  plan->sessions.peer_joins_per_minute = limits.peer_joins_per_minute();
  plan->admission.max_concurrent_uploads = limits.max_concurrent_uploads();
  plan->admission.client_uploads_per_minute = limits.client_uploads_per_minute();
  UploadPlan& uploads = plan->uploads;
  uploads.max_update_bytes = limits.max_update_bytes();
  uploads.max_num_samples = limits.max_num_samples();
  uploads.max_chunk_bytes = limits.max_chunk_bytes();
  uploads.max_abs_value = limits.max_abs_value();
  uploads.undo_memory_bytes = limits.undo_memory_bytes();
  uploads.spool_dir = config.spool_dir();
}

void FillAggregation(const tally::v1::ServerConfig& config, ServerPlan* plan) {
  const tally::v1::RoundConfig& rounds = config.rounds();
  RoundPlan& r = plan->rounds;
  r.clients_per_round = rounds.clients_per_round();
  r.min_clients = rounds.min_clients();
  r.over_selection = rounds.over_selection();
  r.selected_per_round = SelectedPerRound(rounds);
  r.task_lease = absl::Milliseconds(rounds.task_lease_ms());
  r.round_timeout = absl::Milliseconds(rounds.round_timeout_ms());
  r.local_steps = rounds.local_steps();
  r.total_rounds = rounds.total_rounds();
  r.trusted_client = config.strategy().trusted_client();
  plan->step = AggregationStepOptionsFromConfig(config);
  plan->robust = IsRobustStrategy(config.strategy());
  plan->rule_threads = static_cast<int>(config.strategy().threads());
  // Idle model-sized buffers: the retired model's (the next aggregate), or
  // with a schedule as many as can be in use at once (uploads, buffered
  // updates, aggregate and models in flight), so that steady state
  // allocates nothing; memory above that peak is returned.
  plan->idle_buffers = 1;
  if (IsAsyncSchedule(config.schedule())) {
    plan->schedule = ScheduleOptionsFromConfig(config);
    plan->max_staleness = config.schedule().max_staleness();
    plan->idle_buffers = config.limits().max_concurrent_uploads() + ExpectedBatchSize(config) + 4;
  }
  plan->persist.checkpoint_dir = config.checkpoint_dir();
  plan->persist.checkpoint_interval = absl::Milliseconds(config.checkpoint_interval_ms());
  plan->persist.final_model_path = config.final_model_path();
  plan->relay = !config.relay().upstream().empty();
  plan->strategy_label = absl::StrCat(config.schedule().name(), "/", config.strategy().rule(), "/",
                                      config.optimizer().name());
}

}  // namespace

absl::StatusOr<ServerPlan> MakePlan(const tally::v1::ServerConfig& config) {
  TALLY_RETURN_IF_ERROR(CheckServing(config));
  TALLY_ASSIGN_OR_RETURN(ModelLayout layout, LayoutFromConfig(config.model()));
  TALLY_RETURN_IF_ERROR(CheckRounds(config));
  TALLY_RETURN_IF_ERROR(CheckStrategy(config));
  TALLY_RETURN_IF_ERROR(CheckRelay(config));
  const size_t num_params = layout.NumParams();
  ServerPlan plan;
  TALLY_ASSIGN_OR_RETURN(plan.uploads.codecs, UploadCodecsFromConfig(config, num_params));
  TALLY_ASSIGN_OR_RETURN(plan.downloads, DownloadCodecsFromConfig(config, num_params));
  TALLY_RETURN_IF_ERROR(CheckLimits(config, num_params));
  plan.layout = std::move(layout);
  FillLimits(config, &plan);
  FillAggregation(config, &plan);
  plan.privacy = PrivacyParamsFromConfig(config);
  return plan;
}

absl::Status ValidateConfig(const tally::v1::ServerConfig& config) {
  return MakePlan(config).status();
}

}  // namespace tally::server
