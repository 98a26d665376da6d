#include "server/watch_model_reactor.h"

namespace tally::server {

WatchModelReactor::WatchModelReactor(Coordinator* coordinator,
                                     const tally::v1::WatchModelRequest* request,
                                     std::atomic<uint32_t>* open, ServerMetrics* metrics)
    : coordinator_(coordinator), open_(open), metrics_(metrics), sent_(request->after_version()) {
  absl::Status session = coordinator->CheckSession(request->client_id(), request->session_token());
  if (!session.ok()) {
    tally::MutexLock lock(&mu_);
    finished_ = true;
    FinishWith(session);
    return;
  }
  link_ = std::make_shared<Link>();
  link_->reactor = this;
  std::shared_ptr<Link> link = link_;
  subscription_ = coordinator_->mutable_store().Subscribe(
      [link](const std::shared_ptr<const ModelSnapshot>& snapshot) {
        tally::MutexLock lock(&link->mu);
        if (link->reactor != nullptr) link->reactor->OnVersion(*snapshot);
      });
  std::shared_ptr<const ModelSnapshot> current = coordinator_->store().Current();
  OnVersion(*current);
}

void WatchModelReactor::OnWriteDone(bool ok) {
  tally::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok || cancelled_) {
    FinishLocked(grpc::Status::CANCELLED);
    return;
  }
  MaybeWriteLocked();
}

void WatchModelReactor::OnCancel() {
  tally::MutexLock lock(&mu_);
  cancelled_ = true;
  if (!writing_) FinishLocked(grpc::Status::CANCELLED);
}

void WatchModelReactor::Release() {
  if (link_ != nullptr) {
    {
      tally::MutexLock lock(&link_->mu);
      link_->reactor = nullptr;
    }
    coordinator_->mutable_store().Unsubscribe(subscription_);
  }
  metrics_->watch_streams.Set(--*open_);
}

void WatchModelReactor::OnVersion(const ModelSnapshot& snapshot) {
  tally::MutexLock lock(&mu_);
  if (snapshot.version > latest_) {
    latest_ = snapshot.version;
    latest_round_ = snapshot.round;
    latest_published_ = snapshot.published;
  }
  MaybeWriteLocked();
}

void WatchModelReactor::MaybeWriteLocked() {
  if (writing_ || finished_ || latest_ <= sent_) return;
  notice_.set_version(latest_);
  notice_.set_round(latest_round_);
  notice_.set_published_unix_ms(absl::ToUnixMillis(latest_published_));
  sent_ = latest_;
  writing_ = true;
  StartWrite(&notice_);
}

void WatchModelReactor::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

}  // namespace tally::server
