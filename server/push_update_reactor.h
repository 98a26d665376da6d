// PushUpdate: receives one update, header then chunks folded into the round
// as they arrive; the stream's end (client half-close) commits it. Messages
// arrive as raw ByteBuffers and are decoded in place (proto/chunk_wire.h).
// An unauthenticated caller is refused before any of its bytes are read. The
// stream guard aborts an upload that stalls or is too slow, as a cancelled
// one is (its contribution subtracted, its slot freed).
//
// Ownership: owns itself (server/reactor_base.h); AggregatorService::PushUpdate
// creates it. Owns the Upload while it is open: an upload that never
// committed is aborted (and undone) in OnDone. It is registered with the
// guard from the constructor until OnDone. Everything passed to the
// constructor must outlive it.
// Thread safety: gRPC reactions and the guard's CheckProgress/Cut run on any
// thread; the stream state is guarded by a mutex.
#ifndef TALLY_SERVER_PUSH_UPDATE_REACTOR_H_
#define TALLY_SERVER_PUSH_UPDATE_REACTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/sync.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/auth.h"
#include "server/coordinator.h"
#include "server/metrics.h"
#include "server/progress_meter.h"
#include "server/reactor_base.h"
#include "server/stream_guard.h"

namespace tally::server {

class PushUpdateReactor final : public TallyReactor<grpc::ServerReadReactor<grpc::ByteBuffer>>,
                                public GuardedStream {
 public:
  // `response` receives the serialized PushUpdateResponse on commit;
  // `limits` are the upload's progress limits (limits.upload_*).
  PushUpdateReactor(grpc::CallbackServerContext* context, const Authenticator* auth,
                    Coordinator* coordinator, ServerMetrics* metrics, grpc::ByteBuffer* response,
                    StreamGuard* guard, const ProgressMeter::Limits& limits, Clock* clock);

  void OnReadDone(bool ok) override;
  // A stream that sent nothing for limits.upload_idle_timeout_ms, or too
  // little over the rate window, is aborted and finished.
  bool CheckProgress(absl::Time now) override;
  void Cut(const absl::Status& status) override;

 private:
  void Release() override;
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Aborts the upload, or counts the stream if no header came yet.
  void AbortLocked(RejectReason reason, absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleMessageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndOfStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  grpc::CallbackServerContext* const context_;
  const Authenticator* const auth_;
  std::vector<std::string> identities_;  // The caller's, checked once at the start.
  Coordinator* const coordinator_;
  ServerMetrics* const metrics_;
  grpc::ByteBuffer* const response_;
  StreamGuard* const guard_;
  Clock* const clock_;
  const ProgressMeter::Limits limits_;
  bool registered_ = false;  // With the guard; set in the constructor only.
  tally::Mutex mu_;
  std::unique_ptr<Upload> upload_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer message_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::Slice> slices_ ABSL_GUARDED_BY(mu_);
  StreamEnd end_ ABSL_GUARDED_BY(mu_);
  ProgressMeter meter_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::server

#endif  // TALLY_SERVER_PUSH_UPDATE_REACTOR_H_
