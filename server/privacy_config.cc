#include "server/privacy_config.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/privacy/accountant.h"
#include "core/privacy/mechanism.h"
#include "core/status_macros.h"
#include "server/config.h"

namespace tally::server {
namespace {

template <typename... Parts>
absl::Status Invalid(const Parts&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(parts...));
}

bool Finite(double x) { return std::isfinite(x); }

// Whether the server selects clients by Poisson sampling (each available
// client joins a round independently with probability q), the selection
// the accountant's amplification by sampling assumes, with coins an
// adversary cannot predict. First-come rounds give no such guarantee, and
// rounds.selection POISSON draws its coins from a hash of the configured
// sampling_seed (reproducible, so predictable): sampling_rate must stay 1
// until POISSON can draw from the CSPRNG (docs/privacy.md#selection-modes).
bool ServerSelectsByPoissonSampling(const tally::v1::ServerConfig& /*config*/) { return false; }

// Why a robust rule does not combine with DP (docs/privacy.md#combinations).
std::string RuleRefusal(const std::string& rule) {
  if (rule == "average") {
    return "it weights each update by the num_samples the client declares, so one client's "
           "influence has no bound; DP needs \"mean\" (every clipped update counts once)";
  }
  if (rule == "median" || rule == "trimmed_mean" || rule == "meamed" || rule == "bulyan") {
    return "it works coordinate by coordinate: its output lies in the box [-C, C]^d, whose L2 "
           "diameter 2C sqrt(d) is the only sensitivity bound, far too large to be useful";
  }
  return "its output is not a sum of clipped updates: one client changes which updates are "
         "kept or how they are weighted, so the only bound is the output's range (diameter "
         "2C), about 2m times the noise the mean needs; tally's noise goes on a sum";
}

absl::Status ValidateCombination(const tally::v1::ServerConfig& config) {
  const tally::v1::StrategyConfig& strategy = config.strategy();
  if (IsRobustStrategy(strategy)) {
    return Invalid("strategy.rule: \"", strategy.rule(),
                   "\" cannot be used with privacy: ", RuleRefusal(strategy.rule()));
  }
  const tally::v1::ScheduleConfig& schedule = config.schedule();
  if (schedule.name() == "fedbuff") {
    if (schedule.staleness().name() != "constant") {
      return Invalid(
          "schedule.staleness: privacy with fedbuff needs \"constant\": the noise "
          "goes on the buffer's integer sum, which staleness weights would make "
          "fractional");
    }
    if (schedule.client_weights() != "equal") {
      return Invalid(
          "schedule.client_weights: privacy needs \"equal\" (sample_size weights "
          "come from what clients declare: no sensitivity bound)");
    }
  } else if (IsAsyncSchedule(schedule)) {
    return Invalid("schedule.name: \"", schedule.name(),
                   "\" cannot be used with privacy (sync and fedbuff can): ",
                   schedule.name() == "fedasync"
                       ? "each update is applied alone, with noise z C on every single update"
                       : "its steps mix updates by windows or groups whose size the clients' "
                         "timing decides, so no fixed denominator exists");
  }
  if (!config.relay().upstream().empty()) {
    return Invalid(
        "relay: privacy runs on the server that sees each client's update (it "
        "clips them); a relay forwards sums");
  }
  return absl::OkStatus();
}

absl::Status ValidateAdaptive(const PrivacyParams& p) {
  if (!(p.target_quantile > 0 && p.target_quantile < 1)) {
    return Invalid("privacy.target_quantile: ", p.target_quantile, " must be in (0, 1)");
  }
  if (!(p.clip_learning_rate > 0) || !Finite(p.clip_learning_rate)) {
    return Invalid("privacy.clip_learning_rate: ", p.clip_learning_rate, " must be > 0");
  }
  if (absl::StatusOr<double> z =
          privacy::UpdateNoiseMultiplier(p.noise_multiplier, p.clipped_count_stddev);
      !z.ok()) {
    return Invalid("privacy.clipped_count_stddev: ", z.status().message());
  }
  return absl::OkStatus();
}

// The largest T <= limit with epsilon(T steps) <= target (0 if none), by
// doubling then bisection (epsilon grows with T).
uint64_t StepsWithinBudget(const std::vector<int>& orders, const std::vector<double>& one,
                           double delta, double target, uint64_t limit) {
  auto fits = [&](uint64_t t) {
    std::vector<double> rdp(one.size());
    for (size_t i = 0; i < one.size(); ++i) rdp[i] = static_cast<double>(t) * one[i];
    return privacy::EpsilonFromRdp(orders, rdp, delta)->epsilon <= target;
  };
  if (!fits(1)) return 0;
  uint64_t good = 1, bad = 2;
  while (bad <= limit && fits(bad)) {
    good = bad;
    bad *= 2;
  }
  if (bad > limit) {
    if (fits(limit)) return limit;
    bad = limit;
  }
  while (bad - good > 1) {
    const uint64_t mid = good + (bad - good) / 2;
    (fits(mid) ? good : bad) = mid;
  }
  return good;
}

}  // namespace

