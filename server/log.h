// Minimal leveled logging to stderr (Debian's Abseil has no absl/log).
// Lines look like: "2026-11-22T03:04:05.123Z I round 3 aggregated ...".
// Thread-safe.
#ifndef TALLY_SERVER_LOG_H_
#define TALLY_SERVER_LOG_H_

#include "absl/strings/string_view.h"

namespace tally::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below `level` are dropped. Default kInfo.
void SetLogLevel(LogLevel level);
bool ParseLogLevel(absl::string_view name, LogLevel* level);

void Log(LogLevel level, absl::string_view message);
inline void LogDebug(absl::string_view m) { Log(LogLevel::kDebug, m); }
inline void LogInfo(absl::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(absl::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(absl::string_view m) { Log(LogLevel::kError, m); }

}  // namespace tally::server

#endif  // TALLY_SERVER_LOG_H_
