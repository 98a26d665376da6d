// GetTask with a server-side long-poll: the call stays open (no thread held)
// until the coordinator has something other than WAIT, or the wait ends.
//
// Ownership: owns itself (server/reactor_base.h); AggregatorService::GetTask
// creates it. The coordinator, request and response must outlive it.
// Thread safety: the coordinator may complete the wait on any thread, also
// during the constructor; the waiter id is guarded by a mutex.
#ifndef TALLY_SERVER_GET_TASK_REACTOR_H_
#define TALLY_SERVER_GET_TASK_REACTOR_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/sync.h"
#include "server/coordinator.h"
#include "server/reactor_base.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::server {

class GetTaskReactor final : public TallyReactor<grpc::ServerUnaryReactor> {
 public:
  // Waits at most `max_wait` (limits.max_wait_ms), less if the request asks.
  GetTaskReactor(Coordinator* coordinator, const tally::v1::GetTaskRequest* request,
                 tally::v1::Task* response, absl::Duration max_wait);

  void OnCancel() override;

 private:
  void Complete(absl::StatusOr<TaskInfo> task);

  Coordinator* const coordinator_;
  tally::v1::Task* const response_;
  tally::Mutex mu_;
  uint64_t waiter_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_GET_TASK_REACTOR_H_
