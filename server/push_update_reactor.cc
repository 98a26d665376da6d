#include "server/push_update_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/chunk_wire.h"
#include "proto/codec_params.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {
namespace {

UpdateHeaderInfo DecodeHeader(const tally::v1::UpdateHeader& h) {
  UpdateHeaderInfo info;
  info.client_id = h.client_id();
  info.session_token = h.session_token();
  info.update_id = h.update_id();
  info.base_version = h.base_version();
  info.round = h.round();
  info.num_samples = h.num_samples();
  info.local_steps = h.local_steps();
  info.codec_id = static_cast<int>(h.codec());
  if (auto spec = SpecFromProto(h.codec(), h.codec_params()); spec.ok()) {
    info.codec_known = true;
    info.codec = *spec;
  }
  info.layout_hash = h.layout_hash();
  info.num_params = h.num_params();
  info.payload_bytes = h.payload_bytes();
  return info;
}

}  // namespace

PushUpdateReactor::PushUpdateReactor(grpc::CallbackServerContext* context,
                                     const Authenticator* auth, Coordinator* coordinator,
                                     ServerMetrics* metrics, grpc::ByteBuffer* response,
                                     StreamGuard* guard, const ProgressMeter::Limits& limits,
                                     Clock* clock)
    : context_(context),
      auth_(auth),
      coordinator_(coordinator),
      metrics_(metrics),
      response_(response),
      guard_(guard),
      clock_(clock),
      limits_(limits),
      meter_(limits, clock->Now()) {
  absl::StatusOr<std::vector<std::string>> identities = auth_->Identify(*context);
  if (!identities.ok()) {
    metrics_->updates_received.Increment();
    metrics_->RejectedUpdate(RejectReason::kUnauthenticated, "(unidentified caller)",
                             identities.status().message());
    FinishWith(identities.status());
    return;
  }
  identities_ = *std::move(identities);
  {
    tally::MutexLock lock(&mu_);
    StartRead(&message_);
  }
  registered_ = true;
  guard_->Add(this);
}

void PushUpdateReactor::OnReadDone(bool ok) {
  tally::MutexLock lock(&mu_);
  if (end_.finished()) return;  // Cut by the guard meanwhile.
  if (!ok) {
    EndOfStreamLocked();
    return;
  }
  meter_.Progress(clock_->Now(), message_.Length());
  absl::Status status = HandleMessageLocked();
  // Drop the received bytes now rather than at the next message: an idle
  // stream should not pin its last chunk.
  slices_.clear();
  message_.Clear();
  if (!status.ok()) {
    FinishLocked(ToGrpcStatus(status));
    return;
  }
  StartRead(&message_);
}

bool PushUpdateReactor::CheckProgress(absl::Time now) {
  tally::MutexLock lock(&mu_);
  if (end_.ResetDue(now, limits_.idle)) context_->TryCancel();
  if (end_.finished()) return true;
  const ProgressMeter::Verdict verdict = meter_.Check(now);
  if (verdict == ProgressMeter::Verdict::kOk) return false;
  const bool idle = verdict == ProgressMeter::Verdict::kIdle;
  const std::string why =
      idle ? absl::StrCat("no message for ", absl::ToInt64Milliseconds(limits_.idle),
                          " ms (limits.upload_idle_timeout_ms)")
           : absl::StrCat(static_cast<int64_t>(meter_.measured_rate()), " bytes/s over the last ",
                          absl::ToInt64Milliseconds(limits_.window),
                          " ms, below limits.min_upload_bytes_per_second ",
                          limits_.min_bytes_per_second);
  AbortLocked(idle ? RejectReason::kStalled : RejectReason::kTooSlow, why);
  FinishLocked(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            absl::StrCat("upload cut: ", why, "; send smaller chunks or retry")));
  return true;
}

void PushUpdateReactor::Cut(const absl::Status& status) {
  tally::MutexLock lock(&mu_);
  if (end_.finished()) return;
  AbortLocked(RejectReason::kCancelled, status.message());
  FinishLocked(ToGrpcStatus(status));
}

