// PrivacyLedger: the epsilon a run has spent, from the steps charged so far
// (core/privacy/accountant.h), and whether one more step fits the budget
// (docs/privacy.md, "The ledger").
//
// A step is charged with its sampling rate q and noise multiplier z (with
// adaptive clipping: the total z, core/privacy/mechanism.h). Consecutive
// steps with the same (q, z) are kept as one run, so the state stays small
// for any number of rounds. The ledger only grows: there is no way to
// remove a charge, and Parse refuses bytes that are not a ledger.
// Serialize / Parse give the bytes the server's checkpoint stores.
//
// Thread-compatible.
#ifndef TALLY_CORE_PRIVACY_LEDGER_H_
#define TALLY_CORE_PRIVACY_LEDGER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/privacy/accountant.h"

namespace tally::privacy {

class PrivacyLedger {
 public:
  // delta in (0, 1); target_epsilon > 0, or 0 for no budget (CanCharge is
  // then always true). INVALID_ARGUMENT otherwise.
  static absl::StatusOr<PrivacyLedger> Create(double delta, double target_epsilon);

  // Records one step. INVALID_ARGUMENT for q or z out of range.
  absl::Status Charge(double sampling_rate, double noise_multiplier);

  // epsilon (and its order) of everything charged at delta(); 0 when
  // nothing was charged.
  EpsilonAndOrder Spent() const;
  // epsilon after charging one more step (q, z), without charging it.
  absl::StatusOr<EpsilonAndOrder> SpentAfter(double sampling_rate, double noise_multiplier) const;
  // Whether one more step (q, z) keeps epsilon <= target_epsilon.
  absl::StatusOr<bool> CanCharge(double sampling_rate, double noise_multiplier) const;

  // A new budget for the steps already charged (a restart with a changed
  // privacy.target_epsilon): the charges stay. INVALID_ARGUMENT unless
  // finite and >= 0 (0: no budget).
  absl::Status SetTargetEpsilon(double target_epsilon);

  uint64_t steps() const { return steps_; }
  double delta() const { return delta_; }
  double target_epsilon() const { return target_epsilon_; }
  const std::vector<GaussianSteps>& runs() const { return runs_; }

  // Little-endian: "TPL1", delta, target_epsilon (f64), number of runs
  // (u32), then per run q, z (f64) and count (u64).
  std::string Serialize() const;
  // INVALID_ARGUMENT (or DATA_LOSS for truncated bytes) naming what is wrong.
  static absl::StatusOr<PrivacyLedger> Parse(absl::string_view bytes);

 private:
  PrivacyLedger(double delta, double target_epsilon)
      : delta_(delta), target_epsilon_(target_epsilon) {}
  void AddRun(const GaussianSteps& run);

  double delta_;
  double target_epsilon_;
  std::vector<GaussianSteps> runs_;
  std::vector<double> rdp_;  // Composed RDP at orders kMinOrder .. kMaxOrder.
  uint64_t steps_ = 0;
};

}  // namespace tally::privacy

#endif  // TALLY_CORE_PRIVACY_LEDGER_H_
