// PullModel: streams one model version, as the messages of its segments,
// shared with every other puller of that version and codec (nothing is
// encoded or copied here once the version's segments exist). The stream
// guard cuts it when its client takes nothing for
// limits.download_stall_timeout_ms, or when it holds an old version beyond
// the pinned-version bound: it is then finished and reset, so that gRPC
// drops the queued messages and the version is released.
//
// Ownership: owns itself (server/reactor_base.h); AggregatorService::PullModel
// creates it. Holds shared references to its segments; everything passed to
// the constructor must outlive it. It is registered with the guard from the
// constructor until OnDone.
// Thread safety: gRPC reactions and the guard's CheckProgress/Cut run on any
// thread; the stream state is guarded by a mutex.
#ifndef TALLY_SERVER_PULL_MODEL_REACTOR_H_
#define TALLY_SERVER_PULL_MODEL_REACTOR_H_

#include <cstddef>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/sync.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/auth.h"
#include "server/coordinator.h"
#include "server/encoded_model.h"
#include "server/metrics.h"
#include "server/progress_meter.h"
#include "server/reactor_base.h"
#include "server/stream_guard.h"

namespace tally::server {

class PullModelReactor final : public TallyReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>>,
                               public GuardedStream {
 public:
  // `request_bytes` is the raw PullModelRequest; `limits.idle` is the stall
  // timeout.
  PullModelReactor(grpc::CallbackServerContext* context, const Authenticator* auth,
                   Coordinator* coordinator, ServerMetrics* metrics, ModelDownloads* downloads,
                   const grpc::ByteBuffer* request_bytes, StreamGuard* guard,
                   const ProgressMeter::Limits& limits, Clock* clock);

  void OnWriteDone(bool ok) override;
  bool CheckProgress(absl::Time now) override;
  void Cut(const absl::Status& status) override;

 private:
  void Release() override;

  // The segments answering the request, or why not.
  static absl::StatusOr<SegmentList> Segments(grpc::CallbackServerContext* context,
                                              const Authenticator* auth, Coordinator* coordinator,
                                              ModelDownloads* downloads,
                                              const grpc::ByteBuffer* request_bytes);

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A stalled client cannot take the status either (it is queued behind the
  // messages it does not read): the reset drops those messages at once.
  void CutLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  grpc::CallbackServerContext* const context_;
  ServerMetrics* const metrics_;
  StreamGuard* const guard_;
  Clock* const clock_;
  const size_t num_params_;
  SegmentList segments_;
  PinnedModel pin_;
  bool registered_ = false;  // With the guard; set in the constructor only.
  tally::Mutex mu_;
  size_t segment_ ABSL_GUARDED_BY(mu_) = 0;  // Being written.
  size_t message_ ABSL_GUARDED_BY(mu_) = 0;  // Of segments_[segment_], the next to write.
  StreamEnd end_ ABSL_GUARDED_BY(mu_);
  ProgressMeter meter_ ABSL_GUARDED_BY(mu_);
  const absl::Duration stall_timeout_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_PULL_MODEL_REACTOR_H_
