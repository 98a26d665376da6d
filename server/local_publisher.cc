// LocalPublisher (server/publisher.h): new versions, checkpoints, the final
// model.
#include "absl/strings/str_cat.h"
#include "core/model_file.h"
#include "server/log.h"
#include "server/publisher.h"

namespace tally::server {

LocalPublisher::LocalPublisher(Options options)
    : options_(std::move(options)),
      last_checkpoint_(options_.clock->Now()),
      checkpointed_version_(options_.initial_version),
      on_disk_(options_.restored) {
  if (options_.restored) {
    options_.metrics->checkpoint_version.Set(static_cast<double>(options_.initial_version));
  }
}

Publisher::Outcome LocalPublisher::Publish(const DriverBatch&, std::vector<float> next,
                                           const ModelSnapshot& current, absl::Time started) {
  if (next.empty()) return {};
  const absl::Time now = options_.clock->Now();
  Outcome outcome;
  outcome.ok = true;
  outcome.snapshot = options_.store->PublishQuietly(0, std::move(next), current.round + 1, now);
  options_.metrics->aggregation_duration.Observe(absl::ToDoubleSeconds(now - started));
  return outcome;
}

void LocalPublisher::MaybeCheckpoint(bool force) {
  const PersistPlan& persist = options_.persist;
  if (persist.checkpoint_dir.empty()) return;
  std::shared_ptr<const ModelSnapshot> snapshot = options_.store->Current();
  const absl::Time now = options_.clock->Now();
  if (snapshot->version == checkpointed_version_) return;
  if (!force && now - last_checkpoint_ < persist.checkpoint_interval) return;
  // The ids of the updates in `snapshot`: only the worker publishes, so the
  // ledger's applied ids match it.
  CheckpointContents contents;
  contents.optimizer_name = options_.step->optimizer().name();
  contents.optimizer_tensors = options_.step->optimizer().MutableState();
  options_.gather(&contents);
  absl::Status written = WriteCheckpoint(persist.checkpoint_dir, options_.store->layout(),
                                         *snapshot, contents);
  if (!written.ok()) {
    LogError(std::string(written.message()));
    options_.metrics->checkpoint_failures.Increment();
    return;
  }
  checkpointed_version_ = snapshot->version;
  on_disk_ = true;
  options_.metrics->checkpoint_version.Set(static_cast<double>(snapshot->version));
  last_checkpoint_ = now;
  LogInfo(absl::StrCat("checkpoint: wrote version ", snapshot->version, " (round ", snapshot->round,
                       ") to ", persist.checkpoint_dir));
}

void LocalPublisher::FinishRun() {
  std::string why = options_.finish_reason ? options_.finish_reason() : std::string();
  if (why.empty()) why = absl::StrCat("rounds.total_rounds = ", options_.total_rounds, " reached");
  const std::shared_ptr<const ModelSnapshot> model = options_.store->Current();
  LogInfo(absl::StrCat("federation finished: ", why, "; final model version ", model->version,
                       " (round ", model->round, ")"));
  MaybeCheckpoint(/*force=*/true);
  WriteFinalModel(*options_.store, options_.persist.final_model_path);
}

void WriteFinalModel(const ModelStore& store, const std::string& path) {
  if (path.empty()) return;
  const std::shared_ptr<const ModelSnapshot> model = store.Current();
  const absl::Status written = WriteModelFile(path, store.layout(), model->params);
  if (written.ok()) {
    LogInfo(absl::StrCat("final model (version ", model->version, ") written to ", path));
  } else {
    LogError(absl::StrCat("final_model_path: ", written.message()));
  }
}

void RestoreOptimizerState(aggregators::AggregationStep& step, OptimizerState& state) {
  if (state.name.empty()) return;
  if (state.name != step.optimizer().name()) {
    LogWarning(absl::StrCat("checkpoint: optimizer state is for '", state.name,
                            "', the config says '", step.optimizer().name(),
                            "'; the optimizer starts fresh"));
    return;
  }
  size_t restored = 0;
  for (auto& [key, target] : step.optimizer().MutableState()) {
    for (auto& [saved_key, values] : state.tensors) {
      if (saved_key == key) {
        *target = std::move(values);
        ++restored;
      }
    }
  }
  LogInfo(absl::StrCat("checkpoint: restored ", restored, " state tensor(s) of optimizer '",
                       state.name, "'"));
}

}  // namespace tally::server
