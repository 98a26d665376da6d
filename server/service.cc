#include "server/service.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/build_info.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "proto/codec_params.h"
#include "proto/chunk_wire.h"
#include "server/client_text.h"
#include "server/codec_negotiation.h"
#include "server/encoded_model.h"
#include "server/grpc_status.h"
#include "server/progress_meter.h"
#include "server/stream_guard.h"

namespace tally::server {
namespace {

using ::tally::v1::ModelVersionNotice;

// Streams refused before they start (authentication).
template <typename T>
class RefusedWriter final : public grpc::ServerWriteReactor<T> {
 public:
  explicit RefusedWriter(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

int64_t UnixMillisOrZero(absl::Time t) {
  return t == absl::InfiniteFuture() ? 0 : absl::ToUnixMillis(t);
}

void FillTask(const TaskInfo& info, tally::v1::Task* task) {
  switch (info.kind) {
    case TaskInfo::Kind::kTrain:
      task->set_kind(tally::v1::Task::TRAIN);
      break;
    case TaskInfo::Kind::kWait:
      task->set_kind(tally::v1::Task::WAIT);
      break;
    case TaskInfo::Kind::kDone:
      task->set_kind(tally::v1::Task::DONE);
      break;
  }
  task->set_round(info.round);
  task->set_model_version(info.model_version);
  task->set_local_steps(info.local_steps);
  task->set_deadline_unix_ms(UnixMillisOrZero(info.deadline));
  task->set_retry_after_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(info.retry_after)));
}

// GetTask with a server-side long-poll: the call stays open (no thread held)
// until the coordinator has something other than WAIT, or the wait ends.
class GetTaskReactor final : public grpc::ServerUnaryReactor {
 public:
  GetTaskReactor(Coordinator* coordinator, const tally::v1::GetTaskRequest* request,
                 tally::v1::Task* response, absl::Duration max_wait)
      : coordinator_(coordinator), response_(response) {
    const absl::Duration wait = std::min(absl::Milliseconds(request->wait_ms()), max_wait);
    const uint64_t id = coordinator_->AwaitTask(
        request->client_id(), request->session_token(), wait,
        [this](absl::StatusOr<TaskInfo> task) { Complete(std::move(task)); });
    tally::MutexLock lock(&mu_);
    waiter_id_ = id;
  }

  void OnCancel() override {
    uint64_t id;
    {
      tally::MutexLock lock(&mu_);
      id = waiter_id_;
    }
    if (id != 0 && coordinator_->CancelWait(id)) Finish(grpc::Status::CANCELLED);
  }
  void OnDone() override { delete this; }

 private:
  void Complete(absl::StatusOr<TaskInfo> task) {
    if (!task.ok()) {
      Finish(ToGrpcStatus(task.status()));
      return;
    }
    FillTask(*task, response_);
    Finish(grpc::Status::OK);
  }

  Coordinator* const coordinator_;
  tally::v1::Task* const response_;
  tally::Mutex mu_;
  uint64_t waiter_id_ ABSL_GUARDED_BY(mu_) = 0;
};

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

// Streams one model version: the messages of its segments, shared with every
// other puller of that version and codec (nothing is encoded or copied here
// once the version's segments exist). The stream guard cuts it when its
// client takes nothing for limits.download_stall_timeout_ms, or when it holds
// an old version beyond the pinned-version bound: it is then finished and
// reset, so that gRPC drops the queued messages and the version is released.
class PullModelReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                               public GuardedStream {
 public:
  PullModelReactor(grpc::CallbackServerContext* context, const Authenticator* auth,
                   Coordinator* coordinator, ServerMetrics* metrics, ModelDownloads* downloads,
                   const grpc::ByteBuffer* request_bytes, StreamGuard* guard,
                   const ProgressMeter::Limits& limits, Clock* clock)
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
      Finish(ToGrpcStatus(segments.status()));
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

