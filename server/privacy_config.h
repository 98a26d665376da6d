// privacy { ... } of the ServerConfig (docs/privacy.md): its defaults, its
// validation (which strategies, schedules and options combine with DP, and
// why the others are refused), the epsilon a configured run will spend, and
// the local-DP declaration a client sends at Join.
//
// Pure functions on the config protos; thread-safe.
#ifndef TALLY_SERVER_PRIVACY_CONFIG_H_
#define TALLY_SERVER_PRIVACY_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {

// privacy { } with every default applied (config.proto documents them).
struct PrivacyParams {
  bool central = false;           // mode "central"; false: DP off, the rest unused.
  double clip_norm = 1.0;         // C (initial C with adaptive clipping).
  double noise_multiplier = 0.0;  // z, what the accountant charges per step.
  double target_epsilon = 0.0;    // 0: no budget.
  double delta = 1e-5;
  bool adaptive_clipping = false;
  double target_quantile = 0.5;       // gamma.
  double clip_learning_rate = 0.2;    // eta_C.
  double clipped_count_stddev = 0.0;  // sigma_b.
  double sampling_rate = 1.0;         // q.
  uint32_t expected_clients = 0;      // m.
  // z_Delta, the update's own noise multiplier: z without adaptive
  // clipping, (z^-2 - (2 sigma_b)^-2)^(-1/2) with it.
  double update_noise_multiplier = 0.0;
};

// The params of a defaulted config (ApplyDefaults has run). Call after
// ValidatePrivacyConfig: update_noise_multiplier is 0 if the adaptive
// parameters are invalid.
PrivacyParams PrivacyParamsFromConfig(const tally::v1::ServerConfig& config);

// INVALID_ARGUMENT starting with the field's name when privacy { } is
// invalid or combined with a strategy, schedule or mode that breaks the
// analysis (the message says why). OK when privacy is off and unset.
// Called by ValidateConfig (server/config.cc).
absl::Status ValidatePrivacyConfig(const tally::v1::ServerConfig& config);

// The epsilon a configured run spends (the ledger's accountant,
// core/privacy/ledger.h): rounds.total_rounds steps of (q, z), or, with a
// budget, as many as fit in it.
struct PlanEpsilon {
  bool bounded = false;            // false: total_rounds = 0 and no budget (runs forever).
  uint64_t steps = 0;              // Steps charged by the last round.
  double epsilon = 0;              // At params.delta after `steps` steps.
  int order = 0;                   // The RDP order that gives it.
  bool stopped_by_budget = false;  // The budget ends the run before total_rounds.
};
absl::StatusOr<PlanEpsilon> EpsilonForPlan(const tally::v1::ServerConfig& config);

// For --print_config: "" when privacy is off, else text-proto comment
// lines stating the plan's (epsilon, delta).
std::string PrivacyPlanComment(const tally::v1::ServerConfig& config);

// A Join's local_dp: INVALID_ARGUMENT naming the field unless clip_norm and
// noise_multiplier are finite and > 0, delta in (0, 1) and epsilon finite
// and >= 0 (an absent declaration, all zeros, is OK).
absl::Status ValidateLocalDpDeclaration(const tally::v1::LocalDpDeclaration& declaration);
// "local_dp{clip_norm=C noise_multiplier=Z epsilon=E delta=D}" or "" when absent,
// for the Join log line.
std::string LocalDpText(const tally::v1::LocalDpDeclaration& declaration);

}  // namespace tally::server

#endif  // TALLY_SERVER_PRIVACY_CONFIG_H_
