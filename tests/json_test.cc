// The JSON reader and writers of core/json.h, against RFC 8259's grammar.
#include "core/json.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

TEST(JsonTest, ParsesEveryKind) {
  absl::StatusOr<JsonValue> v = ParseJson(
      " {\"a\": [1, -2.5e3, true, false, null], \"b\": {\"c\": \"x\"}, \"d\": 0.125} ");
  ASSERT_THAT(v.status(), IsOk());
  ASSERT_EQ(v->type, JsonValue::Type::kObject);
  const JsonValue* a = v->Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->array.size(), 5u);
  EXPECT_EQ(a->array[0].number, 1.0);
  EXPECT_EQ(a->array[1].number, -2500.0);
  EXPECT_TRUE(a->array[2].boolean);
  EXPECT_EQ(a->array[3].type, JsonValue::Type::kBool);
  EXPECT_FALSE(a->array[3].boolean);
  EXPECT_EQ(a->array[4].type, JsonValue::Type::kNull);
  EXPECT_EQ(v->Find("b")->Find("c")->string, "x");
  EXPECT_EQ(v->Find("d")->number, 0.125);
  EXPECT_EQ(v->Find("e"), nullptr);
}

TEST(JsonTest, StringEscapes) {
  absl::StatusOr<JsonValue> v =
      ParseJson(R"("q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00")");
  ASSERT_THAT(v.status(), IsOk());
  // U+00E9 is C3 A9 in UTF-8; U+1F600 (the surrogate pair) is F0 9F 98 80.
  EXPECT_EQ(v->string, "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 \xf0\x9f\x98\x80");
}

TEST(JsonTest, QuotedRoundTrips) {
  const std::string raw = std::string("a\"b\\c\n\x01", 7);
  EXPECT_EQ(JsonQuoted(raw), "\"a\\\"b\\\\c\\u000a\\u0001\"");
  absl::StatusOr<JsonValue> v = ParseJson(JsonQuoted(raw));
  ASSERT_THAT(v.status(), IsOk());
  EXPECT_EQ(v->string, raw);
}

TEST(JsonTest, NumbersReadBackExactly) {
  EXPECT_EQ(JsonNumber(0.25), "0.25");
  EXPECT_EQ(JsonNumber(3), "3");
  EXPECT_EQ(JsonNumber(0.1), "0.1");
  EXPECT_EQ(JsonNumber(1.0 / 3.0), "0.33333333333333331");  // 15 digits would not read back.
  for (double x : {0.1, 1.0 / 3.0, 2.2250738585072014e-308, -123456.789}) {
    EXPECT_EQ(ParseJson(JsonNumber(x))->number, x) << x;
  }
}

TEST(JsonTest, ErrorsNameTheOffset) {
  EXPECT_THAT(ParseJson("{\"a\" 1}").status().message(), HasSubstr("byte 5"));
  EXPECT_THAT(ParseJson("[1,]").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseJson("01").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseJson("\"a\nb\"").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseJson("1 2").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseJson("\"\\x\"").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseJson(std::string(100, '[')).status().message(), HasSubstr("deeply"));
  EXPECT_THAT(ParseJson("").status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally
