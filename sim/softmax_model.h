// SoftmaxRegression: a linear classifier logits = x W + b with softmax
// cross-entropy loss, the model of the tally demo.
//
// Parameters live in one flat float vector laid out exactly as the server's
// model: tensor "dense/kernel" of shape [F, C] row-major (W[f][c] at
// f * C + c), then tensor "dense/bias" of shape [C]; F * C + C floats. The
// class holds only the shape; parameters are passed in by the caller, who
// owns them.
//
// Immutable; thread-safe.
#ifndef TALLY_SIM_SOFTMAX_MODEL_H_
#define TALLY_SIM_SOFTMAX_MODEL_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/model_layout.h"
#include "sim/synthetic_data.h"

namespace tally::sim {

inline constexpr char kKernelName[] = "dense/kernel";
inline constexpr char kBiasName[] = "dense/bias";

struct Evaluation {
  double accuracy = 0;  // Fraction of samples whose argmax logit is the label.
  double loss = 0;      // Mean cross-entropy (natural log).
};

class SoftmaxRegression {
 public:
  // Requires num_features >= 1 and num_classes >= 2.
  SoftmaxRegression(int num_features, int num_classes);

  int num_features() const { return num_features_; }
  int num_classes() const { return num_classes_; }
  size_t kernel_size() const { return static_cast<size_t>(num_features_) * num_classes_; }
  size_t num_params() const { return kernel_size() + num_classes_; }

  // {"dense/kernel", [F, C]}, {"dense/bias", [C]}: what the server's model
  // config must describe.
  std::vector<ModelLayout::TensorDef> TensorDefs() const;

  // OK iff `layout` is exactly TensorDefs() (names and shapes, in order).
  absl::Status CheckLayout(const std::vector<ModelLayout::TensorDef>& layout) const;

  // OK iff `params` has num_params() elements and `data` matches F and C.
  absl::Status CheckCompatible(absl::Span<const float> params, const Dataset& data) const;

  // logits[c] for one sample `x` of F features; `logits` holds C floats.
  void Logits(absl::Span<const float> params, const float* x, float* logits) const;

  // Mean cross-entropy over data[batch]; writes its gradient with respect to
  // the parameters into `grad` (num_params() floats, overwritten).
  // Preconditions as CheckCompatible; `batch` is non-empty.
  double LossAndGradient(absl::Span<const float> params, const Dataset& data,
                         absl::Span<const size_t> batch, absl::Span<float> grad) const;

  // Accuracy and mean loss over all of `data`.
  absl::StatusOr<Evaluation> Evaluate(absl::Span<const float> params, const Dataset& data) const;

 private:
  // Softmax of `logits` in place; returns log-sum-exp of the input.
  double SoftmaxInPlace(float* logits) const;

  int num_features_;
  int num_classes_;
};

}  // namespace tally::sim

#endif  // TALLY_SIM_SOFTMAX_MODEL_H_
