#include "proto/secagg_config.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "secagg/buckets.h"

namespace tally {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("secure_aggregation.", field, ": ", why));
}

}  // namespace

absl::StatusOr<SecAggSettings> SecAggSettingsFromProto(const v1::SecureAggregationConfig& c) {
  SecAggSettings s;
  s.enabled = c.enabled();
  if (c.bits() != 0) s.bits = static_cast<int>(c.bits());
  if (s.bits != 32 && s.bits != 64)
    return Invalid("bits", absl::StrCat(c.bits(), " is not 32 or 64"));
  if (c.clip() != 0) s.clip = c.clip();
  if (!(s.clip > 0) || !std::isfinite(s.clip)) {
    return Invalid("clip", absl::StrCat(c.clip(), " must be finite and positive"));
  }
  s.degree = c.degree();
  s.threshold = c.threshold();
  if (c.expected_dropout() != 0) s.expected_dropout = c.expected_dropout();
  if (c.corrupt_fraction() != 0) s.corrupt_fraction = c.corrupt_fraction();
  if (!(s.expected_dropout > 0 && s.expected_dropout < 0.5)) {
    return Invalid("expected_dropout", absl::StrCat(c.expected_dropout(), " outside (0, 0.5)"));
  }
  if (!(s.corrupt_fraction > 0 && s.corrupt_fraction < 0.5)) {
    return Invalid("corrupt_fraction", absl::StrCat(c.corrupt_fraction(), " outside (0, 0.5)"));
  }
  if (c.stage_timeout_ms() != 0) s.stage_timeout_ms = c.stage_timeout_ms();
  s.masked_input_timeout_ms = c.masked_input_timeout_ms();
  s.bucket_size = c.bucket_size();
  s.require_targets = c.require_targets();
  return s;
}

absl::StatusOr<secagg::SecAggParams> InstanceParams(const SecAggSettings& settings,
                                                    uint32_t num_clients, uint64_t vector_length,
                                                    uint64_t instance_id, bool* meets_targets) {
  secagg::SecAggParams p;
  p.instance_id = instance_id;
  p.num_clients = num_clients;
  p.bits = settings.bits;
  p.clip = settings.clip;
  p.vector_length = vector_length;
  p.degree = settings.degree;
  p.threshold = settings.threshold;
  *meets_targets = true;
  if (p.degree == 0 || p.threshold == 0) {
    absl::StatusOr<secagg::DefaultDegree> d =
        secagg::SecureDefaults(num_clients, settings.expected_dropout, settings.corrupt_fraction);
    if (!d.ok()) return Invalid("num_clients", d.status().message());
    if (p.degree == 0) p.degree = d->degree;
    if (p.threshold == 0) p.threshold = d->threshold;
    *meets_targets = d->meets_targets;
  }
  if (absl::Status s = secagg::ValidateParams(p); !s.ok()) return s;
  return p;
}

absl::Status ValidateSecureAggregation(const v1::ServerConfig& config) {
  absl::StatusOr<SecAggSettings> s = SecAggSettingsFromProto(config.secure_aggregation());
  if (!s.ok() || !s->enabled) return s.status();
  if (config.privacy().mode() == "central") {
    return Invalid("enabled", "privacy.mode \"central\" clips every update on the server, "
                              "which secure aggregation hides; use local DP in the SDKs "
                              "(docs/secure-aggregation.md#with-differential-privacy)");
  }
  const std::string& schedule = config.schedule().name();
  const std::string& rule = config.strategy().rule();
  const bool robust = !rule.empty() && rule != "mean";
  uint32_t round_clients = config.rounds().clients_per_round();
  if (round_clients == 0) round_clients = 20;  // RoundConfig's default.
  uint32_t instance = round_clients;
  if (schedule == "fedbuff") {
    instance = config.schedule().buffer_size() != 0 ? config.schedule().buffer_size() : 3;
    if (s->bucket_size != 0 || robust) {
      return Invalid("bucket_size", "buckets and robust rules are for schedule \"sync\"");
    }
  } else if (!schedule.empty() && schedule != "sync") {
    return Invalid("enabled", absl::StrCat("runs with schedule \"sync\" or \"fedbuff\", not \"",
                                           schedule, "\""));
  }
  if (s->bucket_size != 0) {
    absl::Status b = secagg::ValidateBucketing(round_clients, s->bucket_size,
                                               robust ? config.strategy().f() : 0);
    if (!b.ok()) return b;
    instance = s->bucket_size;
  } else if (robust) {
    return Invalid("bucket_size",
                   absl::StrCat("strategy.rule \"", rule,
                                "\" needs buckets: the server sees only sums, so set "
                                "bucket_size (or use rule \"mean\")"));
  }
  bool meets = true;
  absl::StatusOr<secagg::SecAggParams> p = InstanceParams(*s, instance, 1, 0, &meets);
  if (!p.ok()) return p.status();
  if (s->require_targets && !meets) {
    return Invalid(
        "require_targets",
        absl::StrCat("instances of ", instance,
                     " clients cannot meet the security targets of "
                     "docs/secure-aggregation.md#parameters with dropout ",
                     s->expected_dropout, " and corrupt fraction ", s->corrupt_fraction));
  }
  return absl::OkStatus();
}

}  // namespace tally
