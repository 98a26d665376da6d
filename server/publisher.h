// The publisher: what becomes of a batch's aggregate (docs/server.md, "Parts
// and seams"). Chosen once when the Coordinator is built:
//   LocalPublisher     the optimizer turns the aggregate into the next model
//                      version (ModelStore), checkpoints, the final model
//                      (server/local_publisher.cc)
//   UpstreamPublisher  a relay: the round's weighted mean goes to the
//                      upstream as a RelayBatch (server/relay.h), no version
//                      here (server/upstream_publisher.cc)
// The Coordinator calls BeginBlocks and ApplyBlock (through the sink's
// Combine, no lock held), Publish under its lock (then notifies the store's
// listeners after releasing it), and the rest from the worker thread or
// Stop.
#ifndef TALLY_SERVER_PUBLISHER_H_
#define TALLY_SERVER_PUBLISHER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "aggregators/step/aggregation_step.h"
#include "core/clock.h"
#include "core/model_store.h"
#include "core/sync.h"
#include "server/checkpoint.h"
#include "server/driver.h"
#include "server/metrics.h"
#include "server/plan.h"

namespace tally::server {

// What a relay round produced for the upstream.
struct RelayBatch {
  uint64_t round = 0;
  uint64_t base_version = 0;
  // The weighted mean of the round's updates; empty: nothing to forward
  // (fewer than rounds.min_clients updates, or none).
  std::vector<float> mean;
  uint64_t weight = 0;  // Sum of the updates' num_samples.
  uint32_t updates = 0;
};

class Publisher {
 public:
  struct Outcome {
    bool ok = false;  // The aggregate was taken (published or forwarded).
    std::shared_ptr<const ModelSnapshot> snapshot;  // A new version: notify listeners.
  };
  virtual ~Publisher() = default;

  // The step on the aggregate, block by block (server/update_sink.h BlockFn).
  virtual void BeginBlocks(size_t num_params) = 0;
  virtual absl::Status ApplyBlock(const ModelSnapshot& current, float* next, size_t begin,
                                  size_t count) = 0;
  // Under the Coordinator's lock. `next`: the batch's result (empty: the
  // batch failed); `started`: when its aggregation started.
  virtual Outcome Publish(const DriverBatch& batch, std::vector<float> next,
                          const ModelSnapshot& current, absl::Time started) = 0;
  // Writes a checkpoint if due (or `force`) and the model is not on disk.
  virtual void MaybeCheckpoint(bool force) = 0;
  // The federation is over: logs it, a last checkpoint, the final model.
  virtual void FinishRun() = 0;
  virtual uint64_t checkpoint_version() const = 0;  // 0: none on disk.
  // A relay: blocks until a round's batch is ready; nullopt once stopped.
  virtual std::optional<RelayBatch> AwaitBatch() = 0;
  // Draining or stopping: AwaitBatch returns.
  virtual void Stop() = 0;
};

class LocalPublisher final : public Publisher {
 public:
  struct Options {
    ModelStore* store = nullptr;
    aggregators::AggregationStep* step = nullptr;
    Clock* clock = nullptr;
    ServerMetrics* metrics = nullptr;
    PersistPlan persist;
    uint64_t total_rounds = 0;
    uint64_t initial_version = 1;
    bool restored = false;  // initial_version is on disk already.
    // Fills a checkpoint's applied update ids and schedule state (takes the
    // Coordinator's lock).
    std::function<void(CheckpointContents*)> gather;
    // Why the run ended if not total_rounds ("" otherwise): the privacy
    // budget (server/privacy_driver.h).
    std::function<std::string()> finish_reason;
  };
  explicit LocalPublisher(Options options);

  void BeginBlocks(size_t num_params) override { options_.step->Prepare(num_params); }
  absl::Status ApplyBlock(const ModelSnapshot& current, float* next, size_t begin,
                          size_t count) override {
    return options_.step->ApplyRange(current.params.data() + begin, next + begin, begin, count);
  }
  Outcome Publish(const DriverBatch& batch, std::vector<float> next, const ModelSnapshot& current,
                  absl::Time started) override;
  void MaybeCheckpoint(bool force) override;
  void FinishRun() override;
  uint64_t checkpoint_version() const override {
    return on_disk_ ? checkpointed_version_.load() : 0;
  }
  std::optional<RelayBatch> AwaitBatch() override { return std::nullopt; }
  void Stop() override {}

 private:
  Options options_;
  absl::Time last_checkpoint_;  // Worker thread / Stop only.
  std::atomic<uint64_t> checkpointed_version_;
  std::atomic<bool> on_disk_;
};

class UpstreamPublisher final : public Publisher {
 public:
  UpstreamPublisher(ModelStore* store, std::string final_model_path)
      : store_(store), final_model_path_(std::move(final_model_path)) {}

  void BeginBlocks(size_t) override {}
  // The mean is forwarded as it is (the upstream runs the optimizer).
  absl::Status ApplyBlock(const ModelSnapshot&, float*, size_t, size_t) override {
    return absl::OkStatus();
  }
  Outcome Publish(const DriverBatch& batch, std::vector<float> next, const ModelSnapshot& current,
                  absl::Time started) override;
  void MaybeCheckpoint(bool) override {}  // A relay keeps no state (MakePlan).
  void FinishRun() override;
  uint64_t checkpoint_version() const override { return 0; }
  std::optional<RelayBatch> AwaitBatch() override;
  void Stop() override;

 private:
  ModelStore* const store_;
  const std::string final_model_path_;
  tally::Mutex mu_;
  std::optional<RelayBatch> batch_ ABSL_GUARDED_BY(mu_);  // Closed, not yet taken.
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

// Moves the matching state tensors of `state` into the step's optimizer (a
// checkpoint's); logs what it restored.
void RestoreOptimizerState(aggregators::AggregationStep& step, OptimizerState& state);

// Writes the current model to `path` (final_model_path) unless it is
// empty; logs where, or why not.
void WriteFinalModel(const ModelStore& store, const std::string& path);

}  // namespace tally::server

#endif  // TALLY_SERVER_PUBLISHER_H_
