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
#include "server/privacy_params.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {


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
