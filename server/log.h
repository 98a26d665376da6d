// Minimal leveled logging to stderr (Debian's Abseil has no absl/log).
// Text lines look like: "2026-11-22T03:04:05.123Z I round 3 aggregated ...";
// JSON lines (for log collectors): {"ts":"2026-11-22T03:04:05.123Z",
// "level":"info","msg":"round 3 aggregated ..."}. One line per message
// either way. Thread-safe.
#ifndef TALLY_SERVER_LOG_H_
#define TALLY_SERVER_LOG_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tally::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below `level` are dropped. Default kInfo.
void SetLogLevel(LogLevel level);
bool ParseLogLevel(absl::string_view name, LogLevel* level);

enum class LogFormat { kText, kJson };
// Default kText. "text" or "json".
void SetLogFormat(LogFormat format);
bool ParseLogFormat(absl::string_view name, LogFormat* format);
// The line Log() writes (with its trailing newline), for tests.
std::string FormatLogLine(LogFormat format, LogLevel level, absl::Time time,
                          absl::string_view message);

void Log(LogLevel level, absl::string_view message);
inline void LogDebug(absl::string_view m) { Log(LogLevel::kDebug, m); }
inline void LogInfo(absl::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(absl::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(absl::string_view m) { Log(LogLevel::kError, m); }

}  // namespace tally::server

#endif  // TALLY_SERVER_LOG_H_