void PushUpdateReactor::Release() {
  if (registered_) guard_->Remove(this);
  tally::MutexLock lock(&mu_);
  upload_.reset();  // Aborts (and undoes) an upload that never committed.
}

void PushUpdateReactor::FinishLocked(const grpc::Status& status) {
  end_.Finished(clock_->Now());
  Finish(status);
}

void PushUpdateReactor::AbortLocked(RejectReason reason, absl::string_view why) {
  if (upload_ != nullptr) {
    coordinator_->AbortUpload(*upload_, reason);
  } else {
    metrics_->RejectedUpdate(reason, "(before the header)", why);
  }
}

absl::Status PushUpdateReactor::HandleMessageLocked() {
  slices_.clear();
  wire::ParsedUpdateChunk chunk;
  absl::Status status;
  if (grpc::Status dumped = message_.Dump(&slices_); !dumped.ok()) {
    status = absl::InternalError("cannot read the message buffer");
  } else {
    status = wire::ParseUpdateChunk(slices_, &chunk);
  }
  if (status.ok() && chunk.has_header && chunk.has_data) {
    status = absl::InvalidArgumentError("a message carries both a header and data");
  }
  if (!status.ok()) {
    if (upload_ != nullptr) {
      coordinator_->AbortUpload(*upload_, RejectReason::kMalformed);
    } else {
      metrics_->RejectedUpdate(RejectReason::kMalformed, "(before the header)", status.message());
    }
    return status;
  }
  if (upload_ == nullptr) {
    if (!chunk.has_header) {
      absl::Status no_header =
          absl::InvalidArgumentError("the first message must carry the update header");
      metrics_->RejectedUpdate(RejectReason::kMalformed, "(before the header)",
                               no_header.message());
      return no_header;
    }
    if (absl::Status allowed = auth_->CheckClient(identities_, chunk.header.client_id());
        !allowed.ok()) {
      metrics_->updates_received.Increment();
      metrics_->RejectedUpdate(RejectReason::kForbidden, chunk.header.client_id(),
                               allowed.message());
      return allowed;
    }
    UpdateHeaderInfo header = DecodeHeader(chunk.header);
    if (WorkflowRun* run = coordinator_->workflow(); run != nullptr) {
      // Before any payload byte (docs/workflow.md, client metrics).
      auto metrics = run->workflow().CheckMetrics(chunk.header);
      if (!metrics.ok()) {
        metrics_->updates_received.Increment();
        metrics_->RejectedUpdate(RejectReason::kMetrics, header.client_id,
                                 metrics.status().message());
        return metrics.status();
      }
      header.metrics = *std::move(metrics);
    }
    auto upload = coordinator_->BeginUpload(header);
    if (!upload.ok()) return upload.status();
    upload_ = std::move(upload).value();
    return absl::OkStatus();
  }
  if (chunk.has_header) {
    coordinator_->AbortUpload(*upload_, RejectReason::kMalformed);
    return absl::InvalidArgumentError("the update header was sent twice");
  }
  return coordinator_->AddChunk(*upload_, chunk.offset, chunk.data);
}

void PushUpdateReactor::EndOfStreamLocked() {
  if (context_->IsCancelled()) {
    if (upload_ != nullptr) coordinator_->AbortUpload(*upload_, RejectReason::kCancelled);
    FinishLocked(grpc::Status::CANCELLED);
    return;
  }
  if (upload_ == nullptr) {
    metrics_->RejectedUpdate(RejectReason::kMalformed, "(before the header)", "empty stream");
    FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "empty stream: the first message must carry the update header"));
    return;
  }
  auto commit = coordinator_->FinishUpload(*upload_);
  if (!commit.ok()) {
    FinishLocked(ToGrpcStatus(commit.status()));
    return;
  }
  tally::v1::PushUpdateResponse response;
  response.set_round(commit->round);
  response.set_model_version(commit->model_version);
  response.set_accepted_in_round(commit->accepted_in_round);
  grpc::Slice slice(response.SerializeAsString());
  *response_ = grpc::ByteBuffer(&slice, 1);
  FinishLocked(grpc::Status::OK);
}

}  // namespace tally::server
