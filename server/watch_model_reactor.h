// WatchModel: pushes a notice for each new model version. Notices coalesce:
// a slow watcher gets the newest version, not a backlog.
//
// Ownership: owns itself (server/reactor_base.h); AggregatorService::WatchModel
// creates it. It subscribes to the coordinator's model store from the
// constructor until OnDone, through a shared link that the store's listener
// keeps, so that a notice racing OnDone finds no reactor rather than a
// deleted one. Everything passed to the constructor must outlive it.
// Thread safety: model-store listeners and gRPC reactions run on any thread;
// the stream state is guarded by a mutex.
#ifndef TALLY_SERVER_WATCH_MODEL_REACTOR_H_
#define TALLY_SERVER_WATCH_MODEL_REACTOR_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "core/sync.h"
#include "server/coordinator.h"
#include "server/metrics.h"
#include "server/reactor_base.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::server {

class WatchModelReactor final
    : public TallyReactor<grpc::ServerWriteReactor<tally::v1::ModelVersionNotice>> {
 public:
  // `open` counts the open watches (this one included); OnDone takes it off.
  WatchModelReactor(Coordinator* coordinator, const tally::v1::WatchModelRequest* request,
                    std::atomic<uint32_t>* open, ServerMetrics* metrics);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;

 private:
  struct Link {
    tally::Mutex mu;
    WatchModelReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  void Release() override;
  void OnVersion(const ModelSnapshot& snapshot);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Coordinator* const coordinator_;
  std::atomic<uint32_t>* const open_;
  ServerMetrics* const metrics_;
  std::shared_ptr<Link> link_;
  int subscription_ = 0;
  tally::Mutex mu_;
  uint64_t sent_ ABSL_GUARDED_BY(mu_);
  uint64_t latest_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t latest_round_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time latest_published_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  tally::v1::ModelVersionNotice notice_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_WATCH_MODEL_REACTOR_H_
