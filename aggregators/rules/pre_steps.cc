// Pre-aggregation steps (docs/algorithms.md#pre-steps): NNM, Clipping, ARC,
// Bucketing. All work in place on the caller's rows.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/batch_ops.h"
#include "aggregators/rules/builtin_rules.h"

namespace tally::aggregators {
namespace {

void ScaleRow(float* x, size_t d, double factor) {
  const float s = static_cast<float>(factor);
  for (size_t j = 0; j < d; ++j) x[j] *= s;
}

// NNM: y_i = mean of the n − f rows nearest to x_i (itself included,
// (value, index) ties). Output n rows.
class Nnm final : public PreStep {
 public:
  using PreStep::PreStep;

 private:
  absl::StatusOr<size_t> ApplyRows(float* rows, size_t n, size_t d) override {
    const std::vector<double> dist = SquaredDistances(rows, n, d);
    const size_t k = n - f();
    std::vector<float> weights(n * n, 0.0f);
    std::vector<std::vector<size_t>>& mixed_from = mutable_mixed_from();
    mixed_from.assign(n, {});
    for (size_t i = 0; i < n; ++i) {
      for (size_t j : SmallestK(absl::MakeConstSpan(&dist[i * n], n), k)) {
        weights[i * n + j] = 1.0f / static_cast<float>(k);
        mixed_from[i].push_back(j);
      }
    }
    MixRowsInPlace(rows, n, d, weights, n);
    return n;
  }
};

// x_i <- x_i · min(1, c/‖x_i‖).
class Clipping final : public PreStep {
 public:
  Clipping(RuleSpec spec, double bound) : PreStep(std::move(spec)), bound_(bound) {}

 private:
  absl::StatusOr<size_t> ApplyRows(float* rows, size_t n, size_t d) override {
    const std::vector<double> norms = RowNorms(rows, n, d);
    for (size_t i = 0; i < n; ++i) {
      if (norms[i] > bound_) ScaleRow(rows + i * d, d, bound_ / norms[i]);
    }
    return n;
  }

  const double bound_;
};

// ARC: k = int((2f/n)·(n − f)) evaluated in double in exactly this order
// (as byzfl); the k largest-norm rows (stable ascending sort) are clipped to the
// (n − k)-th smallest norm.
class Arc final : public PreStep {
 public:
  using PreStep::PreStep;

 private:
  absl::StatusOr<size_t> ApplyRows(float* rows, size_t n, size_t d) override {
    const double ratio = 2.0 * static_cast<double>(f()) / static_cast<double>(n);
    const size_t k = static_cast<size_t>(ratio * static_cast<double>(n - f()));
    if (k == 0) return n;
    const std::vector<double> norms = RowNorms(rows, n, d);
    const std::vector<size_t> order = SmallestK(norms, n);  // Stable ascending.
    const double threshold = norms[order[n - k - 1]];
    for (size_t p = n - k; p < n; ++p) {
      const size_t i = order[p];
      if (norms[i] > threshold) ScaleRow(rows + i * d, d, threshold / norms[i]);
    }
    return n;
  }
};

// Random permutation, consecutive buckets of s rows, bucket means (the last
// bucket may be partial): ⌈n/s⌉ rows. The RNG (mt19937_64 seeded at creation)
// advances across calls. Fisher–Yates with our own bounded draw, so the
// permutation does not depend on the standard library's distributions.
class Bucketing final : public PreStep {
 public:
  Bucketing(RuleSpec spec, size_t bucket_size, uint64_t seed)
      : PreStep(std::move(spec)), bucket_size_(bucket_size), rng_(seed) {}

 private:
  absl::StatusOr<size_t> ApplyRows(float* rows, size_t n, size_t d) override {
    std::vector<size_t> perm = AllRows(n);
    for (size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[Below(i)]);
    const size_t buckets = (n + bucket_size_ - 1) / bucket_size_;
    std::vector<float> weights(buckets * n, 0.0f);
    for (size_t b = 0; b < buckets; ++b) {
      const size_t start = b * bucket_size_;
      const size_t end = std::min(n, start + bucket_size_);
      for (size_t p = start; p < end; ++p) {
        weights[b * n + perm[p]] = 1.0f / static_cast<float>(end - start);
      }
    }
    MixRowsInPlace(rows, n, d, weights, buckets);
    return buckets;
  }

  // Uniform in [0, bound) by rejection.
  size_t Below(size_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t draw;
    do {
      draw = rng_();
    } while (draw >= limit);
    return static_cast<size_t>(draw % bound);
  }

  const size_t bucket_size_;
  std::mt19937_64 rng_;
};

}  // namespace

PreStepOr NewNnm(const NoOptions&, RuleSpec spec) {
  return std::make_unique<Nnm>(std::move(spec));
}

PreStepOr NewClipping(const ClippingOptions& options, RuleSpec spec) {
  if (!(options.clip_norm > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clipping: clip_norm (c) must be > 0, got ", options.clip_norm));
  }
  return std::make_unique<Clipping>(std::move(spec), options.clip_norm);
}

PreStepOr NewArc(const NoOptions&, RuleSpec spec) {
  return std::make_unique<Arc>(std::move(spec));
}

PreStepOr NewBucketing(const BucketingOptions& options, RuleSpec spec) {
  if (options.bucket_size < 1) {
    return absl::InvalidArgumentError("bucketing: bucket_size (s) must be >= 1, got 0");
  }
  const uint64_t seed = spec.seed;
  return std::make_unique<Bucketing>(std::move(spec), options.bucket_size, seed);
}

}  // namespace tally::aggregators
