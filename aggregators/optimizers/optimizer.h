// Server optimizers: how a round's aggregate (the weighted mean of the
// clients' deltas, the "pseudo-gradient" of Reddi et al.) is applied to the
// global model. ALGORITHMS.md §5.5.
//
// An Optimizer owns its state (momentum, moments) and is used by one thread
// at a time (the coordinator's aggregation step): thread-compatible.
#ifndef TALLY_AGGREGATORS_OPTIMIZERS_OPTIMIZER_H_
#define TALLY_AGGREGATORS_OPTIMIZERS_OPTIMIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tally::aggregators {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual const std::string& name() const = 0;
  // On entry `inout` holds the aggregate delta; on return the new model.
  // `params` is the current model. Both have the model's size.
  virtual void Apply(absl::Span<const float> params, absl::Span<float> inout) = 0;
};

struct OptimizerOptions {
  std::string name = "sgd";
  double learning_rate = 1.0;
};

// Known names: "sgd" (w += lr * delta; lr 1 = FedAvg).
absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options);

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_OPTIMIZERS_OPTIMIZER_H_
