// ServerConfig parsing, defaults and validation: every error names its field.
#include "server/config.h"

#include <cctype>
#include <fstream>
#include <utility>
#include <variant>
#include <vector>

#include "compress/codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/strategy_options.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ConfigTest, DefaultConfigIsValidAndMatchesTheDemo) {
  const tally::v1::ServerConfig config = DefaultConfig();
  EXPECT_THAT(ValidateConfig(config), IsOk());
  EXPECT_EQ(config.listen_address(), "0.0.0.0:50051");
  EXPECT_EQ(config.metrics_port(), 9464);
  EXPECT_EQ(config.rounds().clients_per_round(), 20u);
  EXPECT_EQ(config.optimizer().learning_rate(), 1.0);
  auto layout = LayoutFromConfig(config.model());
  ASSERT_THAT(layout, IsOk());
  EXPECT_EQ(layout->NumParams(), 32u * 10 + 10);
  // topk's worst case (DefaultUpdateLimitAdmitsEveryCodecsWorstCase): 2 +
  // 330 · (2 + 4) = 1982, in a zstd frame 1982 + 7 + 63 = 2052.
  EXPECT_EQ(config.limits().max_update_bytes(), 2052u);
}

// The example's model (examples/pytorch_digits.py: 64-32-10 MLP, d = 2410).
// Worst cases by hand, zstd bound b(s) = s + ⌊s/256⌋ + ⌊(131072 − s)/2048⌋
// (ZSTD_COMPRESSBOUND for s < 128 KiB):
//   float32 4d = 9640 → 9736;  float16, bfloat16 2d = 4820 → 4899;
//   int8 block 1: 4d + d = 12050 → 12155;
//   qsgd block 1, 32767 levels (16 bits): 4d + 2d = 14460 → 14572;
//   sign block 1: 4d + ⌈d/8⌉ = 9942 → 10039;
//   topk k = d: varint(2410) 2 + d · (varint(2409) 2 + 4) = 14462 → 14574;
//   randk k = d: 2 + 4d = 9642 → 9738;  spsa 1 pair: 12 → 75.
// The default limit is the largest, topk's 14574; DGC at ratio 1.0 (12052
// bytes, the issue's measurement) fits.
TEST(ConfigTest, DefaultUpdateLimitAdmitsEveryCodecsWorstCase) {
  auto config = ParseConfigText(R"pb(
    model {
      tensors {
        name: "0.weight"
        shape: [ 32, 64 ]
      }
      tensors {
        name: "0.bias"
        shape: [ 32 ]
      }
      tensors {
        name: "2.weight"
        shape: [ 10, 32 ]
      }
      tensors {
        name: "2.bias"
        shape: [ 10 ]
      }
    }
  )pb");
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  ASSERT_THAT(ValidateConfig(*config), IsOk());
  using compress::CodecId;
  const std::vector<std::pair<CodecId, size_t>> expected = {
      {CodecId::kFloat32, 9736}, {CodecId::kFloat16, 4899}, {CodecId::kBfloat16, 4899},
      {CodecId::kInt8, 12155},   {CodecId::kQsgd, 14572},   {CodecId::kSign, 10039},
      {CodecId::kTopK, 14574},   {CodecId::kRandK, 9738},   {CodecId::kSpsa, 75}};
  ASSERT_EQ(expected.size(), compress::AllCodecs().size());
  for (const auto& [id, bytes] : expected) {
    EXPECT_EQ(compress::WorstCaseEncodedBytes(id, 2410), bytes) << compress::FindCodec(id)->name;
    EXPECT_LE(bytes, config->limits().max_update_bytes());
  }
  EXPECT_EQ(config->limits().max_update_bytes(), 14574u);
  // spsa's size follows its configured pair limit: 4000 pairs, 48000 bytes
  // → b(48000) = 48000 + 187 + 40 = 48227, above topk's.
  config->mutable_limits()->set_max_update_bytes(0);
  auto* spsa = config->mutable_compression()->add_upload();
  spsa->set_codec("spsa");
  spsa->mutable_params()->set_k(4000);
  EXPECT_EQ(DefaultMaxUpdateBytes(*config, 2410), 48227u);
}

