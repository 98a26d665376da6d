// PrivacyParams: privacy { } of the ServerConfig with its defaults, as the
// typed plan carries it (server/plan.h; no protos). Made by
// PrivacyParamsFromConfig (server/privacy_config.h); docs/privacy.md.
#ifndef TALLY_SERVER_PRIVACY_PARAMS_H_
#define TALLY_SERVER_PRIVACY_PARAMS_H_

#include <cstdint>

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
}  // namespace tally::server

#endif  // TALLY_SERVER_PRIVACY_PARAMS_H_