PrivacyParams PrivacyParamsFromConfig(const tally::v1::ServerConfig& config) {
  const tally::v1::PrivacyConfig& c = config.privacy();
  PrivacyParams p;
  p.central = c.mode() == "central";
  if (c.has_clip_norm()) p.clip_norm = c.clip_norm();
  p.noise_multiplier = c.noise_multiplier();
  p.target_epsilon = c.target_epsilon();
  if (c.has_delta()) p.delta = c.delta();
  p.adaptive_clipping = c.adaptive_clipping();
  if (c.has_target_quantile()) p.target_quantile = c.target_quantile();
  if (c.has_clip_learning_rate()) p.clip_learning_rate = c.clip_learning_rate();
  if (c.has_sampling_rate()) p.sampling_rate = c.sampling_rate();
  p.expected_clients = c.expected_clients();
  if (p.expected_clients == 0) {
    p.expected_clients = config.schedule().name() == "fedbuff"
                             ? config.schedule().buffer_size()
                             : config.rounds().clients_per_round();
  }
  p.clipped_count_stddev =
      c.clipped_count_stddev() != 0 ? c.clipped_count_stddev() : p.expected_clients / 20.0;
  p.update_noise_multiplier = p.noise_multiplier;
  if (p.adaptive_clipping) {
    absl::StatusOr<double> z =
        privacy::UpdateNoiseMultiplier(p.noise_multiplier, p.clipped_count_stddev);
    p.update_noise_multiplier = z.ok() ? *z : 0.0;
  }
  return p;
}

absl::Status ValidatePrivacyConfig(const tally::v1::ServerConfig& config) {
  const tally::v1::PrivacyConfig& c = config.privacy();
  if (c.mode() != "" && c.mode() != "off" && c.mode() != "central") {
    return Invalid("privacy.mode: '", c.mode(), "' is not off or central");
  }
  const PrivacyParams p = PrivacyParamsFromConfig(config);
  if (!p.central) {
    tally::v1::PrivacyConfig rest = c;
    rest.clear_mode();
    if (rest.ByteSizeLong() != 0) {
      return Invalid(
          "privacy.mode: privacy fields are set but mode is off; set mode: "
          "\"central\" (or remove them)");
    }
    return absl::OkStatus();
  }
  if (!(p.noise_multiplier > 0) || !Finite(p.noise_multiplier)) {
    return Invalid("privacy.noise_multiplier: ", p.noise_multiplier,
                   " must be > 0 (tally privacy --target_epsilon=E finds one)");
  }
  if (!(p.clip_norm > 0) || !Finite(p.clip_norm)) {
    return Invalid("privacy.clip_norm: ", p.clip_norm, " must be > 0");
  }
  if (!(p.delta > 0 && p.delta < 1))
    return Invalid("privacy.delta: ", p.delta, " must be in (0, 1)");
  if (!(p.target_epsilon >= 0) || !Finite(p.target_epsilon)) {
    return Invalid("privacy.target_epsilon: ", p.target_epsilon, " must be >= 0");
  }
  if (p.target_epsilon > 0 && config.checkpoint_dir().empty()) {
    return Invalid(
        "privacy.target_epsilon: a budget needs checkpoint_dir (the epsilon spent "
        "must survive restarts)");
  }
  if (!(p.sampling_rate > 0 && p.sampling_rate <= 1)) {
    return Invalid("privacy.sampling_rate: ", p.sampling_rate, " must be in (0, 1]");
  }
  if (p.sampling_rate < 1 && !ServerSelectsByPoissonSampling(config)) {
    return Invalid("privacy.sampling_rate: ", p.sampling_rate,
                   " < 1 claims amplification by Poisson sampling, but this server selects the "
                   "first clients to ask; leave it at 1 (docs/privacy.md#selection-modes)");
  }
  if (p.expected_clients == 0) return Invalid("privacy.expected_clients: must be >= 1");
  if (p.adaptive_clipping) TALLY_RETURN_IF_ERROR(ValidateAdaptive(p));
  TALLY_RETURN_IF_ERROR(ValidateCombination(config));
  TALLY_ASSIGN_OR_RETURN(ModelLayout layout, LayoutFromConfig(config.model()));
  if (absl::StatusOr<uint64_t> sigma =
          privacy::NoiseSigmaLanes(p.update_noise_multiplier, p.clip_norm, layout.NumParams());
      !sigma.ok()) {
    return Invalid(
        "privacy.noise_multiplier: z x clip_norm = ", p.update_noise_multiplier * p.clip_norm,
        " is outside the sampler's range: ", sigma.status().message());
  }
  TALLY_ASSIGN_OR_RETURN(PlanEpsilon plan, EpsilonForPlan(config));
  if (p.target_epsilon > 0 && plan.steps == 0) {
    return Invalid("privacy.target_epsilon: ", p.target_epsilon,
                   " is below what a single round spends; raise it or noise_multiplier");
  }
  return absl::OkStatus();
}

