// Server optimizers: how a round's aggregate (the weighted mean of the
// clients' deltas, the "pseudo-gradient" of Reddi et al.) is applied to the
// global model. docs/algorithms.md#server-optimizers (FedAvg, FedAvgM,
// FedAdagrad, FedAdam, FedYogi, and DiLoCo's Nesterov outer step).
//
// Deltas are `local - global` throughout tally; DiLoCo's outer gradient
// `global - mean local` is therefore the negated delta
// (docs/algorithms.md#nesterov-and-diloco).
//
// An Optimizer owns its state (momentum, moments), allocated on the first
// Apply, and is used by one thread at a time (the coordinator's aggregation
// step): thread-compatible.
#ifndef TALLY_AGGREGATORS_OPTIMIZERS_OPTIMIZER_H_
#define TALLY_AGGREGATORS_OPTIMIZERS_OPTIMIZER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tally::aggregators {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual const std::string& name() const = 0;
  // On entry `inout` holds the aggregate delta; on return the new model.
  // `params` is the current model. Both have the model's size.
  void Apply(absl::Span<const float> params, absl::Span<float> inout) {
    Prepare(inout.size());
    ApplyRange(params.data(), inout.data(), 0, inout.size());
  }
  // The same, block by block (while a block is in cache): Prepare(model
  // size) once, then ApplyRange over disjoint ranges [offset, offset +
  // count) of the model, in any order; `params` and `inout` point at the
  // range's first element.
  virtual void Prepare(size_t model_size) { (void)model_size; }
  virtual void ApplyRange(const float* params, float* inout, size_t offset, size_t count) = 0;
  // The optimizer's state tensors by name (empty before the first Apply, and
  // always for sgd), for checkpoints: read them, or resize and fill them
  // before the first Apply to restore.
  virtual std::vector<std::pair<std::string, std::vector<float>*>> MutableState() { return {}; }
};

// Every field is optional; unset fields take the defaults of the chosen
// optimizer (the APPFL/paper values; docs/algorithms.md#server-optimizers).
struct OptimizerOptions {
  std::string name = "sgd";
  double learning_rate = 0;  // 0 = default: sgd 1, fedavgm 1, fedadagrad 0.01,
                             // fedadam 0.1, fedyogi 0.01, nesterov 0.7.
  double momentum = -1;      // fedavgm beta (0.9), nesterov mu (0.9); -1 = default.
  double beta1 = -1;         // fedadagrad/fedadam/fedyogi (0.9); -1 = default.
  double beta2 = -1;         // fedadam/fedyogi (0.99); -1 = default.
  double tau = -1;           // Adaptivity epsilon (1e-3); -1 = default.
};

// Known names: sgd, fedavgm, fedadagrad, fedadam, fedyogi, nesterov.
// INVALID_ARGUMENT for an unknown name or an out-of-range value.
absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options);

// The default server learning rate of optimizer `name` (1 if unknown).
double DefaultLearningRate(const std::string& name);

// The names CreateOptimizer knows, for messages and docs.
const std::vector<std::string>& OptimizerNames();

}  // namespace tally::aggregators

#endif  // TALLY_AGGREGATORS_OPTIMIZERS_OPTIMIZER_H_
