// The server's central-DP state (docs/privacy.md, "Server wiring"): the
// configured parameters, the privacy ledger (epsilon spent, the budget),
// the current clip norm (adaptive clipping moves it) and the noise's random
// source. Shared by the PrivateSink (clips and noises a batch) and the
// PrivacyDriver (charges each published step, ends the run when the next
// step would exceed the budget). Restored from and saved into checkpoints,
// so the epsilon spent never goes down across restarts.
//
// Thread-safe (one mutex; the random source is used by Combine only, on the
// worker thread).
#ifndef TALLY_SERVER_PRIVACY_STATE_H_
#define TALLY_SERVER_PRIVACY_STATE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/privacy/ledger.h"
#include "core/privacy/random_source.h"
#include "core/sync.h"
#include "server/checkpoint.h"
#include "server/coordinator_types.h"
#include "server/privacy_params.h"

namespace tally::server {



class PrivacyState {
 public:
  // `restored` from a checkpoint (empty ledger: a fresh run). A restored
  // ledger keeps its charges; its delta and budget become the configured
  // ones only if the configured delta is the same (else FAILED_PRECONDITION:
  // the epsilon of the past steps is not comparable).
  static absl::StatusOr<std::unique_ptr<PrivacyState>> Create(
      const PrivacyParams& params, const PrivacyCheckpoint& restored,
      std::unique_ptr<privacy::RandomSource> random);

  const PrivacyParams& params() const { return params_; }
  double clip_norm() const;
  // Whether one more step fits the budget (true without a budget).
  bool CanChargeStep() const;
  // The sink's clip norm for the next step (adaptive clipping), applied by
  // StepPublished.
  void ProposeClipNorm(double next_clip_norm);
  // A step was published: its charge; the proposed clip norm takes effect.
  void StepPublished();
  PrivacyProgress Progress() const;
  PrivacyCheckpoint Save() const;
  // " epsilon=E (delta=D, S steps)" for a round's log line.
  std::string LogText() const;

  // The noise's randomness (Combine, worker thread only).
  privacy::RandomSource& random() { return *random_; }

 private:
  PrivacyState(const PrivacyParams& params, privacy::PrivacyLedger ledger, double clip_norm,
               std::unique_ptr<privacy::RandomSource> random)
      : params_(params), random_(std::move(random)), ledger_(std::move(ledger)),
        clip_norm_(clip_norm) {}

  const PrivacyParams params_;
  std::unique_ptr<privacy::RandomSource> random_;
  mutable tally::Mutex mu_;
  privacy::PrivacyLedger ledger_ ABSL_GUARDED_BY(mu_);
  double clip_norm_ ABSL_GUARDED_BY(mu_);
  double proposed_clip_norm_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_PRIVACY_STATE_H_
