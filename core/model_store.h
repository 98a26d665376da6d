// ModelStore: the versioned global model. Each version is published as an
// immutable ModelSnapshot shared (shared_ptr<const>) with every reader, so a
// puller streaming version v is never disturbed by the publication of v+1.
// Version 1 is the initial model; 0 is never a valid version on the wire
// ("latest").
//
// Thread-safe. Listeners are called after publication, outside the lock,
// on the publishing thread, and must not block. A listener may still run once
// after Unsubscribe() returns: capture shared state (a shared_ptr), never a
// raw pointer to an object destroyed right after Unsubscribe().
#ifndef TALLY_CORE_MODEL_STORE_H_
#define TALLY_CORE_MODEL_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "core/buffer_pool.h"
#include "core/model_layout.h"
#include "core/sync.h"

namespace tally {

struct ModelSnapshot {
  uint64_t version = 0;
  uint64_t round = 0;  // Rounds completed when this version was published.
  absl::Time published;
  std::vector<float> params;  // layout.NumParams() floats.
};

class ModelStore {
 public:
  using Listener = std::function<void(const std::shared_ptr<const ModelSnapshot>&)>;

  // `initial.size()` must equal layout.NumParams() (checked).
  ModelStore(ModelLayout layout, std::vector<float> initial, absl::Time now, uint64_t version = 1,
             uint64_t round = 0);

  const ModelLayout& layout() const { return layout_; }

  std::shared_ptr<const ModelSnapshot> Current() const;

  // Publishes `params` as version Current()->version + 1 and notifies
  // listeners. `params.size()` must equal NumParams() (checked).
  std::shared_ptr<const ModelSnapshot> Publish(std::vector<float> params, uint64_t round,
                                               absl::Time now);
  // The same with the version given (a relay mirroring its upstream's
  // versions): `version` must be above Current()->version (checked); 0 =
  // the next one.
  std::shared_ptr<const ModelSnapshot> PublishAs(uint64_t version, std::vector<float> params,
                                                 uint64_t round, absl::Time now);

  // The same, without calling the listeners: the caller calls
  // NotifyListeners(snapshot) once it has released any lock a listener must
  // not run under (the coordinator publishes under its own mutex so that a
  // new version and its round appear together; WatchModel listeners start
  // gRPC writes, which must not happen under that mutex).
  std::shared_ptr<const ModelSnapshot> PublishQuietly(uint64_t version, std::vector<float> params,
                                                      uint64_t round, absl::Time now);
  void NotifyListeners(const std::shared_ptr<const ModelSnapshot>& snapshot);

  // From now on, the parameter buffer of every snapshot published goes back
  // to `pool` when its last reader releases it.
  void set_recycler(std::shared_ptr<BufferPool> pool) ABSL_LOCKS_EXCLUDED(mu_);

  // Returns an id for Unsubscribe. The listener is not called for versions
  // published before Subscribe returned.
  int Subscribe(Listener listener);
  void Unsubscribe(int id);

 private:
  const ModelLayout layout_;
  mutable tally::Mutex mu_;
  std::shared_ptr<const ModelSnapshot> current_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::shared_ptr<Listener>> listeners_ ABSL_GUARDED_BY(mu_);
  int next_listener_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::shared_ptr<BufferPool> recycler_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally

#endif  // TALLY_CORE_MODEL_STORE_H_
