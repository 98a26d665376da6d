#include "sim/synthetic_data.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sim/random.h"

namespace tally::sim {

namespace {

// Independent random streams of one data set (see DeriveSeed).
enum Stream : uint64_t { kMeansStream = 1, kTrainStream, kTestStream, kSplitStream };

absl::Status ValidateOptions(const SyntheticDataOptions& o) {
  auto bad = [](const char* field, auto value, const char* want) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " = ", value, " is invalid: must be ", want));
  };
  if (o.num_features < 1) return bad("num_features", o.num_features, ">= 1");
  if (o.num_classes < 2) return bad("num_classes", o.num_classes, ">= 2");
  if (o.num_clients < 1) return bad("num_clients", o.num_clients, ">= 1");
  if (o.samples_per_client < 1) {
    return bad("samples_per_client", o.samples_per_client, ">= 1");
  }
  if (o.test_samples < 1) return bad("test_samples", o.test_samples, ">= 1");
  if (!(o.alpha > 0) || !std::isfinite(o.alpha)) return bad("alpha", o.alpha, "> 0");
  if (o.class_separation < 0 || !std::isfinite(o.class_separation)) {
    return bad("class_separation", o.class_separation, ">= 0");
  }
  if (o.min_samples_per_client < 0 || o.min_samples_per_client > o.samples_per_client) {
    return bad("min_samples_per_client", o.min_samples_per_client, "in [0, samples_per_client]");
  }
  return absl::OkStatus();
}

// `n` balanced samples (label i % C) around the given class means.
Dataset DrawSamples(const std::vector<float>& means, int num_features, int num_classes, size_t n,
                    std::mt19937_64& rng) {
  Dataset data;
  data.num_features = num_features;
  data.num_classes = num_classes;
  data.labels.resize(n);
  data.features.resize(n * num_features);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % num_classes);
    data.labels[i] = label;
    const float* mean = &means[static_cast<size_t>(label) * num_features];
    float* x = &data.features[i * num_features];
    for (int f = 0; f < num_features; ++f) x[f] = mean[f] + noise(rng);
  }
  return data;
}

Dataset Subset(const Dataset& data, absl::Span<const size_t> indices) {
  Dataset out;
  out.num_features = data.num_features;
  out.num_classes = data.num_classes;
  out.labels.reserve(indices.size());
  out.features.reserve(indices.size() * data.num_features);
  for (size_t i : indices) {
    out.labels.push_back(data.labels[i]);
    out.features.insert(out.features.end(), data.row(i), data.row(i) + data.num_features);
  }
  return out;
}

// Moves samples from the currently largest client to every client that has
// fewer than `min_per_client`.
void TopUpSmallClients(size_t min_per_client, std::vector<std::vector<size_t>>& parts) {
  for (auto& part : parts) {
    while (part.size() < min_per_client) {
      auto largest = std::max_element(parts.begin(), parts.end(), [](const auto& a, const auto& b) {
        return a.size() < b.size();
      });
      part.push_back(largest->back());
      largest->pop_back();
    }
  }
}

}  // namespace

double DefaultClassSeparation(int num_features) {
  // Measured on the defaults (F = 32, C = 10, seeds 1 and 2): sep 0.5 gives
  // 84% centralized test accuracy (0.45: 79%, 0.6: 92%). Scaling by
  // sqrt(32 / F) keeps the expected distance between class means constant.
  return 0.5 * std::sqrt(32.0 / std::max(num_features, 1));
}

absl::StatusOr<std::vector<std::vector<size_t>>> DirichletLabelSplit(absl::Span<const int> labels,
                                                                     int num_classes,
                                                                     int num_clients, double alpha,
                                                                     size_t min_per_client,
                                                                     std::mt19937_64& rng) {
  if (num_classes < 1 || num_clients < 1 || !(alpha > 0)) {
    return absl::InvalidArgumentError(
        "DirichletLabelSplit needs num_classes >= 1, num_clients >= 1, alpha > 0");
  }
  if (labels.size() < min_per_client * num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("cannot give each of ", num_clients, " clients ",
                                                   min_per_client, " samples out of ",
                                                   labels.size()));
  }
  std::vector<std::vector<size_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", labels[i], " at index ", i, " is outside [0, ", num_classes, ")"));
    }
    by_class[labels[i]].push_back(i);
  }
  std::vector<std::vector<size_t>> parts(num_clients);
  for (std::vector<size_t>& members : by_class) {
    std::shuffle(members.begin(), members.end(), rng);
    const std::vector<double> p = SampleDirichlet(alpha, num_clients, rng);
    // Client k gets members[round(n * cum_k-1), round(n * cum_k)).
    double cumulative = 0;
    size_t begin = 0;
    for (int k = 0; k < num_clients; ++k) {
      cumulative += p[k];
      const size_t end =
          k + 1 == num_clients
              ? members.size()
              : std::min(members.size(),
                         static_cast<size_t>(std::llround(cumulative * members.size())));
      for (size_t j = begin; j < end; ++j) parts[k].push_back(members[j]);
      begin = std::max(begin, end);
    }
  }
  TopUpSmallClients(min_per_client, parts);
  for (auto& part : parts) std::sort(part.begin(), part.end());
  return parts;
}

absl::StatusOr<FederatedData> GenerateFederatedData(const SyntheticDataOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  const int f = options.num_features;
  const int c = options.num_classes;
  const double sep =
      options.class_separation > 0 ? options.class_separation : DefaultClassSeparation(f);

  std::mt19937_64 means_rng(DeriveSeed(options.seed, kMeansStream));
  std::normal_distribution<float> mean_dist(0.0f, static_cast<float>(sep));
  std::vector<float> means(static_cast<size_t>(c) * f);
  for (float& m : means) m = mean_dist(means_rng);

  std::mt19937_64 train_rng(DeriveSeed(options.seed, kTrainStream));
  const size_t num_train = static_cast<size_t>(options.num_clients) * options.samples_per_client;
  Dataset train = DrawSamples(means, f, c, num_train, train_rng);

  FederatedData out;
  std::mt19937_64 test_rng(DeriveSeed(options.seed, kTestStream));
  out.test = DrawSamples(means, f, c, options.test_samples, test_rng);

  std::mt19937_64 split_rng(DeriveSeed(options.seed, kSplitStream));
  auto parts = DirichletLabelSplit(train.labels, c, options.num_clients, options.alpha,
                                   options.min_samples_per_client, split_rng);
  if (!parts.ok()) return parts.status();
  out.clients.reserve(parts->size());
  for (const auto& indices : *parts) out.clients.push_back(Subset(train, indices));
  return out;
}

Dataset Concatenate(absl::Span<const Dataset> parts) {
  Dataset out;
  if (parts.empty()) return out;
  out.num_features = parts[0].num_features;
  out.num_classes = parts[0].num_classes;
  for (const Dataset& part : parts) {
    out.features.insert(out.features.end(), part.features.begin(), part.features.end());
    out.labels.insert(out.labels.end(), part.labels.begin(), part.labels.end());
  }
  return out;
}

}  // namespace tally::sim
