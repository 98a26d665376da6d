// GoogleTest matchers for absl::Status / absl::StatusOr (Debian's Abseil has
// none): EXPECT_THAT(s, IsOk()); EXPECT_THAT(s, StatusIs(absl::StatusCode::kX)).
#ifndef TALLY_TESTS_STATUS_MATCHERS_H_
#define TALLY_TESTS_STATUS_MATCHERS_H_

#include <ostream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/status_macros.h"
#include "gmock/gmock.h"

namespace tally::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status.ToString();
  return status.ok();
}

MATCHER_P(StatusIs, code, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code;
}

// StatusIs(code, message_matcher), e.g. StatusIs(kInvalidArgument,
// HasSubstr("tls.cert_file")).
MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

}  // namespace tally::testing

#define TALLY_ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  TALLY_ASSERT_OK_AND_ASSIGN_IMPL_(TALLY_STATUS_CONCAT_(tally_test_so_, __LINE__), lhs, rexpr)
#define TALLY_ASSERT_OK_AND_ASSIGN_IMPL_(so, lhs, rexpr) \
  auto so = (rexpr);                                     \
  ASSERT_TRUE(so.ok()) << so.status().ToString();        \
  lhs = std::move(so).value()

#endif  // TALLY_TESTS_STATUS_MATCHERS_H_
