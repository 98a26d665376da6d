// Local training of a SoftmaxRegression with mini-batch SGD, as one simulated
// client does it between pulling the global model and pushing its update.
//
// Thread-compatible free function; deterministic given its seed.
#ifndef TALLY_SIM_LOCAL_TRAINING_H_
#define TALLY_SIM_LOCAL_TRAINING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sim/softmax_model.h"
#include "sim/synthetic_data.h"

namespace tally::sim {

struct TrainOptions {
  // Passes over the local data (each reshuffled). Used when local_steps == 0.
  int epochs = 1;
  // > 0: exactly this many mini-batch steps instead (FedCompass-style tasks
  // assign it), cycling through reshuffled epochs as needed.
  int local_steps = 0;
  int batch_size = 32;         // >= 1; the last batch of an epoch may be smaller.
  double learning_rate = 0.1;  // > 0.
  uint64_t seed = 1;           // Shuffling order.
};

struct TrainResult {
  int steps = 0;
  double mean_loss = 0;  // Mean over steps of the batch loss before the step.
};

// OK iff the options are usable; INVALID_ARGUMENT names the bad field.
absl::Status ValidateTrainOptions(const TrainOptions& options);

// Trains `params` (model.num_params() floats, updated in place) on `data`.
// INVALID_ARGUMENT on bad options, empty data, or mismatched sizes.
absl::StatusOr<TrainResult> TrainLocal(const SoftmaxRegression& model, const Dataset& data,
                                       const TrainOptions& options, absl::Span<float> params);

// A client's update: trains a copy of `base` and leaves local − base in
// `delta` (resized to base's size).
absl::StatusOr<TrainResult> TrainDelta(const SoftmaxRegression& model, const Dataset& data,
                                       const TrainOptions& options, absl::Span<const float> base,
                                       std::vector<float>* delta);

}  // namespace tally::sim

#endif  // TALLY_SIM_LOCAL_TRAINING_H_
