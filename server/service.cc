#include "server/service.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/build_info.h"
#include "proto/codec_params.h"
#include "server/client_text.h"
#include "server/codec_negotiation.h"
#include "server/encoded_model.h"
#include "server/get_task_reactor.h"
#include "server/grpc_status.h"
#include "server/log.h"
#include "server/privacy_config.h"
#include "server/progress_meter.h"
#include "server/pull_model_reactor.h"
#include "server/push_update_reactor.h"
#include "server/reactor_base.h"
#include "server/report_evaluation_reactor.h"
#include "server/stream_guard.h"
#include "server/watch_model_reactor.h"
#include "server/workflow_config.h"

namespace tally::server {
namespace {

using ::tally::v1::ModelVersionNotice;

// VmHWM and VmRSS of this process, in bytes (0 if /proc is unavailable).
// The one conversion of the Coordinator's progress to the admin status.
void ProgressToProto(const CoordinatorStatus& s, tally::v1::ServerStatus* out) {
  out->set_model_version(s.model_version);
  out->set_round(s.round);
  out->set_rounds_completed(s.rounds_completed);
  out->set_rounds_failed(s.rounds_failed);
  out->set_connected_clients(s.connected_clients);
  out->set_updates_in_round(s.updates_in_round);
  out->set_uploads_in_flight(s.uploads_in_flight);
  out->set_updates_accepted(s.updates_accepted);
  out->set_bytes_received(s.bytes_received);
  out->set_done(s.done);
  out->set_last_round_millis(absl::ToInt64Milliseconds(s.last_round_duration));
  out->set_checkpoint_version(s.checkpoint_version);
  if (s.privacy.central) {
    out->set_privacy_epsilon(s.privacy.epsilon);
    out->set_privacy_delta(s.privacy.delta);
    out->set_privacy_steps(s.privacy.steps);
    out->set_privacy_target_epsilon(s.privacy.target_epsilon);
    out->set_privacy_clip_norm(s.privacy.clip_norm);
  }
}

void ReadMemoryStats(uint64_t* peak_rss, uint64_t* rss) {
  *peak_rss = *rss = 0;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    uint64_t* target = nullptr;
    if (line.rfind("VmHWM:", 0) == 0) target = peak_rss;
    if (line.rfind("VmRSS:", 0) == 0) target = rss;
    if (target == nullptr) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    uint64_t kib = 0;
    if (absl::SimpleAtoi(digits, &kib)) *target = kib * 1024;
  }
}

}  // namespace

tally::v1::ModelSpec ModelSpecFromLayout(const ModelLayout& layout) {
  tally::v1::ModelSpec spec;
  for (const TensorLayout& t : layout.tensors()) {
    tally::v1::TensorSpec* ts = spec.add_tensors();
    ts->set_name(t.name);
    for (int64_t d : t.shape) ts->add_shape(d);
    ts->set_dtype(tally::v1::DTYPE_FLOAT32);
  }
  spec.set_num_params(layout.NumParams());
  spec.set_layout_hash(layout.Hash());
  return spec;
}

namespace {

// The codec ids a JoinRequest lists, leaving out values tally does not know.
ClientCodecs ClientCodecsFromRequest(const tally::v1::JoinRequest& request) {
  auto known = [](const auto& listed) {
    std::vector<compress::CodecId> ids;
    for (int codec : listed) {
      const compress::CodecInfo* info = CodecFromProto(static_cast<tally::v1::Codec>(codec));
      if (info != nullptr) ids.push_back(info->id);
    }
    return ids;
  };
  ClientCodecs client;
  if (!request.supported_codecs().empty()) client.encodes = known(request.supported_codecs());
  client.decodes = known(request.download_codecs());
  return client;
}

}  // namespace

AggregatorService::AggregatorService(Coordinator* coordinator, ServerMetrics* metrics,
                                     const tally::v1::ServerConfig* config,
                                     DownloadCodecs downloads, const Authenticator* auth,
                                     Clock* clock)
    : coordinator_(coordinator),
      auth_(auth),
      metrics_(metrics),
      config_(config),
      clock_(clock),
      model_spec_(ModelSpecFromLayout(coordinator->store().layout())),
      downloads_(model_spec_, config->limits().model_chunk_bytes(), std::move(downloads)) {
  const tally::v1::LimitsConfig& limits = config->limits();
  upload_limits_.idle = absl::Milliseconds(limits.upload_idle_timeout_ms());
  upload_limits_.min_bytes_per_second = limits.min_upload_bytes_per_second();
  upload_limits_.window = absl::Milliseconds(limits.upload_rate_window_ms());
  download_limits_.idle = absl::Milliseconds(limits.download_stall_timeout_ms());
  StreamGuard::Options options;
  options.clock = clock;
  // Cuts land within a fifth of the shortest limit (rate samples: a quarter
  // of the window), between 5 ms and 1 s after they are due.
  options.tick = std::clamp(
      std::min({upload_limits_.idle, download_limits_.idle, upload_limits_.window / 4}) / 5,
      absl::Milliseconds(5), absl::Seconds(1));
  options.max_pinned_versions = limits.max_pinned_model_versions();
  options.max_pinned_bytes = limits.max_pinned_model_bytes();
  options.current_version = [coordinator] { return coordinator->store().Current()->version; };
  options.metrics = metrics;
  guard_ = std::make_unique<StreamGuard>(std::move(options));
}

