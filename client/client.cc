// The gRPC implementation of tally::Client.

#include "tally/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/connection.h"
#include "client/model_stream.h"
#include "client/pacer.h"
#include "client/proto_convert.h"
#include "client/raw_push.h"
#include "client/retry.h"
#include "client/tls_files.h"
#include "client/validation.h"
#include "compress/codec.h"
#include "compress/dgc.h"
#include "compress/error_feedback.h"
#include "core/privacy/mechanism.h"
#include "core/privacy/random_source.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "proto/codec_params.h"
#include "tally/v1/tally.grpc.pb.h"

// CODEC_DENSE_F32 is little-endian float32; the payload is sent as the raw
// bytes of the float vector.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tally's client SDK sends floats in host byte order, which must be little-endian"
#endif

namespace tally {
namespace {

using client_internal::FromGrpcStatus;

// What a call needs from the current session. Published as an immutable
// snapshot, so a call in flight is unaffected by a concurrent (re-)Join.
struct Session {
  std::string token;
  JoinResult join;
  size_t chunk_bytes = 0;  // Upload chunk size agreed at Join.
  compress::CodecSpec upload;  // Assigned at Join.
  compress::CodecSpec download;
  v1::Codec delta_codec = v1::CODEC_UNSPECIFIED;  // None.
};

// The codec the server assigned for `role` at Join, checked: one this client
// offered (or float32), with valid parameters for d parameters.
absl::StatusOr<compress::CodecSpec> AssignedCodec(const char* role, v1::Codec assigned,
                                                  const v1::CodecParams& params,
                                                  const std::vector<std::string>& offered,
                                                  size_t d) {
  if (assigned == v1::CODEC_UNSPECIFIED) assigned = v1::CODEC_DENSE_F32;
  absl::StatusOr<compress::CodecSpec> spec = SpecFromProto(assigned, params);
  if (spec.ok()) {
    const std::string name = compress::FindCodec(spec->id)->name;
    if (spec->id != compress::CodecId::kFloat32 &&
        std::find(offered.begin(), offered.end(), name) == offered.end()) {
      spec = absl::FailedPreconditionError(absl::StrCat("codec ", name, " was not offered"));
    } else if (absl::Status valid = compress::ValidateSpec(*spec, d); !valid.ok()) {
      spec = valid;
    }
  }
  if (!spec.ok()) {
    return absl::UnimplementedError(absl::StrCat("Join: the server assigned ", role, " codec ",
                                                 static_cast<int>(assigned),
                                                 " that this client cannot use: ",
                                                 spec.status().message()));
  }
  return spec;
}

// An update as it goes on the wire: float32 straight from Update.delta, or
// encoded once (before any attempt, so retries resend the same bytes).
struct EncodedUpdate {
  compress::CodecSpec spec;
  std::string payload;  // Empty: float32, sent from the delta itself.
  // Error feedback / DGC: the state after this update, adopted when the
  // server acknowledges it (a failed push leaves the old state). Error
  // feedback keeps just the next residual (d floats), not a copy of the state.
  std::optional<std::vector<float>> next_residual;
  std::optional<compress::DgcCompressor> dgc;
};

// How one logical call is attempted and retried.
struct CallSpec {
  explicit CallSpec(const char* rpc_name) : rpc(rpc_name) {}
  const char* rpc;
  bool needs_session = true;  // FAILED_PRECONDITION before Join.
  bool rejoin_on_unauthenticated = true;
  absl::Time overall_deadline = absl::InfiniteFuture();  // Bounds all attempts.
  uint32_t* attempts = nullptr;                          // Out, optional: number of attempts made.
};

absl::Status StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

absl::Status WithRpc(absl::string_view rpc, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(rpc, ": ", status.message()));
}

absl::Status CheckDeltaSize(const Update& update, const ModelInfo& model) {
  if (update.delta.size() == model.num_params) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "PushUpdate: Update.delta has %d floats, the model has %d", update.delta.size(),
      model.num_params));
}

void SetDeadline(grpc::ClientContext* context, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
}