TEST(ConfigTest, ParsesTextProtoAndKeepsExplicitValues) {
  auto config = ParseConfigText(R"pb(
    listen_address: "127.0.0.1:0"
    model {
      tensors {
        name: "w"
        shape: [ 3, 4 ]
      }
    }
    rounds { clients_per_round: 5 min_clients: 3 }
    optimizer { learning_rate: 0.5 }
  )pb");
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(ValidateConfig(*config), IsOk());
  EXPECT_EQ(config->rounds().clients_per_round(), 5u);
  EXPECT_EQ(config->optimizer().learning_rate(), 0.5);
  EXPECT_EQ(config->optimizer().name(), "sgd");
  // d = 12: qsgd's worst case is the largest, 48 + 24 = 72 → 72 + 0 + 63.
  EXPECT_EQ(config->limits().max_update_bytes(), 135u);
}

TEST(ConfigTest, StrategyFlagInitAndSeedReachTheRuleOptions) {
  auto config = ParseConfigText(R"pb(
    strategy { rule: "flag" flag_r: 2 flag_init: "random" seed: 9 }
  )pb");
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(ValidateConfig(*config), IsOk());
  aggregators::RuleOptions options = RuleOptionsFromConfig(config->strategy(), "flag", 20);
  EXPECT_EQ(options.name, "flag");
  EXPECT_EQ(options.expected_n, 20u);
  EXPECT_EQ(options.seed, 9u);
  ASSERT_TRUE(std::holds_alternative<aggregators::FlagOptions>(options.settings));
  EXPECT_EQ(std::get<aggregators::FlagOptions>(options.settings).init, "random");
  EXPECT_EQ(std::get<aggregators::FlagOptions>(options.settings).r, 2);
  EXPECT_EQ(std::get<aggregators::FlagOptions>(
                RuleOptionsFromConfig(tally::v1::StrategyConfig(), "flag", 20).settings)
                .init,
            "deterministic");
}

// Each name gets its own settings from the strategy's fields: geometric
// median nu and iterations, centered clipping tau and clip_iterations,
// clipping clip_norm, bucketing bucket_size; f and seed for all of them.
TEST(ConfigTest, EachRuleGetsItsOwnSettingsFromTheStrategy) {
  auto config = ParseConfigText(R"pb(
    strategy {
      rule: "geometric_median" f: 1 seed: 4 nu: 0.5 iterations: 7 tau: 3 clip_iterations: 2
      clip_norm: 1.5 bucket_size: 3
    }
  )pb");
  ASSERT_THAT(config, IsOk());
  const tally::v1::StrategyConfig& s = config->strategy();
  const auto gm = RuleOptionsFromConfig(s, "geometric_median", 9);
  EXPECT_EQ(gm.f, 1u);
  EXPECT_EQ(gm.seed, 4u);
  ASSERT_TRUE(std::holds_alternative<aggregators::GeometricMedianOptions>(gm.settings));
  EXPECT_EQ(std::get<aggregators::GeometricMedianOptions>(gm.settings).nu, 0.5);
  EXPECT_EQ(std::get<aggregators::GeometricMedianOptions>(gm.settings).iterations, 7);
  const auto cc = RuleOptionsFromConfig(s, "centered_clipping", 9);
  ASSERT_TRUE(std::holds_alternative<aggregators::CenteredClippingOptions>(cc.settings));
  EXPECT_EQ(std::get<aggregators::CenteredClippingOptions>(cc.settings).tau, 3);
  EXPECT_EQ(std::get<aggregators::CenteredClippingOptions>(cc.settings).iterations, 2);
  const auto clipping = RuleOptionsFromConfig(s, "clipping", 9);
  ASSERT_TRUE(std::holds_alternative<aggregators::ClippingOptions>(clipping.settings));
  EXPECT_EQ(std::get<aggregators::ClippingOptions>(clipping.settings).clip_norm, 1.5);
  const auto bucketing = RuleOptionsFromConfig(s, "bucketing", 9);
  ASSERT_TRUE(std::holds_alternative<aggregators::BucketingOptions>(bucketing.settings));
  EXPECT_EQ(std::get<aggregators::BucketingOptions>(bucketing.settings).bucket_size, 3u);
  const auto krum = RuleOptionsFromConfig(s, "krum", 9);
  EXPECT_EQ(krum.f, 1u);
  EXPECT_TRUE(std::holds_alternative<aggregators::NoOptions>(krum.settings));
}

