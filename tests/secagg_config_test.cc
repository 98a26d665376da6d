// ServerConfig.secure_aggregation at start (proto/secagg_config.h through
// server/config.h's ValidateConfig): defaults, refusals naming the field, and
// instance parameters from the secure defaults.
#include "proto/secagg_config.h"

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

// The config as the server checks it: parsed, defaults applied, validated.
absl::Status Check(const std::string& text) {
  v1::ServerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  server::ApplyDefaults(&config);
  return server::ValidateConfig(config);
}

TEST(SecAggConfig, DisabledByDefaultAndDefaultsApplied) {
  EXPECT_THAT(Check(""), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(SecAggSettings s,
                             SecAggSettingsFromProto(v1::SecureAggregationConfig()));
  EXPECT_FALSE(s.enabled);
  EXPECT_EQ(s.bits, 32);
  EXPECT_EQ(s.clip, 1.0);
  EXPECT_EQ(s.stage_timeout_ms, 60000u);
}

TEST(SecAggConfig, ValidConfigurations) {
  EXPECT_THAT(Check("rounds { clients_per_round: 10 } "
                    "secure_aggregation { enabled: true clip: 4 }"),
              IsOk());
  EXPECT_THAT(Check("rounds { clients_per_round: 30 } strategy { rule: \"median\" f: 2 } "
                    "secure_aggregation { enabled: true bucket_size: 5 }"),
              IsOk());
  EXPECT_THAT(Check("schedule { name: \"fedbuff\" buffer_size: 8 } "
                    "secure_aggregation { enabled: true bits: 64 }"),
              IsOk());
}

TEST(SecAggConfig, RefusalsNameTheField) {
  EXPECT_THAT(Check("secure_aggregation { enabled: true bits: 16 }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("secure_aggregation.bits")));
  EXPECT_THAT(Check("strategy { rule: \"median\" f: 1 } "
                    "secure_aggregation { enabled: true }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bucket_size")));
  EXPECT_THAT(Check("rounds { clients_per_round: 30 } strategy { rule: \"median\" f: 3 } "
                    "secure_aggregation { enabled: true bucket_size: 5 }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("strategy.f")));
  EXPECT_THAT(Check("privacy { mode: \"central\" noise_multiplier: 1 } "
                    "secure_aggregation { enabled: true }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("central")));
  EXPECT_THAT(Check("schedule { name: \"fedasync\" } "
                    "secure_aggregation { enabled: true }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fedbuff")));
  EXPECT_THAT(Check("rounds { clients_per_round: 10 } secure_aggregation { "
                    "enabled: true degree: 4 threshold: 2 }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold")));
  EXPECT_THAT(Check("rounds { clients_per_round: 10 } secure_aggregation { "
                    "enabled: true require_targets: true }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("require_targets")));
}

TEST(SecAggConfig, InstanceParamsFromDefaults) {
  SecAggSettings s;
  bool meets = false;
  TALLY_ASSERT_OK_AND_ASSIGN(secagg::SecAggParams p, InstanceParams(s, 10, 100, 7, &meets));
  EXPECT_FALSE(meets);  // Ten clients: the complete graph.
  EXPECT_EQ(p.degree, 9u);
  EXPECT_EQ(p.threshold, 5u);  // floor(1.1 * 9 / 2) + 1.
  TALLY_ASSERT_OK_AND_ASSIGN(p, InstanceParams(s, 5000, 100, 7, &meets));
  EXPECT_TRUE(meets);
  EXPECT_LT(p.degree, 5000u / 10);
}

}  // namespace
}  // namespace tally
