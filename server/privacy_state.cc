#include "server/privacy_state.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "server/log.h"

namespace tally::server {

absl::StatusOr<std::unique_ptr<PrivacyState>> PrivacyState::Create(
    const PrivacyParams& params, const PrivacyCheckpoint& restored,
    std::unique_ptr<privacy::RandomSource> random) {
  TALLY_ASSIGN_OR_RETURN(privacy::PrivacyLedger ledger,
                         privacy::PrivacyLedger::Create(params.delta, params.target_epsilon));
  double clip_norm = params.clip_norm;
  if (!restored.ledger.empty()) {
    TALLY_ASSIGN_OR_RETURN(ledger, privacy::PrivacyLedger::Parse(restored.ledger));
    if (ledger.delta() != params.delta) {
      return absl::FailedPreconditionError(absl::StrCat(
          "privacy.delta: the checkpoint's privacy ledger is kept at delta=", ledger.delta(),
          ", the config says ", params.delta, "; the epsilon already spent cannot be restated"));
    }
    // The configured budget applies to the checkpoint's charges.
    TALLY_RETURN_IF_ERROR(ledger.SetTargetEpsilon(params.target_epsilon));
    if (params.adaptive_clipping && restored.clip_norm > 0) clip_norm = restored.clip_norm;
  }
  return std::unique_ptr<PrivacyState>(
      new PrivacyState(params, std::move(ledger), clip_norm, std::move(random)));
}

double PrivacyState::clip_norm() const {
  tally::MutexLock lock(&mu_);
  return clip_norm_;
}

bool PrivacyState::CanChargeStep() const {
  tally::MutexLock lock(&mu_);
  absl::StatusOr<bool> can = ledger_.CanCharge(params_.sampling_rate, params_.noise_multiplier);
  return can.ok() && *can;
}

void PrivacyState::ProposeClipNorm(double next_clip_norm) {
  tally::MutexLock lock(&mu_);
  proposed_clip_norm_ = next_clip_norm;
}

void PrivacyState::StepPublished() {
  tally::MutexLock lock(&mu_);
  // (q, z) were validated at start (ValidatePrivacyConfig): Charge accepts them.
  absl::Status charged = ledger_.Charge(params_.sampling_rate, params_.noise_multiplier);
  if (!charged.ok()) LogError(absl::StrCat("privacy ledger: ", charged.message()));
  if (proposed_clip_norm_ > 0) clip_norm_ = proposed_clip_norm_;
  proposed_clip_norm_ = 0;
}

PrivacyProgress PrivacyState::Progress() const {
  tally::MutexLock lock(&mu_);
  const privacy::EpsilonAndOrder spent = ledger_.Spent();
  return PrivacyProgress{true,          spent.epsilon,           spent.order, ledger_.delta(),
                         ledger_.steps(), ledger_.target_epsilon(), clip_norm_};
}

PrivacyCheckpoint PrivacyState::Save() const {
  tally::MutexLock lock(&mu_);
  return PrivacyCheckpoint{ledger_.Serialize(), clip_norm_};
}

std::string PrivacyState::LogText() const {
  const PrivacyProgress p = Progress();
  return absl::StrFormat(" epsilon=%.6g (delta=%g, %d steps%s)", p.epsilon, p.delta, p.steps,
                         p.target_epsilon > 0 ? absl::StrFormat(", budget %g", p.target_epsilon)
                                              : std::string());
}

}  // namespace tally::server