// Owns the channel and the stubs (both thread-safe) and the current session.
// Thread-safe: the session is a snapshot swapped under mu_; no lock is held
// across an RPC except join_mu_, which serializes (re-)Joins on purpose.
class GrpcClient final : public Client {
 public:
  GrpcClient(ClientOptions options, const std::shared_ptr<grpc::Channel>& channel,
             client_internal::ConnectionWaiter waiter)
      : options_(std::move(options)),
        waiter_(std::move(waiter)),
        policy_{options_.initial_backoff, options_.max_backoff, options_.backoff_multiplier},
        random_(options_.seed),
        pacer_(options_.max_bandwidth_bytes_per_s),
        aggregator_(v1::Aggregator::NewStub(channel)),
        generic_(std::make_unique<grpc::GenericStub>(channel)),
        admin_(v1::Admin::NewStub(channel)) {}
  ~GrpcClient() override { LeaveOnClose(); }

  absl::StatusOr<JoinResult> Join() override ABSL_LOCKS_EXCLUDED(join_mu_, mu_) {
    tally::MutexLock join_lock(&join_mu_);
    return DoJoin();
  }
  absl::StatusOr<Task> GetTask(absl::Duration wait) override;
  absl::StatusOr<Model> PullModel(uint64_t version) override;
  absl::StatusOr<PushResult> PushUpdate(const Update& update) override;
  absl::StatusOr<uint64_t> WaitForVersion(uint64_t after_version, absl::Duration timeout) override;
  absl::Status WatchModel(
      uint64_t after_version, absl::Duration timeout,
      const std::function<bool(uint64_t version, uint64_t round)>& on_version) override;
  absl::StatusOr<uint32_t> ReportEvaluation(const Task& task, uint64_t num_examples,
                                            const std::map<std::string, double>& metrics) override;
  absl::Status Heartbeat() override;
  absl::Status Leave() override;
  absl::StatusOr<ServerStatusInfo> GetServerStatus() override;
  const ClientOptions& options() const override { return options_; }

 private:
  // Runs `attempt(session)` until it succeeds or fails for good: retries
  // UNAVAILABLE / DEADLINE_EXCEEDED with backoff, and re-Joins once on
  // UNAUTHENTICATED. Returns whatever `attempt` returns.
  template <typename Fn>
  auto Call(const CallSpec& spec, Fn&& attempt)
      -> decltype(attempt(std::declval<const Session&>()));

  absl::StatusOr<JoinResult> DoJoin() ABSL_EXCLUSIVE_LOCKS_REQUIRED(join_mu_);
  // Ends the session the client still holds, best effort: one attempt of at
  // most a second. Otherwise the server would keep the client id's session
  // until it expires, refusing a new process's Join under the same id.
  void LeaveOnClose() ABSL_LOCKS_EXCLUDED(mu_);
  // Re-joins unless another thread already replaced `seen`.
  absl::Status Rejoin(const Session* seen) ABSL_LOCKS_EXCLUDED(join_mu_, mu_);
  std::shared_ptr<const Session> CurrentSession() ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);
    return session_;
  }

  // One attempt of a unary Aggregator call: fills in the client id and the
  // session token of `request` and calls `method` with a deadline `timeout`
  // from now.
  template <typename Request, typename Response>
  absl::Status UnaryAttempt(const char* rpc,
                            grpc::Status (v1::Aggregator::Stub::*method)(grpc::ClientContext*,
                                                                         const Request&, Response*),
                            Request request, const Session& session, absl::Duration timeout,
                            Response* response) {
    request.set_client_id(options_.client_id);
    request.set_session_token(session.token);
    grpc::ClientContext context;
    SetDeadline(&context, absl::Now() + timeout);
    return FromGrpcStatus(rpc, ((*aggregator_).*method)(&context, request, response));
  }

  absl::StatusOr<Model> PullOnce(const Session& session, uint64_t version);
  // Encodes `update` with the session's codec (with the error-feedback
  // residual added, if on).
  absl::StatusOr<EncodedUpdate> EncodeUpdate(const Session& session, const Update& update,
                                             const std::string& update_id)
      ABSL_LOCKS_EXCLUDED(feedback_mu_);
  // The push of `encoded` was acknowledged: the residual becomes what it
  // did not carry.
  void CommitFeedback(EncodedUpdate& encoded) ABSL_LOCKS_EXCLUDED(feedback_mu_);
  absl::StatusOr<v1::PushUpdateResponse> PushOnce(const Session& session, const Update& update,
                                                  const EncodedUpdate& encoded,
                                                  const std::string& update_id);

  const ClientOptions options_;
  const client_internal::ConnectionWaiter waiter_;
  const client_internal::BackoffPolicy policy_;
  client_internal::RandomSource random_;  // Thread-safe.
  client_internal::BandwidthPacer pacer_;  // Thread-safe; pulls and pushes.
  const std::unique_ptr<v1::Aggregator::Stub> aggregator_;
  const std::unique_ptr<grpc::GenericStub> generic_;  // PushUpdate (client/raw_push.h).
  const std::unique_ptr<v1::Admin::Stub> admin_;

  tally::Mutex join_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  tally::Mutex mu_;
  std::shared_ptr<const Session> session_ ABSL_GUARDED_BY(mu_);  // Null before Join.
  tally::Mutex feedback_mu_;
  // Error feedback: what acknowledged compressed updates did not carry.
  std::optional<compress::ErrorFeedback> feedback_ ABSL_GUARDED_BY(feedback_mu_);
  std::optional<compress::DgcCompressor> dgc_ ABSL_GUARDED_BY(feedback_mu_);
  tally::Mutex held_mu_;
  // The last model pulled on the server's delta chain (null: none).
  std::shared_ptr<const client_internal::HeldModel> held_ ABSL_GUARDED_BY(held_mu_);
};

