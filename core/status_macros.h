// Status propagation macros. Debian's Abseil (20220623) ships none, so tally
// defines its own, once, here.
#ifndef TALLY_CORE_STATUS_MACROS_H_
#define TALLY_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TALLY_STATUS_CONCAT_INNER_(a, b) a##b
#define TALLY_STATUS_CONCAT_(a, b) TALLY_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define TALLY_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status tally_status_ = (expr);         \
    if (!tally_status_.ok()) return tally_status_; \
  } while (0)

// `lhs` = value of the StatusOr `rexpr`, or returns its error status.
#define TALLY_ASSIGN_OR_RETURN(lhs, rexpr) \
  TALLY_ASSIGN_OR_RETURN_IMPL_(TALLY_STATUS_CONCAT_(tally_statusor_, __LINE__), lhs, rexpr)

#define TALLY_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // TALLY_CORE_STATUS_MACROS_H_