AggregatorService::~AggregatorService() = default;

grpc::ServerUnaryReactor* AggregatorService::Join(grpc::CallbackServerContext* context,
                                                  const tally::v1::JoinRequest* request,
                                                  tally::v1::JoinResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // An invalid id is refused before authentication can repeat it.
  if (absl::Status valid = ValidateId("client_id", request->client_id()); !valid.ok()) {
    metrics_->RejectedJoin(JoinRejectReason::kInvalidId, valid.message());
    reactor->Finish(ToGrpcStatus(valid));
    return reactor;
  }
  if (absl::Status dp = ValidateLocalDpDeclaration(request->local_dp()); !dp.ok()) {
    metrics_->RejectedJoin(JoinRejectReason::kInvalidLocalDp, dp.message());
    reactor->Finish(ToGrpcStatus(dp));
    return reactor;
  }
  absl::StatusOr<std::string> identity = auth_->ClientIdentity(*context, request->client_id());
  if (!identity.ok()) {
    reactor->Finish(ToGrpcStatus(identity.status()));
    return reactor;
  }
  const JoinCaller caller{request->session_token(), PeerAddress(context->peer()), *identity};
  absl::StatusOr<NegotiatedCodecs> codecs = NegotiateCodecs(
      ClientCodecsFromRequest(*request), coordinator_->upload_codecs(), downloads_.codecs());
  if (!codecs.ok()) {
    reactor->Finish(ToGrpcStatus(codecs.status()));
    return reactor;
  }
  if (absl::Status attributes = AttributesFromJoin(*request).status(); !attributes.ok()) {
    metrics_->RejectedJoin(JoinRejectReason::kAttributes, attributes.message());
    reactor->Finish(ToGrpcStatus(attributes));
    return reactor;
  }
  auto session = coordinator_->Join(request->client_id(), caller);
  if (!session.ok()) {
    reactor->Finish(ToGrpcStatus(session.status()));
    return reactor;
  }
  if (WorkflowRun* run = coordinator_->workflow(); run != nullptr) {
    // Checked above: cannot fail.
    run->workflow().OnJoin(request->client_id(), *request).IgnoreError();
  }
  if (request->has_local_dp()) {
    LogInfo(absl::StrCat("join ", ClientText(request->client_id()), " declares ",
                         LocalDpText(request->local_dp())));
    metrics_->local_dp_joins.Increment();
  }
  response->set_session_token(session->token);
  *response->mutable_model_spec() = model_spec_;
  response->set_upload_codec(CodecToProto(codecs->upload));
  SpecToProto(codecs->upload, response->mutable_upload_params());
  response->set_download_codec(CodecToProto(codecs->download));
  SpecToProto(codecs->download, response->mutable_download_params());
  if (codecs->delta.has_value()) {
    response->set_delta_codec(CodecToProto(*codecs->delta));
    SpecToProto(*codecs->delta, response->mutable_delta_params());
  }
  tally::v1::Limits* limits = response->mutable_limits();
  limits->set_max_chunk_bytes(config_->limits().max_chunk_bytes());
  limits->set_max_update_bytes(config_->limits().max_update_bytes());
  limits->set_heartbeat_interval_ms(config_->limits().heartbeat_interval_ms());
  response->set_model_version(session->model_version);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AggregatorService::GetTask(grpc::CallbackServerContext* context,
                                                     const tally::v1::GetTaskRequest* request,
                                                     tally::v1::Task* response) {
  if (absl::Status allowed = auth_->CheckClient(*context, request->client_id()); !allowed.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  return new GetTaskReactor(coordinator_, request, response,
                            absl::Milliseconds(config_->limits().max_wait_ms()));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* AggregatorService::PullModel(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new PullModelReactor(context, auth_, coordinator_, metrics_, &downloads_, request,
                              guard_.get(), download_limits_, clock_);
}

grpc::ServerWriteReactor<ModelVersionNotice>* AggregatorService::WatchModel(
    grpc::CallbackServerContext* context, const tally::v1::WatchModelRequest* request) {
  if (absl::Status allowed = auth_->CheckClient(*context, request->client_id()); !allowed.ok()) {
    return new RefusedWriter<ModelVersionNotice>(allowed);
  }
  const uint32_t max = config_->limits().max_watch_streams();
  if (watch_streams_.fetch_add(1) >= max) {
    metrics_->watch_streams.Set(--watch_streams_);
    metrics_->watch_streams_refused.Increment();
    return new RefusedWriter<ModelVersionNotice>(WithRetryAfter(
        absl::ResourceExhaustedError(absl::StrCat("too many WatchModel streams (limits."
                                                  "max_watch_streams ",
                                                  max, "); poll Heartbeat or retry later")),
        absl::Seconds(5)));
  }
  metrics_->watch_streams.Set(watch_streams_.load());
  return new WatchModelReactor(coordinator_, request, &watch_streams_, metrics_);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* AggregatorService::PushUpdate(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return new PushUpdateReactor(context, auth_, coordinator_, metrics_, response, guard_.get(),
                               upload_limits_, clock_);
}

grpc::ServerUnaryReactor* AggregatorService::Heartbeat(grpc::CallbackServerContext* context,
                                                       const tally::v1::HeartbeatRequest* request,
                                                       tally::v1::HeartbeatResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = auth_->CheckClient(*context, request->client_id());
  if (status.ok())
    status = coordinator_->CheckSession(request->client_id(), request->session_token());
  if (status.ok()) {
    const CoordinatorStatus s = coordinator_->Status();
    response->set_model_version(s.model_version);
    response->set_round(s.round);
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* AggregatorService::Leave(grpc::CallbackServerContext* context,
                                                   const tally::v1::LeaveRequest* request,
                                                   tally::v1::LeaveResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = auth_->CheckClient(*context, request->client_id());
  if (status.ok()) status = coordinator_->Leave(request->client_id(), request->session_token());
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* AggregatorService::ReportEvaluation(
    grpc::CallbackServerContext* context, const tally::v1::EvaluationReport* request,
    tally::v1::EvaluationAck* response) {
  WorkflowRun* run = coordinator_->workflow();
  if (run == nullptr) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no workflow"));
    return reactor;
  }
  return new ReportEvaluationReactor(coordinator_, run,
                                     auth_->CheckClient(*context, request->client_id()), request,
                                     response);
}

AdminService::AdminService(Coordinator* coordinator, ServerMetrics* metrics, std::string strategy,
                           const Authenticator* auth, absl::Time started, RestoreReport restored)
    : coordinator_(coordinator),
      metrics_(metrics),
      auth_(auth),
      started_(started) {
  // What does not change while the server runs, set once.
  fixed_.set_num_params(coordinator->store().layout().NumParams());
  fixed_.set_strategy(std::move(strategy));
  fixed_.set_restored_version(restored.version);
  fixed_.set_restored_from(restored.from);
  fixed_.set_restored_clients(restored.clients);
  const BuildInfo& build = GetBuildInfo();
  fixed_.mutable_build()->set_version(build.version);
  fixed_.mutable_build()->set_commit(build.commit);
  fixed_.mutable_build()->set_build_type(build.build_type);
}

grpc::ServerUnaryReactor* AdminService::GetStatus(grpc::CallbackServerContext* context,
                                                  const tally::v1::GetStatusRequest* request,
                                                  tally::v1::ServerStatus* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status allowed = auth_->CheckAdmin(*context); !allowed.ok()) {
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  *response = fixed_;
  ProgressToProto(coordinator_->Status(), response);
  response->set_updates_rejected(metrics_->RejectedTotal());
  uint64_t peak_rss, rss;
  ReadMemoryStats(&peak_rss, &rss);
  response->set_peak_rss_bytes(peak_rss);
  response->set_rss_bytes(rss);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  if (const WorkflowRun* run = coordinator_->workflow(); run != nullptr) {
    run->workflow().FillStatus(response);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetHistory(grpc::CallbackServerContext* context,
                                                   const tally::v1::GetHistoryRequest* request,
                                                   tally::v1::RunHistory* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = auth_->CheckAdmin(*context);
  const WorkflowRun* run = coordinator_->workflow();
  if (status.ok() && run == nullptr) status = absl::UnimplementedError("no workflow");
  if (status.ok()) *response = run->workflow().History(*request);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace tally::server