template <typename Fn>
auto GrpcClient::Call(const CallSpec& spec, Fn&& attempt)
    -> decltype(attempt(std::declval<const Session&>())) {
  std::shared_ptr<const Session> session;
  if (spec.needs_session) {
    session = CurrentSession();
    if (session == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(spec.rpc, ": call Join() first"));
    }
  } else {
    session = std::make_shared<const Session>();
  }
  bool rejoined = false;
  int failures = 0;
  uint32_t attempts = 0;
  client_internal::OutageClock outage(options_.connect_timeout);
  for (;;) {
    ++attempts;
    if (spec.attempts != nullptr) *spec.attempts = attempts;
    auto result = attempt(*session);
    const absl::Status status = StatusOf(result);
    if (waiter_.IsConnectionFailure(status)) {
      // Not a failure of the call: wait for the server (not in max_attempts).
      const absl::Time deadline = std::min(outage.Failed(absl::Now()), spec.overall_deadline);
      TALLY_RETURN_IF_ERROR(waiter_.Await(spec.rpc, status, deadline));
      outage.Connected(absl::Now());
      continue;
    }
    if (status.code() == absl::StatusCode::kUnauthenticated && spec.needs_session &&
        spec.rejoin_on_unauthenticated && !rejoined) {
      rejoined = true;
      const absl::Status joined = Rejoin(session.get());
      if (!joined.ok()) {
        return absl::Status(joined.code(),
                            absl::StrCat(spec.rpc, ": session lost (", status.message(),
                                         ") and re-Join failed: ", joined.message()));
      }
      session = CurrentSession();
      if (session == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(spec.rpc, ": the client left"));
      }
      continue;
    }
    const std::optional<absl::Duration> delay =
        client_internal::RetryDelay(status, ++failures, policy_, random_);
    if (!delay.has_value() || failures >= options_.max_attempts) return result;
    const absl::Duration wait = *delay;
    if (absl::Now() + wait >= spec.overall_deadline) return result;
    absl::SleepFor(wait);
  }
}

