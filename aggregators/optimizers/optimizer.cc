#include "aggregators/optimizers/optimizer.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tally::aggregators {
namespace {

// FedAvg with a server learning rate: w <- w + lr * delta.
class Sgd final : public Optimizer {
 public:
  explicit Sgd(float lr) : lr_(lr) {}
  const std::string& name() const override { return name_; }
  void ApplyRange(const float* w, float* d, size_t, size_t n) override {
    for (size_t i = 0; i < n; ++i) d[i] = w[i] + lr_ * d[i];
  }

 private:
  const std::string name_ = "sgd";
  const float lr_;
};

// FedAvgM: v <- beta v + delta; w <- w + lr v (APPFL uses lr 1).
class FedAvgM final : public Optimizer {
 public:
  FedAvgM(float lr, float beta) : lr_(lr), beta_(beta) {}
  const std::string& name() const override { return name_; }
  void Prepare(size_t n) override { v_.resize(n, 0.0f); }
  void ApplyRange(const float* params, float* inout, size_t offset, size_t n) override {
    float* v = v_.data() + offset;
    for (size_t i = 0; i < n; ++i) {
      v[i] = beta_ * v[i] + inout[i];
      inout[i] = params[i] + lr_ * v[i];
    }
  }
  std::vector<std::pair<std::string, std::vector<float>*>> MutableState() override {
    return {{"v", &v_}};
  }

 private:
  const std::string name_ = "fedavgm";
  const float lr_, beta_;
  std::vector<float> v_;
};

// FedAdagrad / FedAdam / FedYogi (Reddi et al.): m <- b1 m + (1-b1) delta;
// v per variant; w <- w + eta m / (sqrt(v) + tau). m = 0 and v = tau^2
// initially; no bias correction.
class Adaptive final : public Optimizer {
 public:
  enum class Variant { kAdagrad, kAdam, kYogi };
  Adaptive(Variant variant, float eta, float beta1, float beta2, float tau)
      : variant_(variant),
        name_(variant == Variant::kAdagrad ? "fedadagrad"
              : variant == Variant::kAdam  ? "fedadam"
                                           : "fedyogi"),
        eta_(eta),
        beta1_(beta1),
        beta2_(beta2),
        tau_(tau) {}
  const std::string& name() const override { return name_; }
  void Prepare(size_t n) override {
    if (m_.size() != n) m_.assign(n, 0.0f);
    if (v_.size() != n) v_.assign(n, tau_ * tau_);
  }
  void ApplyRange(const float* params, float* inout, size_t offset, size_t n) override {
    float* m = m_.data() + offset;
    float* v = v_.data() + offset;
    for (size_t i = 0; i < n; ++i) {
      const float d = inout[i];
      const float d2 = d * d;
      m[i] = beta1_ * m[i] + (1 - beta1_) * d;
      switch (variant_) {
        case Variant::kAdagrad:
          v[i] = v[i] + d2;
          break;
        case Variant::kAdam:
          v[i] = beta2_ * v[i] + (1 - beta2_) * d2;
          break;
        case Variant::kYogi: {
          const float diff = v[i] - d2;
          const float sign = diff > 0 ? 1.0f : (diff < 0 ? -1.0f : 0.0f);
          v[i] = v[i] - (1 - beta2_) * d2 * sign;
          break;
        }
      }
      inout[i] = params[i] + eta_ * m[i] / (std::sqrt(v[i]) + tau_);
    }
  }
  std::vector<std::pair<std::string, std::vector<float>*>> MutableState() override {
    return {{"m", &m_}, {"v", &v_}};
  }

 private:
  const Variant variant_;
  const std::string name_;
  const float eta_, beta1_, beta2_, tau_;
  std::vector<float> m_, v_;
};

// DiLoCo outer step, PyTorch Nesterov semantics on the outer gradient
// g = -delta: b <- mu b + g; step = g + mu b; w <- w - lr step.
class Nesterov final : public Optimizer {
 public:
  Nesterov(float lr, float mu) : lr_(lr), mu_(mu) {}
  const std::string& name() const override { return name_; }
  void Prepare(size_t n) override { b_.resize(n, 0.0f); }
  void ApplyRange(const float* params, float* inout, size_t offset, size_t n) override {
    float* b = b_.data() + offset;
    for (size_t i = 0; i < n; ++i) {
      const float g = -inout[i];
      b[i] = mu_ * b[i] + g;
      inout[i] = params[i] - lr_ * (g + mu_ * b[i]);
    }
  }
  std::vector<std::pair<std::string, std::vector<float>*>> MutableState() override {
    return {{"b", &b_}};
  }

 private:
  const std::string name_ = "nesterov";
  const float lr_, mu_;
  std::vector<float> b_;
};

double Or(double value, double fallback) { return value < 0 ? fallback : value; }

absl::Status CheckRange(const char* field, double value, double lo, double hi) {
  if (std::isfinite(value) && value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer.", field, ": ", value, " must be in [", lo, ", ", hi, "]"));
}

}  // namespace

const std::vector<std::string>& OptimizerNames() {
  static const auto* names = new std::vector<std::string>{"sgd",     "fedavgm", "fedadagrad",
                                                          "fedadam", "fedyogi", "nesterov"};
  return *names;
}

double DefaultLearningRate(const std::string& name) {
  if (name == "fedadagrad" || name == "fedyogi") return 0.01;
  if (name == "fedadam") return 0.1;
  if (name == "nesterov") return 0.7;
  return 1.0;
}

absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options) {
  const std::string& name = options.name;
  const double lr = options.learning_rate == 0 ? DefaultLearningRate(name) : options.learning_rate;
  if (!(lr > 0) || !std::isfinite(lr) || lr > 1e6) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer.learning_rate: ", options.learning_rate, " must be finite and in (0, 1e6]"));
  }
  const double momentum = Or(options.momentum, 0.9);
  const double beta1 = Or(options.beta1, 0.9);
  const double beta2 = Or(options.beta2, 0.99);
  const double tau = Or(options.tau, 1e-3);
  if (name == "sgd") return std::unique_ptr<Optimizer>(new Sgd(static_cast<float>(lr)));
  if (name == "fedavgm" || name == "nesterov") {
    absl::Status ok = CheckRange("momentum", momentum, 0, 0.999999);
    if (!ok.ok()) return ok;
    if (name == "fedavgm") {
      return std::unique_ptr<Optimizer>(
          new FedAvgM(static_cast<float>(lr), static_cast<float>(momentum)));
    }
    return std::unique_ptr<Optimizer>(
        new Nesterov(static_cast<float>(lr), static_cast<float>(momentum)));
  }
  Adaptive::Variant variant;
  if (name == "fedadagrad") {
    variant = Adaptive::Variant::kAdagrad;
  } else if (name == "fedadam") {
    variant = Adaptive::Variant::kAdam;
  } else if (name == "fedyogi") {
    variant = Adaptive::Variant::kYogi;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer.name: unknown optimizer '", name,
                     "' (known: ", absl::StrJoin(OptimizerNames(), ", "), ")"));
  }
  for (absl::Status s :
       {CheckRange("beta1", beta1, 0, 0.999999), CheckRange("beta2", beta2, 0, 0.999999),
        CheckRange("tau", tau, 1e-12, 1)}) {
    if (!s.ok()) return s;
  }
  return std::unique_ptr<Optimizer>(
      new Adaptive(variant, static_cast<float>(lr), static_cast<float>(beta1),
                   static_cast<float>(beta2), static_cast<float>(tau)));
}

}  // namespace tally::aggregators
