#include "core/config_schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tally {
namespace {

constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMaxTextBytes = 256;

absl::Status Bad(const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("client_config '", name, "': ", what));
}

absl::Status CheckFinite(const std::string& name, absl::string_view field, double value) {
  if (std::isfinite(value)) return absl::OkStatus();
  return Bad(name, absl::StrCat(field, " must be finite, got ", value));
}

}  // namespace

absl::Status ValidateConfigSchedule(const std::string& name, const ConfigScheduleSpec& spec) {
  if (name.empty() || name.size() > kMaxNameBytes ||
      !std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == '-';
      })) {
    return Bad(name, "names are 1..64 bytes of [A-Za-z0-9._-]");
  }
  switch (spec.kind) {
    case ConfigScheduleSpec::Kind::kConstant:
      return CheckFinite(name, "constant", spec.number);
    case ConfigScheduleSpec::Kind::kText:
      if (spec.text.size() > kMaxTextBytes) return Bad(name, "text is longer than 256 bytes");
      return absl::OkStatus();
    case ConfigScheduleSpec::Kind::kStepDecay:
      if (absl::Status s = CheckFinite(name, "step_decay.initial", spec.initial); !s.ok()) return s;
      if (!std::isfinite(spec.gamma) || spec.gamma <= 0) {
        return Bad(name, absl::StrCat("step_decay.gamma must be finite and > 0, got ", spec.gamma));
      }
      if (spec.step_rounds == 0) return Bad(name, "step_decay.step_rounds must be >= 1");
      return absl::OkStatus();
    case ConfigScheduleSpec::Kind::kCosine:
      if (absl::Status s = CheckFinite(name, "cosine.max", spec.max); !s.ok()) return s;
      if (absl::Status s = CheckFinite(name, "cosine.min", spec.min); !s.ok()) return s;
      if (spec.rounds == 0) return Bad(name, "cosine.rounds must be >= 1");
      return absl::OkStatus();
  }
  return Bad(name, "unknown schedule kind");
}

ConfigScalar ConfigValueAt(const ConfigScheduleSpec& spec, uint64_t round) {
  const uint64_t t = round == 0 ? 0 : round - 1;
  switch (spec.kind) {
    case ConfigScheduleSpec::Kind::kConstant:
      return spec.number;
    case ConfigScheduleSpec::Kind::kText:
      return spec.text;
    case ConfigScheduleSpec::Kind::kStepDecay:
      return spec.initial *
             std::pow(spec.gamma, static_cast<double>(t / std::max<uint64_t>(spec.step_rounds, 1)));
    case ConfigScheduleSpec::Kind::kCosine: {
      const double rounds = static_cast<double>(std::max<uint64_t>(spec.rounds, 1));
      const double progress = std::min(static_cast<double>(t), rounds) / rounds;
      return spec.min + (spec.max - spec.min) * (1.0 + std::cos(M_PI * progress)) / 2.0;
    }
  }
  return spec.number;
}

std::map<std::string, ConfigScalar> ConfigValuesAt(
    const std::map<std::string, ConfigScheduleSpec>& schedules, uint64_t round) {
  std::map<std::string, ConfigScalar> values;
  for (const auto& [name, spec] : schedules) values.emplace(name, ConfigValueAt(spec, round));
  return values;
}

}  // namespace tally