absl::StatusOr<JoinResult> GrpcClient::DoJoin() {
  v1::JoinRequest request;
  request.set_client_id(options_.client_id);
  request.set_sdk_version(kSdkVersion);
  // The current session's token, if any: the server lets a Join replace a
  // live session only for the caller that holds it.
  if (std::shared_ptr<const Session> current = CurrentSession(); current != nullptr) {
    request.set_session_token(current->token);
  }
  request.add_supported_codecs(v1::CODEC_DENSE_F32);
  for (const std::string& name : options_.upload_codecs) {
    request.add_supported_codecs(static_cast<v1::Codec>(compress::FindCodec(name)->id));
  }
  if (options_.dgc.has_value()) request.add_supported_codecs(v1::CODEC_TOPK);
  if (options_.local_dp.has_value()) {
    const LocalDpSettings& dp = *options_.local_dp;
    // Validated with the options: LocalDpEpsilon succeeds.
    const double epsilon = privacy::LocalDpEpsilon(dp.noise_multiplier, dp.delta)->epsilon;
    v1::LocalDpDeclaration* declared = request.mutable_local_dp();
    declared->set_clip_norm(dp.clip_norm);
    declared->set_noise_multiplier(dp.noise_multiplier);
    declared->set_delta(dp.delta);
    declared->set_epsilon(epsilon);
  }
  request.add_download_codecs(v1::CODEC_DENSE_F32);
  for (const std::string& name : options_.download_codecs) {
    request.add_download_codecs(static_cast<v1::Codec>(compress::FindCodec(name)->id));
  }
  request.mutable_attributes()->insert(options_.attributes.begin(), options_.attributes.end());
  v1::JoinResponse response;
  CallSpec spec("Join");
  spec.needs_session = false;
  TALLY_RETURN_IF_ERROR(Call(spec, [&](const Session&) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Now() + options_.call_timeout);
    return FromGrpcStatus("Join", aggregator_->Join(&context, request, &response));
  }));

  auto session = std::make_shared<Session>();
  session->token = response.session_token();
  absl::StatusOr<ModelInfo> model = client_internal::ModelInfoFromSpec(response.model_spec());
  if (!model.ok()) return WithRpc("Join", model.status());
  session->join.model = *std::move(model);
  const size_t d = session->join.model.num_params;
  std::vector<std::string> offered = options_.upload_codecs;
  if (options_.dgc.has_value()) offered.push_back("topk");
  TALLY_ASSIGN_OR_RETURN(session->upload,
                         AssignedCodec("upload", response.upload_codec(), response.upload_params(),
                                       offered, d));
  if (options_.dgc.has_value() && session->upload.id != compress::CodecId::kTopK) {
    return absl::FailedPreconditionError(
        "Join: ClientOptions.dgc needs topk uploads, and the server assigned " +
        std::string(compress::FindCodec(session->upload.id)->name) +
        " (its compression.upload must list topk)");
  }
  TALLY_ASSIGN_OR_RETURN(session->download,
                         AssignedCodec("download", response.download_codec(),
                                       response.download_params(), options_.download_codecs, d));
  session->join.upload_codec = compress::FindCodec(session->upload.id)->name;
  session->join.download_codec = compress::FindCodec(session->download.id)->name;
  if (response.delta_codec() != v1::CODEC_UNSPECIFIED) {
    TALLY_ASSIGN_OR_RETURN(compress::CodecSpec delta,
                           AssignedCodec("delta", response.delta_codec(), response.delta_params(),
                                         options_.download_codecs, d));
    session->delta_codec = response.delta_codec();
    session->join.delta_codec = compress::FindCodec(delta.id)->name;
  }
  session->join.model_version = response.model_version();
  session->join.max_chunk_bytes = response.limits().max_chunk_bytes();
  session->join.max_update_bytes = response.limits().max_update_bytes();
  session->join.heartbeat_interval = absl::Milliseconds(response.limits().heartbeat_interval_ms());
  absl::StatusOr<size_t> chunk_bytes = client_internal::EffectiveChunkBytes(
      options_.chunk_bytes, response.limits().max_chunk_bytes());
  if (!chunk_bytes.ok()) return WithRpc("Join", chunk_bytes.status());
  session->chunk_bytes = *chunk_bytes;

  JoinResult result = session->join;
  tally::MutexLock lock(&mu_);
  session_ = std::move(session);
  return result;
}

absl::Status GrpcClient::Rejoin(const Session* seen) {
  tally::MutexLock join_lock(&join_mu_);
  {
    tally::MutexLock lock(&mu_);
    if (session_.get() != seen) return absl::OkStatus();  // Already replaced (or left).
  }
  return DoJoin().status();
}

