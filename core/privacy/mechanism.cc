#include "core/privacy/mechanism.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/privacy/discrete_gaussian.h"
#include "core/status_macros.h"

namespace tally::privacy {
namespace {

constexpr double kLaneScale = 0x1p40;  // 2^kExactFractionBits.
static_assert(kExactFractionBits == 40, "kLaneScale is 2^kExactFractionBits");
constexpr double kCountScale = 0x1p16;  // Grid of the clipped count's noise.

double NormOf(absl::Span<const float> x) {
  double sum = 0;
  for (float v : x) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

absl::StatusOr<uint64_t> SigmaOnGrid(double sigma) {
  const double s = std::ceil(sigma);
  if (!(s >= 1) || s > static_cast<double>(kMaxDiscreteSigma)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise standard deviation of ", sigma, " grid units is outside [1, 2^50]"));
  }
  return static_cast<uint64_t>(s);
}

}  // namespace

ClipResult ClipToNorm(absl::Span<float> update, double clip_norm) {
  ClipResult result;
  result.norm = NormOf(update);
  if (result.norm <= clip_norm) return result;
  result.clipped = true;
  result.scale = clip_norm / result.norm;
  std::vector<float> original(update.begin(), update.end());
  for (;;) {
    for (size_t j = 0; j < update.size(); ++j) {
      update[j] = static_cast<float>(original[j] * result.scale);
    }
    if (NormOf(update) <= clip_norm) return result;
    result.scale *= 1 - 0x1p-23;  // float32 rounding pushed it over C.
  }
}

double SumSensitivityLanes(double clip_norm, size_t dimension) {
  return clip_norm * kLaneScale + std::sqrt(static_cast<double>(dimension)) / 2;
}

absl::StatusOr<uint64_t> NoiseSigmaLanes(double noise_multiplier, double clip_norm,
                                         size_t dimension) {
  return SigmaOnGrid(noise_multiplier * SumSensitivityLanes(clip_norm, dimension));
}

absl::Status AddNoiseToSum(RandomSource& random, uint64_t sigma_lanes, ExactSum& sum) {
  std::vector<int64_t> noise(std::min(sum.size(), kExactBlockLanes));
  for (size_t offset = 0; offset < sum.size(); offset += noise.size()) {
    const size_t n = std::min(noise.size(), sum.size() - offset);
    TALLY_RETURN_IF_ERROR(SampleDiscreteGaussian(random, sigma_lanes, {noise.data(), n}));
    sum.AddIntegers(offset, noise.data(), n);
  }
  return absl::OkStatus();
}

absl::StatusOr<ClipResult> ApplyLocalDp(RandomSource& random, double clip_norm,
                                        double noise_multiplier, absl::Span<float> update) {
  if (!(clip_norm > 0) || !std::isfinite(clip_norm)) {
    return absl::InvalidArgumentError(absl::StrCat("clip_norm must be > 0, got ", clip_norm));
  }
  for (float v : update) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("the update is not finite");
  }
  TALLY_ASSIGN_OR_RETURN(uint64_t sigma,
                         NoiseSigmaLanes(noise_multiplier, clip_norm, update.size()));
  const ClipResult clip = ClipToNorm(update, clip_norm);
  std::vector<int64_t> noise(update.size());
  TALLY_RETURN_IF_ERROR(SampleDiscreteGaussian(random, sigma, absl::MakeSpan(noise)));
  for (size_t j = 0; j < update.size(); ++j) {
    const __int128 lane = static_cast<__int128>(QuantizeValue(update[j])) + noise[j];
    update[j] = static_cast<float>(static_cast<double>(lane) / kLaneScale);
  }
  return clip;
}

absl::StatusOr<EpsilonAndOrder> LocalDpEpsilon(double noise_multiplier, double delta) {
  if (!(noise_multiplier > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise_multiplier must be > 0, got ", noise_multiplier));
  }
  const GaussianSteps one{1.0, noise_multiplier / 2, 1};
  return ComputeEpsilon({&one, 1}, delta);
}

absl::StatusOr<double> UpdateNoiseMultiplier(double z, double sigma_b) {
  if (!(z > 0) || !(2 * sigma_b > z)) {
    return absl::InvalidArgumentError(
        absl::StrCat("adaptive clipping needs noise_multiplier > 0 and 2 * clipped_count_stddev > "
                     "noise_multiplier, got z = ",
                     z, ", sigma_b = ", sigma_b));
  }
  return 1 / std::sqrt(1 / (z * z) - 1 / (4 * sigma_b * sigma_b));
}

absl::StatusOr<double> NoisyUnclippedFraction(RandomSource& random, uint64_t unclipped,
                                              uint64_t arrived, double expected_clients,
                                              double clipped_count_stddev) {
  if (unclipped > arrived || !(expected_clients > 0)) {
    return absl::InvalidArgumentError("unclipped <= arrived and expected_clients > 0 required");
  }
  TALLY_ASSIGN_OR_RETURN(uint64_t sigma, SigmaOnGrid(2 * clipped_count_stddev * kCountScale));
  int64_t noise = 0;
  TALLY_RETURN_IF_ERROR(SampleDiscreteGaussian(random, sigma, {&noise, 1}));
  // sum_i (2 b_i - 1) = 2 unclipped - arrived, in 2^-16 units, plus noise.
  const double twice_centred =
      (2.0 * static_cast<double>(unclipped) - static_cast<double>(arrived)) +
      static_cast<double>(noise) / kCountScale;
  return twice_centred / 2 / expected_clients + 0.5;
}

double NextClipNorm(double clip_norm, double b, double gamma, double eta) {
  return clip_norm * std::exp(-eta * (b - gamma));
}

}  // namespace tally::privacy
