// Per-round client settings (docs/workflow.md#per-round-config): a value per
// name as a function of the round, sent to clients in every task. Pure
// functions; thread-safe.
#ifndef TALLY_CORE_CONFIG_SCHEDULE_H_
#define TALLY_CORE_CONFIG_SCHEDULE_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "absl/status/status.h"

namespace tally {

// A setting's value in one round: a number or a string.
using ConfigScalar = std::variant<double, std::string>;

// One schedule. With t = r - 1, the rounds completed before round r (r >= 1):
//   kConstant:  number
//   kText:      text
//   kStepDecay: initial * gamma^floor(t / step_rounds)
//   kCosine:    min + (max - min) * (1 + cos(pi * min(t, rounds) / rounds)) / 2
struct ConfigScheduleSpec {
  enum class Kind { kConstant, kText, kStepDecay, kCosine };
  Kind kind = Kind::kConstant;
  double number = 0.0;  // kConstant.
  std::string text;     // kText.
  double initial = 0.0;  // kStepDecay.
  double gamma = 1.0;
  uint64_t step_rounds = 1;
  double max = 0.0;  // kCosine.
  double min = 0.0;
  uint64_t rounds = 1;
};

// OK, or INVALID_ARGUMENT saying which parameter of `name`'s schedule is
// wrong: numbers must be finite, gamma > 0, step_rounds and rounds >= 1,
// text at most 256 bytes. Names: 1..64 bytes of [A-Za-z0-9._-].
absl::Status ValidateConfigSchedule(const std::string& name, const ConfigScheduleSpec& spec);

// The value of `spec` in round `round` (1-based; round 0 is taken as 1).
ConfigScalar ConfigValueAt(const ConfigScheduleSpec& spec, uint64_t round);

// Every schedule evaluated for `round`.
std::map<std::string, ConfigScalar> ConfigValuesAt(
    const std::map<std::string, ConfigScheduleSpec>& schedules, uint64_t round);

}  // namespace tally

#endif  // TALLY_CORE_CONFIG_SCHEDULE_H_