absl::StatusOr<PlanEpsilon> EpsilonForPlan(const tally::v1::ServerConfig& config) {
  const PrivacyParams p = PrivacyParamsFromConfig(config);
  if (!p.central) return absl::FailedPreconditionError("privacy.mode is not central");
  const privacy::GaussianSteps one{p.sampling_rate, p.noise_multiplier, 1};
  TALLY_ASSIGN_OR_RETURN(std::vector<double> rdp, privacy::ComposedRdp({&one, 1}));
  std::vector<int> orders(rdp.size());
  for (size_t i = 0; i < orders.size(); ++i) orders[i] = privacy::kMinOrder + static_cast<int>(i);
  PlanEpsilon plan;
  const uint64_t total = config.rounds().total_rounds();
  plan.bounded = total > 0 || p.target_epsilon > 0;
  plan.steps = total > 0 ? total : 1;
  if (p.target_epsilon > 0) {
    constexpr uint64_t kForever = uint64_t{1} << 40;
    const uint64_t fit =
        StepsWithinBudget(orders, rdp, p.delta, p.target_epsilon, total > 0 ? total : kForever);
    plan.stopped_by_budget = total == 0 || fit < total;
    plan.steps = fit;
  }
  for (double& r : rdp) r *= static_cast<double>(plan.steps);
  TALLY_ASSIGN_OR_RETURN(privacy::EpsilonAndOrder e, privacy::EpsilonFromRdp(orders, rdp, p.delta));
  if (plan.steps == 0) e = {0, privacy::kMinOrder};
  plan.epsilon = e.epsilon;
  plan.order = e.order;
  return plan;
}

std::string PrivacyPlanComment(const tally::v1::ServerConfig& config) {
  const PrivacyParams p = PrivacyParamsFromConfig(config);
  if (!p.central) return "";
  absl::StatusOr<PlanEpsilon> plan = EpsilonForPlan(config);
  if (!plan.ok()) return absl::StrCat("# privacy: ", plan.status().message(), "\n");
  std::string out = absl::StrFormat(
      "# privacy: central DP, noise_multiplier=%g clip_norm=%g sampling_rate=%g delta=%g\n",
      p.noise_multiplier, p.clip_norm, p.sampling_rate, p.delta);
  if (!plan->bounded) {
    absl::StrAppendFormat(&out,
                          "# privacy: no total_rounds and no target_epsilon: epsilon grows "
                          "without bound (one round: epsilon=%.6g)\n",
                          plan->epsilon);
  } else if (plan->stopped_by_budget) {
    absl::StrAppendFormat(&out,
                          "# privacy: target_epsilon=%g stops the run after %d rounds, at "
                          "epsilon=%.6g (order %d)\n",
                          p.target_epsilon, plan->steps, plan->epsilon, plan->order);
  } else {
    absl::StrAppendFormat(&out, "# privacy: epsilon=%.6g (order %d) by the last round (%d)\n",
                          plan->epsilon, plan->order, plan->steps);
  }
  return out;
}

absl::Status ValidateLocalDpDeclaration(const tally::v1::LocalDpDeclaration& d) {
  if (d.ByteSizeLong() == 0) return absl::OkStatus();
  if (!(d.clip_norm() > 0) || !Finite(d.clip_norm())) {
    return Invalid("local_dp.clip_norm: ", d.clip_norm(), " must be finite and > 0");
  }
  if (!(d.noise_multiplier() > 0) || !Finite(d.noise_multiplier())) {
    return Invalid("local_dp.noise_multiplier: ", d.noise_multiplier(), " must be finite and > 0");
  }
  if (!(d.delta() > 0 && d.delta() < 1)) {
    return Invalid("local_dp.delta: ", d.delta(), " must be in (0, 1)");
  }
  if (!(d.epsilon() >= 0) || !Finite(d.epsilon())) {
    return Invalid("local_dp.epsilon: ", d.epsilon(), " must be finite and >= 0");
  }
  return absl::OkStatus();
}

std::string LocalDpText(const tally::v1::LocalDpDeclaration& d) {
  if (d.ByteSizeLong() == 0) return "";
  return absl::StrFormat("local_dp{clip_norm=%g noise_multiplier=%g epsilon=%g delta=%g}",
                         d.clip_norm(), d.noise_multiplier(), d.epsilon(), d.delta());
}

}  // namespace tally::server
