// server/log.h: the text and JSON line formats.
#include "server/log.h"

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tally::server {
namespace {

absl::Time At() {
  return absl::FromCivil(absl::CivilSecond(2026, 11, 22, 3, 4, 5), absl::UTCTimeZone()) +
         absl::Milliseconds(123);
}

TEST(LogTest, TextLineIsTimeLevelLetterMessage) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, LogLevel::kWarning, At(), "round 3 failed"),
            "2026-11-22T03:04:05.123Z W round 3 failed\n");
}

TEST(LogTest, JsonLineIsOneEscapedObject) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, LogLevel::kInfo, At(),
                          "client 'a' said \"hi\"\\ \n\x01\xff"),
            "{\"ts\":\"2026-11-22T03:04:05.123Z\",\"level\":\"info\",\"msg\":\"client 'a' said "
            "\\\"hi\\\"\\\\ \\n\\u0001\\u00ff\"}\n");
  LogFormat format;
  EXPECT_TRUE(ParseLogFormat("json", &format));
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("xml", &format));
}

}  // namespace
}  // namespace tally::server
