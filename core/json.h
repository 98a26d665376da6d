// A small JSON reader and the string quoting of JSON writers, for the
// project's own JSON files (the run history, core/run_history.h; the
// safetensors header). Objects keep their keys in order; numbers are
// doubles (integers up to 2^53 exactly). Stateless functions; thread-safe.
#ifndef TALLY_CORE_JSON_H_
#define TALLY_CORE_JSON_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tally {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;

  // The member named `key` of an object, or nullptr.
  const JsonValue* Find(absl::string_view key) const;
};

// Parses one JSON text (RFC 8259; surrounding whitespace allowed). Nesting
// is limited to 64 levels. INVALID_ARGUMENT naming the byte offset.
absl::StatusOr<JsonValue> ParseJson(absl::string_view text);

// `s` as a JSON string literal, quotes included ("\"" and "\\" escaped,
// control characters as \u00XX; other bytes as they are).
std::string JsonQuoted(absl::string_view s);

// A finite double as a JSON number that reads back to the same double
// (shortest of %.15g / %.17g); integers without a fraction.
std::string JsonNumber(double value);

}  // namespace tally

#endif  // TALLY_CORE_JSON_H_
