#include "client/validation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compress/codec.h"
#include "compress/dgc.h"
#include "core/privacy/mechanism.h"
#include "core/client_sampler.h"
#include "core/metrics_aggregator.h"

namespace tally {
namespace client_internal {
namespace {

constexpr size_t kMaxIdLength = 128;

bool IsClientIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '@' || c == '-';
}

}  // namespace

absl::Status ValidateClientId(absl::string_view client_id) {
  if (client_id.empty() || client_id.size() > kMaxIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.client_id: must be 1..128 characters, got ", client_id.size()));
  }
  for (char c : client_id) {
    if (!IsClientIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("ClientOptions.client_id: '", client_id,
                       "' contains a character outside [A-Za-z0-9._:@-]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUpdateId(absl::string_view update_id) {
  if (update_id.empty() || update_id.size() > kMaxIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("Update.update_id: must be 1..128 characters, got ", update_id.size()));
  }
  for (char c : update_id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "Update.update_id: only printable ASCII characters without spaces are allowed");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckUpdateBytes(uint64_t payload_bytes, absl::string_view codec,
                              uint64_t max_update_bytes) {
  if (max_update_bytes == 0 || payload_bytes <= max_update_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("PushUpdate: the ", codec, " update is ", payload_bytes,
                   " bytes, over the server's limits.max_update_bytes = ", max_update_bytes,
                   "; not sent (raise the limit in the server's config, or compress more)"));
}

absl::StatusOr<absl::Span<const float>> UpdateDelta(const Update& update,
                                                    std::vector<float>* storage) {
  if (update.weights.empty() && update.base.empty()) return update.delta;
  if (!update.delta.empty()) {
    return absl::InvalidArgumentError(
        "PushUpdate: set Update.delta (local - base) or Update.weights with Update.base, "
        "not both");
  }
  if (update.weights.empty()) {
    return absl::InvalidArgumentError(
        "PushUpdate: Update.base is set without Update.weights (the local model it is "
        "subtracted from)");
  }
  if (update.base.size() != update.weights.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PushUpdate: Update.weights has ", update.weights.size(), " floats and Update.base ",
        update.base.size(), update.base.empty()
                                ? ": set Update.base to the model the weights were trained "
                                  "from (the pulled Model::params); the server takes deltas"
                                : ""));
  }
  storage->resize(update.weights.size());
  for (size_t i = 0; i < storage->size(); ++i) (*storage)[i] = update.weights[i] - update.base[i];
  return absl::Span<const float>(*storage);
}

compress::DgcOptions DgcOptionsFrom(const DgcSettings& settings) {
  compress::DgcOptions options;
  options.momentum = settings.momentum;
  options.nesterov = settings.nesterov;
  options.momentum_masking = settings.momentum_masking;
  options.clip_norm = settings.clip_norm;
  options.compress_1d = settings.compress_1d;
  options.compress_ratio = settings.compress_ratio;
  options.warmup_steps = settings.warmup_steps;
  options.warmup_ratios = settings.warmup_ratios;
  options.half_values = settings.half_values;
  options.zstd = settings.zstd;
  options.zstd_level = settings.zstd_level;
  return options;
}

absl::Status ValidateEvaluationReport(const Task& task, uint64_t num_examples,
                                      const std::map<std::string, double>& metrics) {
  if (task.kind != Task::Kind::kEvaluate) {
    return absl::InvalidArgumentError("ReportEvaluation: the task is not an EVALUATE task");
  }
  if (num_examples == 0) {
    return absl::InvalidArgumentError("ReportEvaluation: num_examples must be > 0");
  }
  // The server's cap (limits.max_metric_names) is not known here; it
  // refuses a report over it with INVALID_ARGUMENT.
  if (absl::Status s = ValidateMetrics(metrics, metrics.size()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ReportEvaluation: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateClientOptions(const ClientOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("ClientOptions.target: must not be empty");
  }
  if (absl::Status s = ValidateClientId(options.client_id); !s.ok()) return s;
  if (options.chunk_bytes == 0) {
    return absl::InvalidArgumentError("ClientOptions.chunk_bytes: must be > 0");
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.max_attempts: must be >= 1, got ", options.max_attempts));
  }
  if (options.initial_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.initial_backoff: must be >= 0");
  }
  if (options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(
        "ClientOptions.max_backoff: must be >= ClientOptions.initial_backoff");
  }
  if (!(options.backoff_multiplier >= 1.0)) {
    return absl::InvalidArgumentError("ClientOptions.backoff_multiplier: must be >= 1");
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.call_timeout: must be > 0");
  }
  if (options.transfer_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.transfer_timeout: must be > 0");
  }
  if (options.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.connect_timeout: must be > 0");
  }
  if (absl::Status s = ValidateClientAttributes(options.attributes); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ClientOptions.attributes: ", s.message()));
  }
  for (const std::string& name : options.upload_codecs) {
    const compress::CodecInfo* info = compress::FindCodec(name);
    if (info == nullptr || info->id == compress::CodecId::kSpsa) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ClientOptions.upload_codecs: '", name,
          "' is not float32, float16, bfloat16, int8, qsgd, sign, topk or randk"));
    }
  }
  for (const std::string& name : options.download_codecs) {
    const compress::CodecInfo* info = compress::FindCodec(name);
    if (info == nullptr || info->seeded) {
      return absl::InvalidArgumentError(
          absl::StrCat("ClientOptions.download_codecs: '", name,
                       "' is not float32, float16, bfloat16, int8, sign or topk"));
    }
  }
  if (options.dgc.has_value()) {
    // The options alone, on a one-tensor model.
    auto dgc = compress::DgcCompressor::Create({{0, 1, 2}}, DgcOptionsFrom(*options.dgc));
    if (!dgc.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("ClientOptions.dgc: ", dgc.status().message()));
    }
  }
  if (options.local_dp.has_value()) {
    const LocalDpSettings& dp = *options.local_dp;
    if (absl::StatusOr<privacy::EpsilonAndOrder> e =
            privacy::LocalDpEpsilon(dp.noise_multiplier, dp.delta);
        !e.ok() || !(dp.clip_norm > 0) || !std::isfinite(dp.clip_norm) ||
        !privacy::NoiseSigmaLanes(dp.noise_multiplier, dp.clip_norm, 1).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ClientOptions.local_dp: clip_norm (", dp.clip_norm, ") and noise_multiplier (",
          dp.noise_multiplier, ") must be > 0 with their product at most about 1024, delta (",
          dp.delta, ") in (0, 1)"));
    }
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "ClientOptions.tls_cert_file and tls_key_file: set both or neither");
  }
  if (options.tls_ca_file.empty() &&
      (!options.tls_cert_file.empty() || !options.auth_token.empty() ||
       !options.tls_server_name.empty())) {
    return absl::InvalidArgumentError(
        "ClientOptions.tls_ca_file: client certificates, tokens and tls_server_name need TLS");
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> EffectiveChunkBytes(size_t requested, uint32_t server_max) {
  size_t bytes = requested;
  if (server_max > 0) bytes = std::min<size_t>(bytes, server_max);
  bytes -= bytes % sizeof(float);
  if (bytes == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("chunk size too small: ClientOptions.chunk_bytes=", requested,
                     ", server max_chunk_bytes=", server_max, "; need at least 4 bytes"));
  }
  return bytes;
}

}  // namespace client_internal
}  // namespace tally
