#include "server/private_sink.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/privacy/mechanism.h"
#include "core/status_macros.h"
#include "server/log.h"

namespace tally::server {

PrivateSink::PrivateSink(Options options, RuleRunner rule)
    : options_(std::move(options)),
      store_(BufferedSink::Options{options_.num_params, options_.max_abs_value, /*robust=*/false,
                                   options_.pool},
             rule) {}

uint64_t PrivateSink::SumClipped(std::vector<std::vector<float>>& deltas, double clip_norm) {
  sum_.Reset(options_.num_params);
  uint64_t unclipped = 0;
  for (std::vector<float>& delta : deltas) {
    // Values were checked finite and within max_abs_value when received.
    const privacy::ClipResult clip = privacy::ClipToNorm(absl::MakeSpan(delta), clip_norm);
    if (!clip.clipped) ++unclipped;
    sum_.Add(0, delta.data(), delta.size(), /*weight=*/1);
    options_.pool->Give(std::move(delta));
  }
  return unclipped;
}

absl::StatusOr<double> PrivateSink::Divisor(const SinkBatch& batch) const {
  if (!options_.fedbuff) return static_cast<double>(options_.privacy->params().expected_clients);
  // FedBuff with constant staleness and equal weights (ValidatePrivacyConfig):
  // every coefficient is alpha / N.
  const double c = batch.updates.front().weight;
  for (const aggregators::WeightedUpdate& u : batch.updates) {
    if (u.weight != c || !(c > 0)) {
      return absl::InternalError("privacy: a FedBuff flush with unequal coefficients");
    }
  }
  return 1.0 / c;
}

absl::StatusOr<double> PrivateSink::NextClip(double clip_norm, uint64_t unclipped,
                                             uint64_t arrived) {
  const PrivacyParams& p = options_.privacy->params();
  if (!p.adaptive_clipping) return clip_norm;
  TALLY_ASSIGN_OR_RETURN(
      double fraction,
      privacy::NoisyUnclippedFraction(options_.privacy->random(), unclipped, arrived,
                                      p.expected_clients, p.clipped_count_stddev));
  return privacy::NextClipNorm(clip_norm, fraction, p.target_quantile, p.clip_learning_rate);
}

absl::StatusOr<std::vector<float>> PrivateSink::Noised(const SinkBatch& batch, double clip_norm,
                                                       uint64_t unclipped, uint64_t arrived) {
  PrivacyState& privacy = *options_.privacy;
  TALLY_ASSIGN_OR_RETURN(const double divisor, Divisor(batch));
  TALLY_ASSIGN_OR_RETURN(const uint64_t sigma,
                         privacy::NoiseSigmaLanes(privacy.params().update_noise_multiplier,
                                                  clip_norm, options_.num_params));
  TALLY_RETURN_IF_ERROR(privacy::AddNoiseToSum(privacy.random(), sigma, sum_));
  TALLY_ASSIGN_OR_RETURN(const double next_clip, NextClip(clip_norm, unclipped, arrived));
  privacy.ProposeClipNorm(next_clip);
  std::vector<float> next = options_.pool->Take();
  sum_.Extract(0, divisor, absl::MakeSpan(next));
  return next;
}

absl::StatusOr<std::vector<float>> PrivateSink::Combine(const SinkBatch& batch,
                                                        const BlockFn& block) {
  PrivacyState& privacy = *options_.privacy;
  if (privacy.random().insecure_test_seed()) {
    LogWarning(absl::StrCat("privacy: step ", batch.step, " noised from the INSECURE test seed (",
                            privacy::kInsecureTestSeedEnv, "): no privacy"));
  }
  std::vector<std::vector<float>> deltas = store_.TakeDeltas(batch);
  const uint64_t arrived = deltas.size();
  const double clip_norm = privacy.clip_norm();
  const uint64_t unclipped = SumClipped(deltas, clip_norm);
  absl::StatusOr<std::vector<float>> next = Noised(batch, clip_norm, unclipped, arrived);
  if (!next.ok()) {
    LogError(absl::StrCat("privacy step ", batch.step, ": ", next.status().message(),
                          "; model left unchanged"));
    return next.status();
  }
  LogInfo(absl::StrCat("privacy step ", batch.step, ": ", arrived, " update(s) clipped to C=",
                       clip_norm, " (", arrived - unclipped, " clipped)"));
  absl::Status applied = block(next->data(), 0, next->size());
  if (!applied.ok()) {
    options_.pool->Give(*std::move(next));
    return applied;
  }
  return next;
}

}  // namespace tally::server