absl::StatusOr<Task> GrpcClient::GetTask(absl::Duration wait) {
  wait = std::clamp(wait, absl::ZeroDuration(),
                    absl::Milliseconds(std::numeric_limits<uint32_t>::max()));
  return Call(CallSpec("GetTask"), [&](const Session& session) -> absl::StatusOr<Task> {
    v1::GetTaskRequest request;
    request.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(wait)));
    v1::Task response;
    TALLY_RETURN_IF_ERROR(UnaryAttempt("GetTask", &v1::Aggregator::Stub::GetTask,
                                       std::move(request), session, wait + options_.call_timeout,
                                       &response));
    return client_internal::TaskFromProto(response);
  });
}

absl::StatusOr<Model> GrpcClient::PullModel(uint64_t version) {
  return Call(CallSpec("PullModel"),
              [&](const Session& session) { return PullOnce(session, version); });
}

absl::StatusOr<Model> GrpcClient::PullOnce(const Session& session, uint64_t version) {
  const bool deltas = session.delta_codec != v1::CODEC_UNSPECIFIED;
  std::shared_ptr<const client_internal::HeldModel> held;
  if (deltas) {
    tally::MutexLock lock(&held_mu_);
    held = held_;
  }
  v1::PullModelRequest request;
  request.set_client_id(options_.client_id);
  request.set_session_token(session.token);
  request.set_version(version);
  request.set_codec(CodecToProto(session.download));
  request.set_delta_codec(session.delta_codec);
  if (held != nullptr) {
    request.set_have_version(held->version);
    request.set_have_chain(held->chain_id);
  }
  grpc::ClientContext context;
  SetDeadline(&context, absl::Now() + options_.transfer_timeout);
  std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader =
      aggregator_->PullModel(&context, request);

  Model model;
  client_internal::ModelAssembler assembler(session.join.model, session.download, held.get(),
                                            &model);
  absl::Status status;
  v1::ModelChunk chunk;
  while (status.ok() && reader->Read(&chunk)) {
    // On a metered link, reading slower makes gRPC's flow control slow the
    // server down.
    pacer_.PaceReceived(chunk.ByteSizeLong());
    status = assembler.Add(chunk);
  }
  if (!status.ok()) {
    context.TryCancel();
    reader->Finish().IgnoreError();
    status = WithRpc("PullModel", status);
  } else {
    status = FromGrpcStatus("PullModel", reader->Finish());
    if (absl::Status complete = assembler.Complete(); status.ok() && !complete.ok()) {
      status = WithRpc("PullModel", complete);
    }
  }
  if (deltas) {
    // The next pull's deltas apply to this model, if it is on the chain.
    std::shared_ptr<client_internal::HeldModel> next;
    if (status.ok() && assembler.delta_base()) {
      next = std::make_shared<client_internal::HeldModel>();
      next->version = model.version;
      next->chain_id = assembler.chain_id();
      next->params = model.params;
    }
    if (status.ok() || status.code() == absl::StatusCode::kDataLoss) {
      tally::MutexLock lock(&held_mu_);
      held_ = std::move(next);
    }
  }
  TALLY_RETURN_IF_ERROR(status);
  return model;
}

