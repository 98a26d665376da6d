#include "sim/softmax_model.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tally::sim {

namespace {

std::string DescribeLayout(const std::vector<ModelLayout::TensorDef>& layout) {
  return absl::StrJoin(layout, " + ", [](std::string* out, const ModelLayout::TensorDef& t) {
    absl::StrAppend(out, t.name, "[", absl::StrJoin(t.shape, ","), "]");
  });
}

}  // namespace

SoftmaxRegression::SoftmaxRegression(int num_features, int num_classes)
    : num_features_(num_features), num_classes_(num_classes) {
  assert(num_features >= 1 && num_classes >= 2);
}

std::vector<ModelLayout::TensorDef> SoftmaxRegression::TensorDefs() const {
  return {{kKernelName, {num_features_, num_classes_}}, {kBiasName, {num_classes_}}};
}

absl::Status SoftmaxRegression::CheckLayout(
    const std::vector<ModelLayout::TensorDef>& layout) const {
  const std::vector<ModelLayout::TensorDef> want = TensorDefs();
  bool same = layout.size() == want.size();
  for (size_t i = 0; same && i < want.size(); ++i) {
    same = layout[i].name == want[i].name && layout[i].shape == want[i].shape;
  }
  if (same) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the server's model is ", DescribeLayout(layout), " but the simulator needs ",
                   DescribeLayout(want), " (set --features and --classes to match the server)"));
}

absl::Status SoftmaxRegression::CheckCompatible(absl::Span<const float> params,
                                                const Dataset& data) const {
  if (params.size() != num_params()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", num_params(), " parameters, got ", params.size()));
  }
  if (data.num_features != num_features_ || data.num_classes != num_classes_) {
    return absl::InvalidArgumentError(absl::StrCat("data has ", data.num_features, " features and ",
                                                   data.num_classes, " classes; the model ",
                                                   num_features_, " and ", num_classes_));
  }
  return absl::OkStatus();
}

void SoftmaxRegression::Logits(absl::Span<const float> params, const float* x,
                               float* logits) const {
  const int c_count = num_classes_;
  const float* bias = params.data() + kernel_size();
  std::copy(bias, bias + c_count, logits);
  for (int f = 0; f < num_features_; ++f) {
    const float xf = x[f];
    const float* w_row = params.data() + static_cast<size_t>(f) * c_count;
    for (int c = 0; c < c_count; ++c) logits[c] += xf * w_row[c];
  }
}

double SoftmaxRegression::SoftmaxInPlace(float* logits) const {
  const float max = *std::max_element(logits, logits + num_classes_);
  double sum = 0;
  for (int c = 0; c < num_classes_; ++c) {
    logits[c] = std::exp(logits[c] - max);
    sum += logits[c];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int c = 0; c < num_classes_; ++c) logits[c] *= inv;
  return max + std::log(sum);
}

double SoftmaxRegression::LossAndGradient(absl::Span<const float> params, const Dataset& data,
                                          absl::Span<const size_t> batch,
                                          absl::Span<float> grad) const {
  assert(CheckCompatible(params, data).ok() && grad.size() == num_params());
  assert(!batch.empty());
  std::fill(grad.begin(), grad.end(), 0.0f);
  const int c_count = num_classes_;
  const float scale = 1.0f / static_cast<float>(batch.size());
  float* grad_bias = grad.data() + kernel_size();
  std::vector<float> p(c_count);
  double loss = 0;
  for (size_t i : batch) {
    const float* x = data.row(i);
    const int y = data.labels[i];
    Logits(params, x, p.data());
    const float logit_y = p[y];
    loss += SoftmaxInPlace(p.data()) - logit_y;
    // d(-log p_y)/d logit_c = p_c - [c == y].
    p[y] -= 1.0f;
    for (int c = 0; c < c_count; ++c) p[c] *= scale;
    for (int f = 0; f < num_features_; ++f) {
      float* g_row = grad.data() + static_cast<size_t>(f) * c_count;
      for (int c = 0; c < c_count; ++c) g_row[c] += x[f] * p[c];
    }
    for (int c = 0; c < c_count; ++c) grad_bias[c] += p[c];
  }
  return loss / static_cast<double>(batch.size());
}

absl::StatusOr<Evaluation> SoftmaxRegression::Evaluate(absl::Span<const float> params,
                                                       const Dataset& data) const {
  if (absl::Status status = CheckCompatible(params, data); !status.ok()) return status;
  if (data.size() == 0) return absl::InvalidArgumentError("cannot evaluate on no data");
  std::vector<float> logits(num_classes_);
  size_t correct = 0;
  double loss = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    Logits(params, data.row(i), logits.data());
    const int y = data.labels[i];
    // Ties go to the lowest class index (an all-zero model predicts class 0).
    const int predicted =
        static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (predicted == y) ++correct;
    const float logit_y = logits[y];
    loss += SoftmaxInPlace(logits.data()) - logit_y;
  }
  const double n = static_cast<double>(data.size());
  return Evaluation{correct / n, loss / n};
}

}  // namespace tally::sim
