#include "core/privacy/ledger.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tally::privacy {
namespace {

constexpr char kMagic[] = "TPL1";
constexpr uint32_t kMaxRuns = 1u << 20;

std::vector<int> AllOrders() {
  std::vector<int> orders;
  for (int a = kMinOrder; a <= kMaxOrder; ++a) orders.push_back(a);
  return orders;
}

template <typename T>
void Put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // Little-endian hosts only (as the checkpoint).
  out.append(bytes, sizeof(T));
}

template <typename T>
bool Get(absl::string_view& in, T* value) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(value, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}

}  // namespace

absl::StatusOr<PrivacyLedger> PrivacyLedger::Create(double delta, double target_epsilon) {
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  if (!(target_epsilon >= 0) || !std::isfinite(target_epsilon)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target_epsilon must be finite and >= 0, got ", target_epsilon));
  }
  PrivacyLedger ledger(delta, target_epsilon);
  ledger.rdp_.assign(kMaxOrder - kMinOrder + 1, 0.0);
  return ledger;
}

void PrivacyLedger::AddRun(const GaussianSteps& run) {
  for (int a = kMinOrder; a <= kMaxOrder; ++a) {
    rdp_[a - kMinOrder] += static_cast<double>(run.count) *
                           SampledGaussianRdp(run.sampling_rate, run.noise_multiplier, a);
  }
  steps_ += run.count;
  if (!runs_.empty() && runs_.back().sampling_rate == run.sampling_rate &&
      runs_.back().noise_multiplier == run.noise_multiplier) {
    runs_.back().count += run.count;
  } else {
    runs_.push_back(run);
  }
}

absl::Status PrivacyLedger::Charge(double q, double z) {
  const GaussianSteps step{q, z, 1};
  TALLY_RETURN_IF_ERROR(ValidateSteps(step));
  AddRun(step);
  return absl::OkStatus();
}

absl::Status PrivacyLedger::SetTargetEpsilon(double target_epsilon) {
  if (!std::isfinite(target_epsilon) || target_epsilon < 0) {
    return absl::InvalidArgumentError("privacy ledger: target_epsilon must be finite and >= 0");
  }
  target_epsilon_ = target_epsilon;
  return absl::OkStatus();
}

EpsilonAndOrder PrivacyLedger::Spent() const {
  if (steps_ == 0) return {0, kMinOrder};
  // Valid by construction (orders >= 2, RDP >= 0, delta in (0, 1)).
  return *EpsilonFromRdp(AllOrders(), rdp_, delta_);
}

absl::StatusOr<EpsilonAndOrder> PrivacyLedger::SpentAfter(double q, double z) const {
  const GaussianSteps step{q, z, 1};
  TALLY_RETURN_IF_ERROR(ValidateSteps(step));
  std::vector<double> rdp = rdp_;
  for (int a = kMinOrder; a <= kMaxOrder; ++a) rdp[a - kMinOrder] += SampledGaussianRdp(q, z, a);
  return EpsilonFromRdp(AllOrders(), rdp, delta_);
}

absl::StatusOr<bool> PrivacyLedger::CanCharge(double q, double z) const {
  TALLY_ASSIGN_OR_RETURN(EpsilonAndOrder after, SpentAfter(q, z));
  return target_epsilon_ == 0 || after.epsilon <= target_epsilon_;
}

std::string PrivacyLedger::Serialize() const {
  std::string out(kMagic, 4);
  Put(out, delta_);
  Put(out, target_epsilon_);
  Put(out, static_cast<uint32_t>(runs_.size()));
  for (const GaussianSteps& run : runs_) {
    Put(out, run.sampling_rate);
    Put(out, run.noise_multiplier);
    Put(out, run.count);
  }
  return out;
}

absl::StatusOr<PrivacyLedger> PrivacyLedger::Parse(absl::string_view in) {
  if (in.size() < 4 || in.substr(0, 4) != absl::string_view(kMagic, 4)) {
    return absl::InvalidArgumentError("privacy ledger: bad magic (not a ledger)");
  }
  in.remove_prefix(4);
  double delta = 0, target = 0;
  uint32_t runs = 0;
  if (!Get(in, &delta) || !Get(in, &target) || !Get(in, &runs)) {
    return absl::DataLossError("privacy ledger: truncated header");
  }
  TALLY_ASSIGN_OR_RETURN(PrivacyLedger ledger, Create(delta, target));
  if (runs > kMaxRuns) return absl::InvalidArgumentError("privacy ledger: too many runs");
  for (uint32_t i = 0; i < runs; ++i) {
    GaussianSteps run;
    if (!Get(in, &run.sampling_rate) || !Get(in, &run.noise_multiplier) || !Get(in, &run.count)) {
      return absl::DataLossError(absl::StrCat("privacy ledger: truncated at run ", i));
    }
    TALLY_RETURN_IF_ERROR(ValidateSteps(run));
    ledger.AddRun(run);
  }
  if (!in.empty()) return absl::InvalidArgumentError("privacy ledger: trailing bytes");
  return ledger;
}

}  // namespace tally::privacy