absl::StatusOr<PushResult> GrpcClient::PushUpdate(const Update& given) {
  if (given.num_samples == 0) {
    return absl::InvalidArgumentError("PushUpdate: Update.num_samples must be > 0");
  }
  std::vector<float> difference;  // weights - base, if given so.
  Update update = given;
  TALLY_ASSIGN_OR_RETURN(update.delta, client_internal::UpdateDelta(given, &difference));
  std::vector<float> private_delta;  // Local DP: clipped and noised, once for every retry.
  if (options_.local_dp.has_value()) {
    private_delta.assign(update.delta.begin(), update.delta.end());
    privacy::SecureRandom random;
    TALLY_RETURN_IF_ERROR(privacy::ApplyLocalDp(random, options_.local_dp->clip_norm,
                                                options_.local_dp->noise_multiplier,
                                                absl::MakeSpan(private_delta))
                              .status());
    update.delta = private_delta;
  }
  PushResult result;
  if (update.update_id.empty()) {
    result.update_id = random_.UpdateId();
  } else {
    if (absl::Status valid = client_internal::ValidateUpdateId(update.update_id); !valid.ok()) {
      return WithRpc("PushUpdate", valid);
    }
    result.update_id = update.update_id;
  }
  // Encoded once, before any attempt: retries resend the same bytes.
  EncodedUpdate encoded;
  std::shared_ptr<const Session> session = CurrentSession();
  if (session != nullptr) {
    TALLY_ASSIGN_OR_RETURN(encoded, EncodeUpdate(*session, update, result.update_id));
  }
  result.payload_bytes = encoded.payload.empty() ? update.delta.size() * sizeof(float)
                                                 : encoded.payload.size();
  if (session != nullptr) {
    TALLY_RETURN_IF_ERROR(client_internal::CheckUpdateBytes(
        result.payload_bytes, compress::FindCodec(encoded.spec.id)->name,
        session->join.max_update_bytes));
  }
  CallSpec spec("PushUpdate");
  spec.attempts = &result.attempts;
  absl::StatusOr<v1::PushUpdateResponse> response = Call(
      spec, [&](const Session& session) {
        return PushOnce(session, update, encoded, result.update_id);
      });
  if (!response.ok()) {
    if (response.status().code() != absl::StatusCode::kAlreadyExists) return response.status();
    result.duplicate = true;
    CommitFeedback(encoded);
    return result;
  }
  CommitFeedback(encoded);
  result.round = response->round();
  result.model_version = response->model_version();
  return result;
}

absl::StatusOr<EncodedUpdate> GrpcClient::EncodeUpdate(const Session& session,
                                                        const Update& update,
                                                        const std::string& update_id) {
  EncodedUpdate encoded;
  encoded.spec = session.upload;
  if (compress::IsPlainFloat32(encoded.spec)) return encoded;
  const size_t d = session.join.model.num_params;
  TALLY_RETURN_IF_ERROR(CheckDeltaSize(update, session.join.model));
  // A fresh seed per update (qsgd rounding, randk selection), the same for
  // every retry of it.
  encoded.spec.seed = std::hash<std::string>{}(absl::StrCat(options_.client_id, "/", update_id));
  absl::Status encoded_ok;
  if (options_.dgc.has_value()) {
    {
      tally::MutexLock lock(&feedback_mu_);
      if (dgc_.has_value() && dgc_->dim() == d) encoded.dgc = *dgc_;
    }
    if (!encoded.dgc.has_value()) {
      std::vector<compress::DgcTensor> tensors;
      for (const TensorInfo& t : session.join.model.tensors) {
        tensors.push_back({t.offset, t.size, static_cast<uint32_t>(t.shape.size())});
      }
      TALLY_ASSIGN_OR_RETURN(
          encoded.dgc, compress::DgcCompressor::Create(
                           std::move(tensors), client_internal::DgcOptionsFrom(*options_.dgc)));
    }
    encoded_ok = encoded.dgc->Compress(update.delta, &encoded.payload, &encoded.spec);
  } else if (options_.error_feedback && compress::ErrorFeedbackSuits(encoded.spec)) {
    // Encoding under the lock serializes concurrent pushes' encodes; it
    // saves a copy of the residual per push (the model's size).
    tally::MutexLock lock(&feedback_mu_);
    if (!feedback_.has_value() || feedback_->dim() != d) feedback_.emplace(d);
    encoded.next_residual.emplace();
    encoded_ok = feedback_->CompressPending(encoded.spec, update.delta, &encoded.payload,
                                            &*encoded.next_residual);
  } else {
    encoded_ok = compress::Encode(encoded.spec, update.delta, &encoded.payload);
  }
  if (!encoded_ok.ok()) return WithRpc("PushUpdate", encoded_ok);
  return encoded;
}

