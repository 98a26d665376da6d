// UpstreamPublisher (server/publisher.h): a relay's rounds become batches
// for the upstream (server/relay.h).
#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/publisher.h"

namespace tally::server {

Publisher::Outcome UpstreamPublisher::Publish(const DriverBatch& batch, std::vector<float> next,
                                              const ModelSnapshot&, absl::Time) {
  RelayBatch relayed;
  relayed.round = batch.round;
  relayed.base_version = batch.base_version;
  relayed.mean = std::move(next);
  relayed.weight = relayed.mean.empty() ? 0 : batch.weight;
  relayed.updates = batch.updates;
  Outcome outcome;
  outcome.ok = !relayed.mean.empty();
  tally::MutexLock lock(&mu_);
  batch_ = std::move(relayed);
  return outcome;
}

std::optional<RelayBatch> UpstreamPublisher::AwaitBatch() {
  tally::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return batch_.has_value() || stopped_;
  };
  mu_.Await(absl::Condition(&ready));
  std::optional<RelayBatch> batch = std::move(batch_);
  batch_.reset();
  return batch;
}

void UpstreamPublisher::Stop() {
  tally::MutexLock lock(&mu_);
  stopped_ = true;
}

void UpstreamPublisher::FinishRun() {
  const std::shared_ptr<const ModelSnapshot> model = store_->Current();
  LogInfo(absl::StrCat("federation finished: the upstream is done; final model version ",
                       model->version, " (round ", model->round, ")"));
  WriteFinalModel(*store_, final_model_path_);
}

}  // namespace tally::server
