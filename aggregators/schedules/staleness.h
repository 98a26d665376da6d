// Staleness functions S(u): how much an update computed on a model u versions
// old still counts. Exactly APPFL's (src/appfl/algorithm/aggregator/
// fedasync_aggregator.py `__staleness_fn_factory`, shared by its FedAsync,
// FedBuff and FedCompass aggregators; docs/algorithms.md#staleness-functions):
//
//   constant:       S(u) = 1
//   polynomial(a):  S(u) = (u + 1)^(-a)
//   hinge(a, b):    S(u) = 1                      if u <= b
//                          1 / (a (u - b) + 1)    otherwise
//
// The older APPFL/FedCompass repository and APPFL's legacy server use
// (u + 1)^(+a) for polynomial (it grows with staleness); tally
// implements only the current, decreasing form.
//
// A StalenessFunction is an immutable value: thread-safe.
#ifndef TALLY_AGGREGATORS_SCHEDULES_STALENESS_H_
#define TALLY_AGGREGATORS_SCHEDULES_STALENESS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::aggregators {

struct StalenessOptions {
  // "constant" (default), "polynomial" or "hinge".
  std::string name = "constant";
  // polynomial exponent / hinge slope a (>= 0, finite; default 0.5, the
  // APPFL example configs).
  double a = 0.5;
  // hinge threshold b (>= 0, finite; default 4, APPFL's legacy config):
  // updates at most b versions old count fully.
  double b = 4.0;
};

class StalenessFunction {
 public:
  // INVALID_ARGUMENT naming the field (prefixed by `field_prefix`, e.g.
  // "schedule.staleness.a") for an unknown name or a bad a / b.
  static absl::StatusOr<StalenessFunction> Create(const StalenessOptions& options,
                                                  const std::string& field_prefix = "staleness");

  // S(u), in (0, 1].
  double operator()(uint64_t staleness) const;

 private:
  enum class Kind { kConstant, kPolynomial, kHinge };
  StalenessFunction(Kind kind, double a, double b) : kind_(kind), a_(a), b_(b) {}
  Kind kind_;
  double a_;
  double b_;
};

// The names StalenessFunction::Create knows.
const std::vector<std::string>& StalenessFunctionNames();

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_SCHEDULES_STALENESS_H_
