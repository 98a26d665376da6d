// gRPC callback services: Aggregator (training clients) and Admin
// (operators). They translate requests and streams into Coordinator calls
// and absl::Status into grpc::Status; all state lives in the Coordinator.
// Every reaction does O(chunk) work and never blocks on another call.
#ifndef TALLY_SERVER_SERVICE_H_
#define TALLY_SERVER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "core/clock.h"
#include "server/auth.h"
#include "server/coordinator.h"
#include "server/encoded_model.h"
#include "server/metrics.h"
#include "server/progress_meter.h"
#include "server/stream_guard.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::server {

// PushUpdate and PullModel are raw methods: update chunks are decoded from
// the received slices without an intermediate copy (proto/chunk_wire.h), and
// model segments are encoded once per version and codec (server/encoded_model.h).
class AggregatorService final : public tally::v1::Aggregator::WithRawCallbackMethod_PullModel<
                                    tally::v1::Aggregator::WithRawCallbackMethod_PushUpdate<
                                        tally::v1::Aggregator::CallbackService>> {
 public:
  // Does not take ownership; all must outlive the service.
  // Every call is checked by `auth` (callers may act only as themselves).
  // `clock` times the stream guard's progress limits (server/stream_guard.h).
  // `downloads`: compression.download* (the plan's, server/plan.h).
  AggregatorService(Coordinator* coordinator, ServerMetrics* metrics,
                    const tally::v1::ServerConfig* config, DownloadCodecs downloads,
                    const Authenticator* auth, Clock* clock = RealClock::Get());
  ~AggregatorService() override;  // After every stream has ended (gRPC server shut down).

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* context,
                                 const tally::v1::JoinRequest* request,
                                 tally::v1::JoinResponse* response) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* context,
                                    const tally::v1::GetTaskRequest* request,
                                    tally::v1::Task* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* PullModel(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request) override;
  grpc::ServerWriteReactor<tally::v1::ModelVersionNotice>* WatchModel(
      grpc::CallbackServerContext* context, const tally::v1::WatchModelRequest* request) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* PushUpdate(grpc::CallbackServerContext* context,
                                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const tally::v1::HeartbeatRequest* request,
                                      tally::v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* context,
                                  const tally::v1::LeaveRequest* request,
                                  tally::v1::LeaveResponse* response) override;

 private:
  Coordinator* const coordinator_;
  const Authenticator* const auth_;
  ServerMetrics* const metrics_;
  const tally::v1::ServerConfig* const config_;
  Clock* const clock_;
  tally::v1::ModelSpec model_spec_;  // Built once from the layout.
  ModelDownloads downloads_;
  ProgressMeter::Limits upload_limits_;     // limits.upload_*.
  ProgressMeter::Limits download_limits_;   // limits.download_stall_timeout_ms.
  std::unique_ptr<StreamGuard> guard_;      // Cuts stalled streams, bounds pinned models.
  std::atomic<uint32_t> watch_streams_{0};  // Open WatchModel streams.
};

class AdminService final : public tally::v1::Admin::CallbackService {
 public:
  // Calls need an admin identity when authentication is on. `restored`:
  // what start-up restored from a checkpoint.
  // `strategy`: "schedule/rule/optimizer" (ServerPlan::strategy_label).
  AdminService(Coordinator* coordinator, ServerMetrics* metrics, std::string strategy,
               const Authenticator* auth, absl::Time started, RestoreReport restored = {});

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const tally::v1::GetStatusRequest* request,
                                      tally::v1::ServerStatus* response) override;

 private:
  Coordinator* const coordinator_;
  ServerMetrics* const metrics_;
  const Authenticator* const auth_;
  const absl::Time started_;
  // The fields fixed at start: model size, strategy, restore, build.
  tally::v1::ServerStatus fixed_;
};

// Converts a ModelLayout to its wire form.
tally::v1::ModelSpec ModelSpecFromLayout(const ModelLayout& layout);

}  // namespace tally::server

#endif  // TALLY_SERVER_SERVICE_H_
