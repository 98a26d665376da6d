#include "server/pull_model_reactor.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tally/v1/tally.pb.h"

namespace tally::server {
namespace {

// Parses a protobuf message from a received ByteBuffer.
bool ParseMessage(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return message->ParseFromString(bytes);
}

}  // namespace

PullModelReactor::PullModelReactor(grpc::CallbackServerContext* context, const Authenticator* auth,
                                   Coordinator* coordinator, ServerMetrics* metrics,
                                   ModelDownloads* downloads, const grpc::ByteBuffer* request_bytes,
                                   StreamGuard* guard, const ProgressMeter::Limits& limits,
                                   Clock* clock)
    : context_(context),
      metrics_(metrics),
      guard_(guard),
      clock_(clock),
      num_params_(coordinator->store().layout().NumParams()),
      meter_(limits, clock->Now()),
      stall_timeout_(limits.idle) {
  absl::StatusOr<SegmentList> segments =
      Segments(context, auth, coordinator, downloads, request_bytes);
  if (!segments.ok()) {
    FinishWith(segments.status());
    return;
  }
  segments_ = *std::move(segments);
  pin_.version = segments_.back()->version;
  for (const auto& segment : segments_) {
    pin_.segments.emplace_back(segment.get(), segment->payload_bytes);
  }
  {
    tally::MutexLock lock(&mu_);
    WriteNextLocked();
  }
  registered_ = true;
  guard_->Add(this, &pin_);
}

void PullModelReactor::OnWriteDone(bool ok) {
  tally::MutexLock lock(&mu_);
  if (end_.finished()) return;
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "model stream interrupted"));
    return;
  }
  meter_.Progress(clock_->Now(), 0);
  const ModelSegment& segment = *segments_[segment_];
  if (message_ == segment.messages.size()) {
    metrics_->model_bytes_sent.Increment(static_cast<double>(segment.payload_bytes));
    metrics_->DownloadCodecBytes(segment.codec, segment.base_version != 0, segment.payload_bytes,
                                 num_params_ * sizeof(float));
    ++segment_;
    message_ = 0;
    if (segment_ == segments_.size()) {
      FinishLocked(grpc::Status::OK);
      return;
    }
  }
  WriteNextLocked();
}

bool PullModelReactor::CheckProgress(absl::Time now) {
  tally::MutexLock lock(&mu_);
  if (end_.ResetDue(now, stall_timeout_)) context_->TryCancel();
  if (end_.finished()) return true;
  if (meter_.Check(now) == ProgressMeter::Verdict::kOk) return false;
  metrics_->downloads_cut_stalled.Increment();
  CutLocked(
      grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                   absl::StrCat("the client took no model message for ",
                                absl::ToInt64Milliseconds(stall_timeout_),
                                " ms (limits.download_stall_timeout_ms); the download was cut")));
  return true;
}

void PullModelReactor::Cut(const absl::Status& status) {
  tally::MutexLock lock(&mu_);
  if (!end_.finished()) CutLocked(ToGrpcStatus(status));
}

void PullModelReactor::Release() {
  if (registered_) guard_->Remove(this);
}

absl::StatusOr<SegmentList> PullModelReactor::Segments(grpc::CallbackServerContext* context,
                                                       const Authenticator* auth,
                                                       Coordinator* coordinator,
                                                       ModelDownloads* downloads,
                                                       const grpc::ByteBuffer* request_bytes) {
  tally::v1::PullModelRequest request;
  TALLY_ASSIGN_OR_RETURN(std::vector<std::string> identities, auth->Identify(*context));
  if (!ParseMessage(*request_bytes, &request)) {
    return absl::InvalidArgumentError("unparsable PullModelRequest");
  }
  TALLY_RETURN_IF_ERROR(auth->CheckClient(identities, request.client_id()));
  TALLY_RETURN_IF_ERROR(coordinator->CheckSession(request.client_id(), request.session_token()));
  std::shared_ptr<const ModelSnapshot> snapshot = coordinator->store().Current();
  if (request.version() != 0 && request.version() != snapshot->version) {
    return absl::NotFoundError(absl::StrCat("model version ", request.version(),
                                            " is not available; the current version is ",
                                            snapshot->version));
  }
  const uint64_t version = snapshot->version;
  TALLY_ASSIGN_OR_RETURN(SegmentList segments,
                         downloads->Get(std::move(snapshot), request.codec(), request.delta_codec(),
                                        request.have_version(), request.have_chain()));
  coordinator->NotePulled(request.client_id(), version);
  return segments;
}

void PullModelReactor::WriteNextLocked() { StartWrite(&segments_[segment_]->messages[message_++]); }

void PullModelReactor::FinishLocked(const grpc::Status& status) {
  end_.Finished(clock_->Now());
  Finish(status);
}

void PullModelReactor::CutLocked(const grpc::Status& status) {
  FinishLocked(status);
  context_->TryCancel();
  end_.Reset();
}

}  // namespace tally::server