TEST(ConfigTest, FlagDefaultsAreROneAndMedianNormScale) {
  const auto defaults = std::get<aggregators::FlagOptions>(
      RuleOptionsFromConfig(tally::v1::StrategyConfig(), "flag", 10).settings);
  EXPECT_EQ(defaults.r, 1);
  EXPECT_EQ(defaults.scale, "median_norm");
  auto config = ParseConfigText(R"pb(strategy { rule: "flag" flag_scale: "reference" })pb");
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(ValidateConfig(*config), IsOk());
  EXPECT_EQ(
      std::get<aggregators::FlagOptions>(RuleOptionsFromConfig(config->strategy(), "flag", 10).settings)
          .scale,
      "reference");
}

// krum and bulyan mix with NNM unless told not to, other rules when told to,
// and NNM never runs twice.
TEST(ConfigTest, KrumAndBulyanRunNnmLastUnlessMixingIsOffOrNnmIsListed) {
  auto pre_steps = [](const std::string& text) {
    auto config = ParseConfigText(text);
    EXPECT_THAT(config, IsOk());
    ApplyDefaults(&*config);
    EXPECT_THAT(ValidateConfig(*config), IsOk());
    return PreStepNamesFromConfig(config->strategy());
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pre_steps(R"pb(strategy { rule: "krum" f: 1 })pb"), V({"nnm"}));
  EXPECT_EQ(pre_steps(R"pb(strategy { rule: "krum" f: 1 pre: "clipping" })pb"),
            V({"clipping", "nnm"}));
  EXPECT_EQ(pre_steps(R"pb(strategy { rule: "krum" f: 1 pre: "nnm" pre: "clipping" })pb"),
            V({"nnm", "clipping"}));
  EXPECT_EQ(pre_steps(R"pb(strategy { rule: "krum" f: 1 nnm_mixing: false })pb"), V());
  EXPECT_EQ(pre_steps(R"pb(strategy { rule: "multi_krum" f: 1 })pb"), V());
  EXPECT_EQ(pre_steps(R"pb(strategy { rule: "multi_krum" f: 1 nnm_mixing: true })pb"),
            V({"nnm"}));
  EXPECT_EQ(pre_steps(R"pb(rounds { clients_per_round: 7 } strategy { rule: "bulyan" f: 1 })pb"),
            V({"nnm"}));
  EXPECT_EQ(pre_steps(R"pb(rounds { clients_per_round: 7 }
                           strategy { rule: "bulyan" f: 1 nnm_mixing: false })pb"),
            V());
}

TEST(ConfigTest, MonnaWithATrustedClientIsValid) {
  auto config = ParseConfigText(R"pb(
    rounds { clients_per_round: 5 }
    strategy { rule: "monna" f: 2 trusted_client: "hospital-0" pre: "nnm" }
  )pb");
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(ValidateConfig(*config), IsOk());
  // The coordinator puts the trusted client's row first.
  EXPECT_EQ(
      std::get<aggregators::MonnaOptions>(RuleOptionsFromConfig(config->strategy(), "monna", 5).settings)
          .idx,
      0u);
}

TEST(ConfigTest, OptimizerLearningRateDefaultsByName) {
  auto config = ParseConfigText("optimizer { name: \"fedadam\" momentum: 0 }");
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  EXPECT_THAT(ValidateConfig(*config), IsOk());
  EXPECT_EQ(config->optimizer().learning_rate(), 0.1);
  const aggregators::OptimizerOptions options = OptimizerOptionsFromConfig(config->optimizer());
  EXPECT_EQ(options.momentum, 0.0);  // Explicit zero is kept, not defaulted.
  EXPECT_EQ(options.beta1, -1.0);    // Unset: the optimizer's default.
}

TEST(ConfigTest, SyntaxErrorsNameTheLine) {
  auto config = ParseConfigText("rounds {\n  clients_per_rund: 3\n}\n");
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("2:"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("clients_per_rund"));
}

TEST(ConfigTest, LoadConfigFileReportsMissingFile) {
  EXPECT_THAT(LoadConfigFile("/nonexistent/tally.textproto"),
              StatusIs(absl::StatusCode::kNotFound));
  const std::string path = ::testing::TempDir() + "/tally_config_test.textproto";
  std::ofstream(path) << "metrics_port: -1\n";
  auto config = LoadConfigFile(path);
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->metrics_port(), -1);
}