  void OnWriteDone(bool ok) override {
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

  bool CheckProgress(absl::Time now) override {
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

  void Cut(const absl::Status& status) override {
    tally::MutexLock lock(&mu_);
    if (!end_.finished()) CutLocked(ToGrpcStatus(status));
  }

  void OnDone() override {
    if (registered_) guard_->Remove(this);
    delete this;
  }

 private:
  // The segments answering the request, or why not.
  static absl::StatusOr<SegmentList> Segments(grpc::CallbackServerContext* context,
                                              const Authenticator* auth, Coordinator* coordinator,
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
    TALLY_ASSIGN_OR_RETURN(
        SegmentList segments,
        downloads->Get(std::move(snapshot), request.codec(), request.delta_codec(),
                       request.have_version(), request.have_chain()));
    coordinator->NotePulled(request.client_id(), version);
    return segments;
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StartWrite(&segments_[segment_]->messages[message_++]);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    end_.Finished(clock_->Now());
    Finish(status);
  }

  // A stalled client cannot take the status either (it is queued behind the
  // messages it does not read): the reset drops those messages at once.
  void CutLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FinishLocked(status);
    context_->TryCancel();
    end_.Reset();
  }

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

// Pushes a notice for each new model version. Notices coalesce: a slow
// watcher gets the newest version, not a backlog.
class WatchModelReactor final : public grpc::ServerWriteReactor<ModelVersionNotice> {
 public:
  // `open` counts the open watches (this one included); OnDone takes it off.
  WatchModelReactor(Coordinator* coordinator, const tally::v1::WatchModelRequest* request,
                    std::atomic<uint32_t>* open, ServerMetrics* metrics)
      : coordinator_(coordinator), open_(open), metrics_(metrics), sent_(request->after_version()) {
    absl::Status session =
        coordinator->CheckSession(request->client_id(), request->session_token());
    if (!session.ok()) {
      tally::MutexLock lock(&mu_);
      finished_ = true;
      Finish(ToGrpcStatus(session));
      return;
    }
    link_ = std::make_shared<Link>();
    link_->reactor = this;
    std::shared_ptr<Link> link = link_;
    subscription_ = coordinator_->mutable_store().Subscribe(
        [link](const std::shared_ptr<const ModelSnapshot>& snapshot) {
          tally::MutexLock lock(&link->mu);
          if (link->reactor != nullptr) link->reactor->OnVersion(*snapshot);
        });
    std::shared_ptr<const ModelSnapshot> current = coordinator_->store().Current();
    OnVersion(*current);
  }

  void OnWriteDone(bool ok) override {
    tally::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok || cancelled_) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    tally::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    if (link_ != nullptr) {
      {
        tally::MutexLock lock(&link_->mu);
        link_->reactor = nullptr;
      }
      coordinator_->mutable_store().Unsubscribe(subscription_);
    }
    metrics_->watch_streams.Set(--*open_);
    delete this;
  }

 private:
  struct Link {
    tally::Mutex mu;
    WatchModelReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  void OnVersion(const ModelSnapshot& snapshot) {
    tally::MutexLock lock(&mu_);
    if (snapshot.version > latest_) {
      latest_ = snapshot.version;
      latest_round_ = snapshot.round;
      latest_published_ = snapshot.published;
    }
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || latest_ <= sent_) return;
    notice_.set_version(latest_);
    notice_.set_round(latest_round_);
    notice_.set_published_unix_ms(absl::ToUnixMillis(latest_published_));
    sent_ = latest_;
    writing_ = true;
    StartWrite(&notice_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

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
  ModelVersionNotice notice_;
};

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

// Receives one update: header, then chunks folded into the round as they
// arrive. The stream's end (client half-close) commits it. Messages arrive as
// raw ByteBuffers and are decoded in place (proto/chunk_wire.h).
class PushUpdateReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer>,
                                public GuardedStream {
 public:
  PushUpdateReactor(grpc::CallbackServerContext* context, const Authenticator* auth,
                    Coordinator* coordinator, ServerMetrics* metrics, grpc::ByteBuffer* response,
                    StreamGuard* guard, const ProgressMeter::Limits& limits, Clock* clock)
      : context_(context),
        auth_(auth),
        coordinator_(coordinator),
        metrics_(metrics),
        response_(response),
        guard_(guard),
        clock_(clock),
        limits_(limits),
        meter_(limits, clock->Now()) {
    // An unauthenticated caller is refused before any of its bytes are read.
    absl::StatusOr<std::vector<std::string>> identities = auth_->Identify(*context);
    if (!identities.ok()) {
      metrics_->updates_received.Increment();
      metrics_->RejectedUpdate(RejectReason::kUnauthenticated, "(unidentified caller)",
                               identities.status().message());
      Finish(ToGrpcStatus(identities.status()));
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

  void OnReadDone(bool ok) override {
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

  // A stream that sent nothing for limits.upload_idle_timeout_ms, or too
  // little over the rate window, is aborted as a cancelled one is (its
  // contribution subtracted, its slot freed) and finished.
  bool CheckProgress(absl::Time now) override {
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

  void Cut(const absl::Status& status) override {
    tally::MutexLock lock(&mu_);
    if (end_.finished()) return;
    AbortLocked(RejectReason::kCancelled, status.message());
    FinishLocked(ToGrpcStatus(status));
  }

  void OnDone() override {
    if (registered_) guard_->Remove(this);
    {
      tally::MutexLock lock(&mu_);
      upload_.reset();  // Aborts (and undoes) an upload that never committed.
    }
    delete this;
  }

 private:
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    end_.Finished(clock_->Now());
    Finish(status);
  }

  // Aborts the upload, or counts the stream if no header came yet.
  void AbortLocked(RejectReason reason, absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (upload_ != nullptr) {
      coordinator_->AbortUpload(*upload_, reason);
    } else {
      metrics_->RejectedUpdate(reason, "(before the header)", why);
    }
  }

  absl::Status HandleMessageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
      auto upload = coordinator_->BeginUpload(DecodeHeader(chunk.header));
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

  void EndOfStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

// VmHWM and VmRSS of this process, in bytes (0 if /proc is unavailable).
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
      if (codec > 0 && codec <= 255 &&
          compress::FindCodec(static_cast<compress::CodecId>(codec)) != nullptr) {
        ids.push_back(static_cast<compress::CodecId>(codec));
      }
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
                                     const Authenticator* auth, Clock* clock)
    : coordinator_(coordinator),
      auth_(auth),
      metrics_(metrics),
      config_(config),
      clock_(clock),
      model_spec_(ModelSpecFromLayout(coordinator->store().layout())),
      downloads_(
          model_spec_, config->limits().model_chunk_bytes(),
          DownloadCodecsFromConfig(*config, coordinator->store().layout().NumParams()).value()) {
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
  absl::StatusOr<std::string> identity = auth_->ClientIdentity(*context, request->client_id());
  if (!identity.ok()) {
    reactor->Finish(ToGrpcStatus(identity.status()));
    return reactor;
  }
  const JoinCaller caller{request->session_token(), PeerAddress(context->peer()), *identity};
  absl::StatusOr<NegotiatedCodecs> codecs =
      NegotiateCodecs(ClientCodecsFromRequest(*request), coordinator_->upload_codecs(),
                      downloads_.codecs());
  if (!codecs.ok()) {
    reactor->Finish(ToGrpcStatus(codecs.status()));
    return reactor;
  }
  auto session = coordinator_->Join(request->client_id(), caller);
  if (!session.ok()) {
    reactor->Finish(ToGrpcStatus(session.status()));
    return reactor;
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

AdminService::AdminService(Coordinator* coordinator, ServerMetrics* metrics,
                           const tally::v1::ServerConfig* config, const Authenticator* auth,
                           absl::Time started, RestoreReport restored)
    : coordinator_(coordinator),
      metrics_(metrics),
      config_(config),
      auth_(auth),
      started_(started),
      restored_(std::move(restored)) {}

grpc::ServerUnaryReactor* AdminService::GetStatus(grpc::CallbackServerContext* context,
                                                  const tally::v1::GetStatusRequest* request,
                                                  tally::v1::ServerStatus* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status allowed = auth_->CheckAdmin(*context); !allowed.ok()) {
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  const CoordinatorStatus s = coordinator_->Status();
  response->set_model_version(s.model_version);
  response->set_round(s.round);
  response->set_rounds_completed(s.rounds_completed);
  response->set_rounds_failed(s.rounds_failed);
  response->set_connected_clients(s.connected_clients);
  response->set_updates_in_round(s.updates_in_round);
  response->set_uploads_in_flight(s.uploads_in_flight);
  response->set_updates_accepted(s.updates_accepted);
  response->set_updates_rejected(metrics_->RejectedTotal());
  response->set_bytes_received(s.bytes_received);
  response->set_num_params(coordinator_->store().layout().NumParams());
  uint64_t peak_rss, rss;
  ReadMemoryStats(&peak_rss, &rss);
  response->set_peak_rss_bytes(peak_rss);
  response->set_rss_bytes(rss);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  response->set_done(s.done);
  response->set_strategy(absl::StrCat(config_->schedule().name(), "/", config_->strategy().rule(),
                                      "/", config_->optimizer().name()));
  response->set_last_round_millis(absl::ToInt64Milliseconds(s.last_round_duration));
  response->set_restored_version(restored_.version);
  response->set_restored_from(restored_.from);
  response->set_restored_clients(restored_.clients);
  response->set_checkpoint_version(s.checkpoint_version);
  const BuildInfo& build = GetBuildInfo();
  response->mutable_build()->set_version(build.version);
  response->mutable_build()->set_commit(build.commit);
  response->mutable_build()->set_build_type(build.build_type);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace tally::server