void GrpcClient::CommitFeedback(EncodedUpdate& encoded) {
  tally::MutexLock lock(&feedback_mu_);
  if (encoded.next_residual.has_value() && feedback_.has_value()) {
    // A residual for another layout (the client re-joined meanwhile) is dropped.
    feedback_->Adopt(*std::move(encoded.next_residual)).IgnoreError();
  }
  if (encoded.dgc.has_value()) dgc_ = std::move(encoded.dgc);
}

absl::StatusOr<v1::PushUpdateResponse> GrpcClient::PushOnce(const Session& session,
                                                            const Update& update,
                                                            const EncodedUpdate& encoded,
                                                            const std::string& update_id) {
  const ModelInfo& model = session.join.model;
  TALLY_RETURN_IF_ERROR(CheckDeltaSize(update, model));
  v1::UpdateHeader header = client_internal::BuildUpdateHeader(
      options_.client_id, session.token, model, update, update_id);
  absl::Span<const char> payload(reinterpret_cast<const char*>(update.delta.data()),
                                 model.num_params * sizeof(float));
  if (!encoded.payload.empty()) {
    header.set_codec(CodecToProto(encoded.spec));
    SpecToProto(encoded.spec, header.mutable_codec_params());
    header.set_payload_bytes(encoded.payload.size());
    payload = absl::MakeConstSpan(encoded.payload.data(), encoded.payload.size());
  }
  // Every retry restarts from byte 0: the server discards a partial upload.
  v1::PushUpdateResponse response;
  TALLY_RETURN_IF_ERROR(FromGrpcStatus(
      "PushUpdate",
      client_internal::RawPushUpdate(*generic_, absl::Now() + options_.transfer_timeout, header,
                                     payload, session.chunk_bytes, pacer_, &response)));
  return response;
}

absl::Status GrpcClient::WatchModel(
    uint64_t after_version, absl::Duration timeout,
    const std::function<bool(uint64_t version, uint64_t round)>& on_version) {
  CallSpec spec("WatchModel");
  spec.overall_deadline = absl::Now() + timeout;
  uint64_t after = after_version;  // Advances, so a reconnect resumes where it left.
  bool stopped = false;
  absl::Status status = Call(spec, [&](const Session& session) {
    v1::WatchModelRequest request;
    request.set_client_id(options_.client_id);
    request.set_session_token(session.token);
    request.set_after_version(after);
    grpc::ClientContext context;
    SetDeadline(&context, spec.overall_deadline);
    std::unique_ptr<grpc::ClientReader<v1::ModelVersionNotice>> reader =
        aggregator_->WatchModel(&context, request);
    v1::ModelVersionNotice notice;
    while (!stopped && reader->Read(&notice)) {
      if (notice.version() <= after) continue;
      after = notice.version();
      if (!on_version(notice.version(), notice.round())) {
        stopped = true;
        context.TryCancel();
      }
    }
    const grpc::Status finished = reader->Finish();
    return stopped ? absl::OkStatus() : FromGrpcStatus("WatchModel", finished);
  });
  // Reaching `timeout` is the normal end of a watch.
  if (status.code() == absl::StatusCode::kDeadlineExceeded &&
      absl::Now() >= spec.overall_deadline) {
    return absl::OkStatus();
  }
  return status;
}

absl::StatusOr<uint64_t> GrpcClient::WaitForVersion(uint64_t after_version,
                                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::optional<uint64_t> seen;
  TALLY_RETURN_IF_ERROR(WatchModel(after_version, timeout, [&](uint64_t version, uint64_t) {
    seen = version;
    return false;
  }));
  if (seen.has_value()) return *seen;
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError(absl::StrCat("WaitForVersion: no model version > ",
                                                    after_version, " within ",
                                                    absl::FormatDuration(timeout)));
  }
  return absl::UnavailableError(absl::StrCat(
      "WaitForVersion: the server ended the watch before publishing a version > ", after_version));
}

