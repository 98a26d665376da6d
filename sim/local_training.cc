#include "sim/local_training.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/vector_ops.h"

namespace tally::sim {

absl::Status ValidateTrainOptions(const TrainOptions& o) {
  if (o.local_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat("local_steps = ", o.local_steps, " < 0"));
  }
  if (o.local_steps == 0 && o.epochs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("epochs = ", o.epochs, " < 1"));
  }
  if (o.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size = ", o.batch_size, " < 1"));
  }
  if (!(o.learning_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning_rate = ", o.learning_rate, " must be > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> TrainLocal(const SoftmaxRegression& model, const Dataset& data,
                                       const TrainOptions& options, absl::Span<float> params) {
  if (absl::Status status = ValidateTrainOptions(options); !status.ok()) return status;
  if (absl::Status status = model.CheckCompatible(params, data); !status.ok()) {
    return status;
  }
  if (data.size() == 0) return absl::InvalidArgumentError("no local training data");

  const size_t n = data.size();
  const size_t batch = std::min<size_t>(options.batch_size, n);
  const size_t batches_per_epoch = (n + batch - 1) / batch;
  const size_t total_steps = options.local_steps > 0 ? static_cast<size_t>(options.local_steps)
                                                     : batches_per_epoch * options.epochs;
  std::mt19937_64 rng(options.seed);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> grad(model.num_params());
  const float step = -static_cast<float>(options.learning_rate);

  TrainResult result;
  double loss_sum = 0;
  for (size_t s = 0; s < total_steps; ++s) {
    const size_t b = s % batches_per_epoch;
    if (b == 0) std::shuffle(order.begin(), order.end(), rng);
    const size_t begin = b * batch;
    const size_t end = std::min(n, begin + batch);
    const absl::Span<const size_t> indices(order.data() + begin, end - begin);
    loss_sum += model.LossAndGradient(params, data, indices, absl::MakeSpan(grad));
    Axpy(step, grad.data(), params.data(), params.size());
  }
  result.steps = static_cast<int>(total_steps);
  result.mean_loss = total_steps > 0 ? loss_sum / total_steps : 0;
  return result;
}

absl::StatusOr<TrainResult> TrainDelta(const SoftmaxRegression& model, const Dataset& data,
                                       const TrainOptions& options, absl::Span<const float> base,
                                       std::vector<float>* delta) {
  delta->assign(base.begin(), base.end());
  TALLY_ASSIGN_OR_RETURN(TrainResult trained,
                         TrainLocal(model, data, options, absl::MakeSpan(*delta)));
  for (size_t i = 0; i < delta->size(); ++i) (*delta)[i] -= base[i];
  return trained;
}

}  // namespace tally::sim
