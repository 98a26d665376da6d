#include "aggregators/optimizers/optimizer.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tally::aggregators {
namespace {

// FedAvg with a server learning rate: w <- w + lr * delta.
class Sgd final : public Optimizer {
 public:
  explicit Sgd(float lr) : lr_(lr) {}
  const std::string& name() const override { return name_; }
  void Apply(absl::Span<const float> params, absl::Span<float> inout) override {
    const float* w = params.data();
    float* d = inout.data();
    const size_t n = inout.size();
    for (size_t i = 0; i < n; ++i) d[i] = w[i] + lr_ * d[i];
  }

 private:
  const std::string name_ = "sgd";
  const float lr_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options) {
  if (!(options.learning_rate > 0) || !std::isfinite(options.learning_rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer.learning_rate: ", options.learning_rate, " must be finite and > 0"));
  }
  if (options.name == "sgd") {
    return std::unique_ptr<Optimizer>(new Sgd(static_cast<float>(options.learning_rate)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer.name: unknown optimizer '", options.name, "' (known: sgd)"));
}

}  // namespace tally::aggregators
