#include "sim/attacks.h"

#include <cmath>
#include <limits>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tally::sim {

namespace {

constexpr Attack kAllAttacks[] = {Attack::kNone,  Attack::kSignFlip, Attack::kScaling,
                                  Attack::kGaussian, Attack::kAlie, Attack::kIpm,
                                  Attack::kLabelFlip, Attack::kNan};

}  // namespace

absl::string_view AttackName(Attack attack) {
  switch (attack) {
    case Attack::kNone: return "none";
    case Attack::kSignFlip: return "sign_flip";
    case Attack::kScaling: return "scaling";
    case Attack::kGaussian: return "gaussian";
    case Attack::kAlie: return "alie";
    case Attack::kIpm: return "ipm";
    case Attack::kLabelFlip: return "label_flip";
    case Attack::kNan: return "nan";
  }
  return "unknown";
}

std::vector<std::string> AttackNames() {
  std::vector<std::string> names;
  for (Attack attack : kAllAttacks) names.emplace_back(AttackName(attack));
  return names;
}

absl::StatusOr<Attack> ParseAttack(absl::string_view name) {
  for (Attack attack : kAllAttacks) {
    if (AttackName(attack) == name) return attack;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown attack '", name,
                                                 "'; known: ", absl::StrJoin(AttackNames(), ", ")));
}

absl::StatusOr<DeltaStats> ComputeDeltaStats(absl::Span<const std::vector<float>> rows) {
  if (rows.empty()) return absl::InvalidArgumentError("no rows to estimate statistics from");
  const size_t d = rows[0].size();
  for (const std::vector<float>& row : rows) {
    if (row.size() != d) return absl::InvalidArgumentError("rows of different lengths");
  }
  DeltaStats stats;
  stats.mean.resize(d);
  stats.stddev.resize(d);
  const double n = static_cast<double>(rows.size());
  for (size_t j = 0; j < d; ++j) {
    double sum = 0;
    for (const std::vector<float>& row : rows) sum += row[j];
    const double mean = sum / n;
    double sq = 0;
    for (const std::vector<float>& row : rows) sq += (row[j] - mean) * (row[j] - mean);
    stats.mean[j] = static_cast<float>(mean);
    stats.stddev[j] = static_cast<float>(std::sqrt(sq / n));
  }
  return stats;
}

double InverseNormalCdf(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    const double cdf = 0.5 * std::erfc(-mid / std::sqrt(2.0));
    (cdf < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double AlieZ(int num_clients, int num_byzantine) {
  if (num_clients < 1 || num_byzantine < 1) return 1.0;
  const int s = num_clients / 2 + 1 - num_byzantine;
  const double p = static_cast<double>(num_clients - s) / num_clients;
  if (!(p > 0 && p < 1)) return 1.0;
  return InverseNormalCdf(p);
}

bool AttackNeedsStats(Attack attack) { return attack == Attack::kAlie || attack == Attack::kIpm; }

bool AttackFlipsLabels(Attack attack) { return attack == Attack::kLabelFlip; }

Dataset FlipLabels(const Dataset& data) {
  Dataset flipped = data;
  for (int& label : flipped.labels) label = data.num_classes - 1 - label;
  return flipped;
}

absl::StatusOr<std::vector<float>> ApplyAttack(Attack attack, const AttackOptions& options,
                                               absl::Span<const float> honest,
                                               const DeltaStats* stats, uint64_t seed) {
  std::vector<float> out(honest.begin(), honest.end());
  if (AttackNeedsStats(attack)) {
    if (stats == nullptr || stats->mean.size() != honest.size() ||
        stats->stddev.size() != honest.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AttackName(attack), " needs honest mean/std of the delta's size"));
    }
  }
  switch (attack) {
    case Attack::kNone:
    case Attack::kLabelFlip:  // The damage was done in training.
      break;
    case Attack::kSignFlip:
      for (float& x : out) x = -x;
      break;
    case Attack::kScaling:
      for (float& x : out) x = static_cast<float>(options.scale * x);
      break;
    case Attack::kGaussian: {
      std::mt19937_64 rng(seed);
      std::normal_distribution<double> noise(0.0, options.sigma);
      for (float& x : out) x = static_cast<float>(noise(rng));
      break;
    }
    case Attack::kAlie: {
      const double z = options.alie_z != 0 ? options.alie_z
                                           : AlieZ(options.num_clients, options.num_byzantine);
      for (size_t j = 0; j < out.size(); ++j) {
        out[j] = static_cast<float>(stats->mean[j] - z * stats->stddev[j]);
      }
      break;
    }
    case Attack::kIpm:
      for (size_t j = 0; j < out.size(); ++j) {
        out[j] = static_cast<float>(-options.ipm_epsilon * stats->mean[j]);
      }
      break;
    case Attack::kNan:
      if (!out.empty()) out[0] = std::numeric_limits<float>::quiet_NaN();
      break;
  }
  return out;
}

}  // namespace tally::sim