absl::StatusOr<uint32_t> GrpcClient::ReportEvaluation(
    const Task& task, uint64_t num_examples, const std::map<std::string, double>& metrics) {
  TALLY_RETURN_IF_ERROR(client_internal::ValidateEvaluationReport(task, num_examples, metrics));
  v1::EvaluationReport request;
  request.set_evaluation_id(task.evaluation_id);
  request.set_model_version(task.model_version);
  request.set_num_examples(num_examples);
  request.mutable_metrics()->insert(metrics.begin(), metrics.end());
  return Call(CallSpec("ReportEvaluation"), [&](const Session& session) -> absl::StatusOr<uint32_t> {
    v1::EvaluationAck response;
    TALLY_RETURN_IF_ERROR(UnaryAttempt("ReportEvaluation",
                                       &v1::Aggregator::Stub::ReportEvaluation, request, session,
                                       options_.call_timeout, &response));
    return response.reports_received();
  });
}

absl::Status GrpcClient::Heartbeat() {
  return Call(CallSpec("Heartbeat"), [&](const Session& session) {
    v1::HeartbeatResponse response;
    return UnaryAttempt("Heartbeat", &v1::Aggregator::Stub::Heartbeat, v1::HeartbeatRequest(),
                        session, options_.call_timeout, &response);
  });
}

absl::Status GrpcClient::Leave() {
  CallSpec spec("Leave");
  spec.rejoin_on_unauthenticated = false;  // Re-joining only to leave is pointless.
  std::string left_token;
  absl::Status status = Call(spec, [&](const Session& session) {
    left_token = session.token;
    v1::LeaveResponse response;
    return UnaryAttempt("Leave", &v1::Aggregator::Stub::Leave, v1::LeaveRequest(), session,
                        options_.call_timeout, &response);
  });
  // UNAUTHENTICATED: the server no longer knows the session, so it is gone too.
  if (!status.ok() && status.code() != absl::StatusCode::kUnauthenticated) return status;
  tally::MutexLock lock(&mu_);
  if (session_ != nullptr && session_->token == left_token) session_.reset();
  return absl::OkStatus();
}

void GrpcClient::LeaveOnClose() {
  const std::shared_ptr<const Session> session = CurrentSession();
  if (session == nullptr) return;
  v1::LeaveResponse response;
  UnaryAttempt("Leave", &v1::Aggregator::Stub::Leave, v1::LeaveRequest(), *session,
               std::min(options_.call_timeout, absl::Seconds(1)), &response)
      .IgnoreError();
}

absl::StatusOr<ServerStatusInfo> GrpcClient::GetServerStatus() {
  CallSpec spec("GetStatus");
  spec.needs_session = false;
  return Call(spec, [&](const Session&) -> absl::StatusOr<ServerStatusInfo> {
    v1::ServerStatus response;
    grpc::ClientContext context;
    SetDeadline(&context, absl::Now() + options_.call_timeout);
    TALLY_RETURN_IF_ERROR(FromGrpcStatus(
        "GetStatus", admin_->GetStatus(&context, v1::GetStatusRequest(), &response)));
    return client_internal::ServerStatusFromProto(response);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  TALLY_RETURN_IF_ERROR(client_internal::ValidateClientOptions(options));
  TALLY_ASSIGN_OR_RETURN(client_internal::TlsPem pem, client_internal::ReadTlsFiles(options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // Chunks are bounded by the server, not by gRPC.
  args.SetMaxSendMessageSize(-1);
  if (options.own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // While a call waits for the server, gRPC tries to connect at least this
  // often (its default backoff grows to 2 minutes).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              absl::ToInt64Milliseconds(client_internal::kConnectRetryInterval));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  client_internal::ProbeCredentials probe;
  if (!options.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.ca;
    ssl.pem_cert_chain = pem.cert_chain;
    ssl.pem_private_key = pem.key;
    credentials = grpc::SslCredentials(ssl);
    if (!options.auth_token.empty()) {
      credentials = grpc::CompositeChannelCredentials(
          credentials, grpc::AccessTokenCredentials(options.auth_token));
    }
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
    probe = {true, std::move(pem.ca), std::move(pem.cert_chain), std::move(pem.key),
             options.tls_server_name};
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.target: cannot create a channel to '", options.target, "'"));
  }
  client_internal::ConnectionWaiter waiter(channel, options.target, options.connect_timeout,
                                           std::move(probe));
  return std::unique_ptr<Client>(
      std::make_unique<GrpcClient>(std::move(options), channel, std::move(waiter)));
}

}  // namespace tally
