// Per-round config schedules (core/config_schedule.h). Expected values are
// computed by hand from the formulas in docs/workflow.md#per-round-config,
// with t = round - 1.
#include "core/config_schedule.h"

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <variant>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

double Number(const ConfigScalar& value) { return std::get<double>(value); }

TEST(ConfigScheduleTest, ConstantAndTextAreTheSameEveryRound) {
  ConfigScheduleSpec constant;
  constant.number = 2;
  ConfigScheduleSpec text;
  text.kind = ConfigScheduleSpec::Kind::kText;
  text.text = "sgd";
  for (uint64_t round : {1, 2, 1000}) {
    EXPECT_EQ(Number(ConfigValueAt(constant, round)), 2.0);
    EXPECT_EQ(std::get<std::string>(ConfigValueAt(text, round)), "sgd");
  }
}

TEST(ConfigScheduleTest, StepDecayHalvesEveryTenRounds) {
  ConfigScheduleSpec spec;
  spec.kind = ConfigScheduleSpec::Kind::kStepDecay;
  spec.initial = 0.1;
  spec.gamma = 0.5;
  spec.step_rounds = 10;
  EXPECT_DOUBLE_EQ(Number(ConfigValueAt(spec, 1)), 0.1);    // t = 0
  EXPECT_DOUBLE_EQ(Number(ConfigValueAt(spec, 10)), 0.1);   // t = 9
  EXPECT_DOUBLE_EQ(Number(ConfigValueAt(spec, 11)), 0.05);  // t = 10
  EXPECT_DOUBLE_EQ(Number(ConfigValueAt(spec, 25)), 0.025); // t = 24: 0.1 * 0.5^2
  EXPECT_DOUBLE_EQ(Number(ConfigValueAt(spec, 0)), 0.1);    // Round 0 is taken as 1.
}

TEST(ConfigScheduleTest, CosineFromMaxToMin) {
  ConfigScheduleSpec spec;
  spec.kind = ConfigScheduleSpec::Kind::kCosine;
  spec.max = 0.1;
  spec.min = 0.001;
  spec.rounds = 40;
  EXPECT_DOUBLE_EQ(Number(ConfigValueAt(spec, 1)), 0.1);  // cos 0 = 1
  // t = T/2: cos(pi/2) = 0, so min + (max - min) / 2 = 0.0505.
  EXPECT_NEAR(Number(ConfigValueAt(spec, 21)), 0.0505, 1e-15);
  // t = T/4: (1 + cos(pi/4)) / 2 = 0.853553390593274, so 0.001 + 0.099 * it.
  EXPECT_NEAR(Number(ConfigValueAt(spec, 11)), 0.0855017856687341, 1e-15);
  // t = T and beyond: min.
  EXPECT_NEAR(Number(ConfigValueAt(spec, 41)), 0.001, 1e-15);
  EXPECT_NEAR(Number(ConfigValueAt(spec, 500)), 0.001, 1e-15);
}

TEST(ConfigScheduleTest, ValuesAtEvaluatesEveryName) {
  std::map<std::string, ConfigScheduleSpec> schedules;
  schedules["epochs"].number = 3;
  ConfigScheduleSpec& lr = schedules["lr"];
  lr.kind = ConfigScheduleSpec::Kind::kStepDecay;
  lr.initial = 1;
  lr.gamma = 0.1;
  lr.step_rounds = 1;
  const std::map<std::string, ConfigScalar> values = ConfigValuesAt(schedules, 3);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(Number(values.at("epochs")), 3.0);
  EXPECT_DOUBLE_EQ(Number(values.at("lr")), 0.01);  // 1 * 0.1^2
}

TEST(ConfigScheduleTest, ValidationNamesTheParameter) {
  ConfigScheduleSpec spec;
  EXPECT_THAT(ValidateConfigSchedule("lr", spec), IsOk());
  EXPECT_THAT(ValidateConfigSchedule("", spec), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateConfigSchedule("l r", spec), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateConfigSchedule(std::string(65, 'a'), spec),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateConfigSchedule(std::string(64, 'a'), spec), IsOk());
  spec.number = std::numeric_limits<double>::infinity();
  EXPECT_THAT(ValidateConfigSchedule("lr", spec).message(), HasSubstr("constant must be finite"));

  ConfigScheduleSpec step;
  step.kind = ConfigScheduleSpec::Kind::kStepDecay;
  step.initial = 0.1;
  step.gamma = 0;
  EXPECT_THAT(ValidateConfigSchedule("lr", step).message(), HasSubstr("step_decay.gamma"));
  step.gamma = 0.5;
  step.step_rounds = 0;
  EXPECT_THAT(ValidateConfigSchedule("lr", step).message(), HasSubstr("step_decay.step_rounds"));

  ConfigScheduleSpec cosine;
  cosine.kind = ConfigScheduleSpec::Kind::kCosine;
  cosine.rounds = 0;
  EXPECT_THAT(ValidateConfigSchedule("lr", cosine).message(), HasSubstr("cosine.rounds"));
  cosine.rounds = 5;
  cosine.min = std::nan("");
  EXPECT_THAT(ValidateConfigSchedule("lr", cosine).message(), HasSubstr("cosine.min"));

  ConfigScheduleSpec text;
  text.kind = ConfigScheduleSpec::Kind::kText;
  text.text = std::string(257, 'x');
  EXPECT_THAT(ValidateConfigSchedule("opt", text), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally
