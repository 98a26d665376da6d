#include "core/model_store.h"

#include <cstdlib>
#include <utility>

namespace tally {

ModelStore::ModelStore(ModelLayout layout, std::vector<float> initial, absl::Time now,
                       uint64_t version, uint64_t round)
    : layout_(std::move(layout)) {
  if (initial.size() != layout_.NumParams() || version == 0) std::abort();
  auto snap = std::make_shared<ModelSnapshot>();
  snap->version = version;
  snap->round = round;
  snap->published = now;
  snap->params = std::move(initial);
  current_ = std::move(snap);
}

std::shared_ptr<const ModelSnapshot> ModelStore::Current() const {
  tally::MutexLock lock(&mu_);
  return current_;
}

std::shared_ptr<const ModelSnapshot> ModelStore::Publish(std::vector<float> params, uint64_t round,
                                                         absl::Time now) {
  return PublishAs(0, std::move(params), round, now);
}

std::shared_ptr<const ModelSnapshot> ModelStore::PublishAs(uint64_t version,
                                                           std::vector<float> params,
                                                           uint64_t round, absl::Time now) {
  std::shared_ptr<const ModelSnapshot> snap =
      PublishQuietly(version, std::move(params), round, now);
  NotifyListeners(snap);
  return snap;
}

std::shared_ptr<const ModelSnapshot> ModelStore::PublishQuietly(uint64_t version,
                                                                std::vector<float> params,
                                                                uint64_t round, absl::Time now) {
  if (params.size() != layout_.NumParams()) std::abort();
  std::shared_ptr<BufferPool> pool;
  {
    tally::MutexLock lock(&mu_);
    pool = recycler_;
  }
  std::shared_ptr<ModelSnapshot> snap;
  if (pool != nullptr) {
    snap = std::shared_ptr<ModelSnapshot>(new ModelSnapshot(), [pool](ModelSnapshot* s) {
      pool->Give(std::move(s->params));
      delete s;
    });
  } else {
    snap = std::make_shared<ModelSnapshot>();
  }
  snap->round = round;
  snap->published = now;
  snap->params = std::move(params);
  tally::MutexLock lock(&mu_);
  if (version != 0 && version <= current_->version) std::abort();
  snap->version = version != 0 ? version : current_->version + 1;
  current_ = snap;
  return snap;
}

void ModelStore::NotifyListeners(const std::shared_ptr<const ModelSnapshot>& snapshot) {
  std::vector<std::shared_ptr<Listener>> to_call;
  {
    tally::MutexLock lock(&mu_);
    for (auto& [id, listener] : listeners_) to_call.push_back(listener);
  }
  for (auto& listener : to_call) (*listener)(snapshot);
}

void ModelStore::set_recycler(std::shared_ptr<BufferPool> pool) {
  tally::MutexLock lock(&mu_);
  recycler_ = std::move(pool);
}

int ModelStore::Subscribe(Listener listener) {
  tally::MutexLock lock(&mu_);
  const int id = next_listener_id_++;
  listeners_[id] = std::make_shared<Listener>(std::move(listener));
  return id;
}

void ModelStore::Unsubscribe(int id) {
  tally::MutexLock lock(&mu_);
  listeners_.erase(id);
}

}  // namespace tally
