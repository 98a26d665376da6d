// ServerConfig.secure_aggregation (proto/tally/v1/config.proto) read into
// secagg/ parameters, with its defaults and start-time validation
// (docs/secure-aggregation.md#configuration). Shared by the server's config
// check and, next, its secure-aggregation driver.
#ifndef TALLY_PROTO_SECAGG_CONFIG_H_
#define TALLY_PROTO_SECAGG_CONFIG_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "secagg/params.h"
#include "tally/v1/config.pb.h"

namespace tally {

// The config with its defaults applied.
struct SecAggSettings {
  bool enabled = false;
  int bits = 32;
  double clip = 1.0;
  uint32_t degree = 0;     // 0: SecureDefaults.
  uint32_t threshold = 0;  // 0: SecureDefaults.
  double expected_dropout = 0.1;
  double corrupt_fraction = 0.1;
  uint32_t stage_timeout_ms = 60000;
  uint32_t masked_input_timeout_ms = 0;  // 0: rounds.round_timeout_ms.
  uint32_t bucket_size = 0;
  bool require_targets = false;
};

// Defaults applied and ranges checked (INVALID_ARGUMENT naming the field).
absl::StatusOr<SecAggSettings> SecAggSettingsFromProto(const v1::SecureAggregationConfig& config);

// The parameters of one instance of n clients: the configured k and t, or
// secagg::SecureDefaults(n, dropout, corrupt) for those left at 0 (then
// *meets_targets tells whether the defaults meet the security targets;
// explicit values set it true). Validated (secagg::ValidateParams).
absl::StatusOr<secagg::SecAggParams> InstanceParams(const SecAggSettings& settings,
                                                    uint32_t num_clients, uint64_t vector_length,
                                                    uint64_t instance_id, bool* meets_targets);

// The start-time check of the whole secure-aggregation section against the
// rest of the config: no central DP (it clips each update on the server);
// schedule sync (instances of rounds.clients_per_round,
// or of bucket_size) or fedbuff (instances of buffer_size); rule "mean"
// without buckets; with buckets, f against the number of buckets
// (secagg::ValidateBucketing); k, t and clip valid for the instance size.
absl::Status ValidateSecureAggregation(const v1::ServerConfig& config);

}  // namespace tally

#endif  // TALLY_PROTO_SECAGG_CONFIG_H_