struct BadConfig {
  const char* text;
  const char* field;
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.field; }

class InvalidConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(InvalidConfigTest, FailsWithTheFieldName) {
  auto config = ParseConfigText(GetParam().text);
  ASSERT_THAT(config, IsOk());
  ApplyDefaults(&*config);
  absl::Status status = ValidateConfig(*config);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(status.message()), HasSubstr(GetParam().field));
}

INSTANTIATE_TEST_SUITE_P(
    Fields, InvalidConfigTest,
    ::testing::Values(
        BadConfig{"listen_address: \"nohostport\"", "listen_address"},
        BadConfig{"metrics_port: 70000", "metrics_port"},
        BadConfig{"model { tensors { name: \"w\" shape: 0 } }", "model.tensors.shape"},
        BadConfig{"model { tensors { name: \"w\" } tensors { name: \"w\" } }",
                  "model.tensors.name"},
        BadConfig{"model { init { scale: -1 } }", "model.init.scale"},
        BadConfig{"rounds { clients_per_round: 2 min_clients: 3 }", "rounds.min_clients"},
        BadConfig{"optimizer { name: \"adamw\" }", "optimizer.name"},
        BadConfig{"optimizer { learning_rate: -2 }", "optimizer.learning_rate"},
        BadConfig{"optimizer { name: \"fedadam\" beta2: 1.5 }", "optimizer.beta2"},
        BadConfig{"optimizer { name: \"fedavgm\" momentum: 1 }", "optimizer.momentum"},
        BadConfig{"rounds { clients_per_round: 5 } strategy { rule: \"krum\" f: 3 }",
                  "strategy.rule: krum: f=3 requires n > 2f, got n=5"},
        BadConfig{"strategy { rule: \"krumm\" }", "strategy.rule"},
        BadConfig{"strategy { rule: \"krum\" pre: \"nmm\" }", "strategy.pre"},
        BadConfig{"strategy { f: 1 }", "strategy.rule"},
        BadConfig{"strategy { rule: \"flag\" flag_init: \"bogus\" }", "flag_init"},
        BadConfig{"strategy { rule: \"flag\" flag_scale: \"bogus\" }", "flag_scale"},
        BadConfig{"strategy { rule: \"flag\" flag_r: -1 }", "strategy.rule: flag: r"},
        // MoNNA without a trusted client would trust whichever update came first.
        BadConfig{"strategy { rule: \"monna\" f: 1 }", "strategy.trusted_client"},
        BadConfig{"strategy { rule: \"monna\" f: 1 idx: 2 trusted_client: \"c\" }", "strategy.idx"},
        BadConfig{"strategy { rule: \"krum\" trusted_client: \"c\" }", "strategy.trusted_client"},
        BadConfig{"strategy { nnm_mixing: true }", "strategy.rule"},
        BadConfig{"strategy { rule: \"monna\" trusted_client: \"c\" pre: \"bucketing\" }",
                  "strategy.pre"},
        BadConfig{"schedule { name: \"fedbuff\" } strategy { rule: \"monna\" "
                  "trusted_client: \"c\" }",
                  "strategy.trusted_client"},
        BadConfig{"rounds { clients_per_round: 4 } strategy { rule: \"caf\" f: 2 }",
                  "strategy.rule: caf: f=2 requires n > 2f, got n=4"},
        BadConfig{"limits { max_chunk_bytes: 10 }", "limits.max_chunk_bytes"},
        BadConfig{"grpc { memory_bytes: 1000 }", "grpc.memory_bytes"},
        BadConfig{"limits { model_chunk_bytes: 1025 }", "limits.model_chunk_bytes"},
        BadConfig{"limits { max_update_bytes: 4 }", "limits.max_update_bytes"},
        BadConfig{"limits { max_abs_value: 5e6 }", "limits.max_abs_value"},
        BadConfig{"limits { max_abs_value: -1 }", "limits.max_abs_value"},
        BadConfig{"limits { max_num_samples: 1099511627777 }", "limits.max_num_samples"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) {
      std::string name;
      for (char c : std::string(info.param.field)) {
        if (c == ' ' || c == ':') break;  // The field name, before any message.
        name.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
      }
      return name + "_" + std::to_string(info.index);
    });

}  // namespace
}  // namespace tally::server
