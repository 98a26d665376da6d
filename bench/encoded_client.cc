#include "bench/encoded_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/codec_params.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::bench {
namespace {

constexpr int kMaxPushAttempts = 6;

absl::Status FromGrpc(absl::string_view rpc, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(rpc, ": ", status.error_message()));
}

class GrpcEncodedClient final : public EncodedClient {
 public:
  GrpcEncodedClient(std::shared_ptr<grpc::Channel> channel, std::string client_id,
                    size_t chunk_bytes)
      : stub_(v1::Aggregator::NewStub(channel)),
        client_id_(std::move(client_id)),
        chunk_bytes_(chunk_bytes),
        // Update ids must not repeat across runs against one server (it
        // deduplicates by client and update id).
        id_prefix_(absl::StrCat(std::random_device{}(), std::random_device{}())) {}

  absl::StatusOr<JoinResult> Join(const compress::CodecSpec& codec) override {
    v1::JoinRequest request;
    request.set_client_id(client_id_);
    request.set_sdk_version(absl::StrCat(kSdkVersion, "-bench"));
    request.add_supported_codecs(v1::CODEC_DENSE_F32);
    request.add_supported_codecs(CodecToProto(codec));
    v1::JoinResponse response;
    grpc::ClientContext context;
    TALLY_RETURN_IF_ERROR(FromGrpc("Join", stub_->Join(&context, request, &response)));
    if (response.upload_codec() != CodecToProto(codec)) {
      return absl::FailedPreconditionError(
          absl::StrCat("Join: the server assigned upload codec ", response.upload_codec(), ", not ",
                       compress::FindCodec(codec.id)->name, " (is it in its compression.upload?)"));
    }
    token_ = response.session_token();
    layout_hash_ = response.model_spec().layout_hash();
    num_params_ = response.model_spec().num_params();
    if (const uint32_t max = response.limits().max_chunk_bytes(); max > 0) {
      chunk_bytes_ = std::min<size_t>(chunk_bytes_, max);
    }
    JoinResult join;
    join.model.num_params = num_params_;
    join.model.layout_hash = layout_hash_;
    join.upload_codec = compress::FindCodec(codec.id)->name;
    join.model_version = response.model_version();
    join.max_chunk_bytes = response.limits().max_chunk_bytes();
    join.max_update_bytes = response.limits().max_update_bytes();
    return join;
  }

  absl::StatusOr<Task> GetTask(absl::Duration wait) override {
    v1::GetTaskRequest request;
    request.set_client_id(client_id_);
    request.set_session_token(token_);
    request.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(wait)));
    v1::Task response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + wait + absl::Seconds(30)));
    TALLY_RETURN_IF_ERROR(FromGrpc("GetTask", stub_->GetTask(&context, request, &response)));
    Task task;
    task.kind = response.kind() == v1::Task::TRAIN  ? Task::Kind::kTrain
                : response.kind() == v1::Task::DONE ? Task::Kind::kDone
                                                    : Task::Kind::kWait;
    task.round = response.round();
    task.model_version = response.model_version();
    task.local_steps = response.local_steps();
    task.retry_after = absl::Milliseconds(response.retry_after_ms());
    return task;
  }

  absl::StatusOr<uint64_t> Pull(uint64_t version) override {
    v1::PullModelRequest request;
    request.set_client_id(client_id_);
    request.set_session_token(token_);
    request.set_version(version);
    request.set_codec(v1::CODEC_DENSE_F32);
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader = stub_->PullModel(&context, request);
    v1::ModelChunk chunk;
    uint64_t bytes = 0;
    while (reader->Read(&chunk)) bytes += chunk.data().size();
    TALLY_RETURN_IF_ERROR(FromGrpc("PullModel", reader->Finish()));
    return bytes;
  }

  absl::StatusOr<PushResult> Push(uint64_t round, uint64_t base_version,
                                  const compress::CodecSpec& spec,
                                  absl::string_view payload) override {
    v1::UpdateHeader header;
    header.set_client_id(client_id_);
    header.set_session_token(token_);
    header.set_update_id(absl::StrCat("b", id_prefix_, "-", ++pushes_));
    header.set_base_version(base_version);
    header.set_round(round);
    header.set_num_samples(1);
    header.set_codec(CodecToProto(spec));
    SpecToProto(spec, header.mutable_codec_params());
    header.set_layout_hash(layout_hash_);
    header.set_num_params(num_params_);
    header.set_payload_bytes(payload.size());
    PushResult result;
    result.update_id = header.update_id();
    result.payload_bytes = payload.size();
    absl::Status status;
    for (int attempt = 1; attempt <= kMaxPushAttempts; ++attempt) {
      result.attempts = static_cast<uint32_t>(attempt);
      v1::PushUpdateResponse response;
      status = PushOnce(header, payload, &response);
      if (status.ok()) {
        result.round = response.round();
        result.model_version = response.model_version();
        return result;
      }
      if (absl::IsAlreadyExists(status)) {  // A retry of an accepted update.
        result.duplicate = true;
        return result;
      }
      if (!absl::IsResourceExhausted(status) && !absl::IsUnavailable(status)) break;
      absl::SleepFor(absl::Milliseconds(50) * attempt);
    }
    return status;
  }

  absl::Status Leave() override {
    v1::LeaveRequest request;
    request.set_client_id(client_id_);
    request.set_session_token(token_);
    v1::LeaveResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return FromGrpc("Leave", stub_->Leave(&context, request, &response));
  }

 private:
  // The header message, then the payload in chunks at their offsets.
  absl::Status PushOnce(const v1::UpdateHeader& header, absl::string_view payload,
                        v1::PushUpdateResponse* response) {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer =
        stub_->PushUpdate(&context, response);
    v1::UpdateChunk chunk;
    *chunk.mutable_header() = header;
    bool open = writer->Write(chunk);
    for (size_t offset = 0; open && offset < payload.size(); offset += chunk_bytes_) {
      chunk.Clear();
      chunk.set_data(std::string(payload.substr(offset, chunk_bytes_)));
      chunk.set_offset(offset);
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    return FromGrpc("PushUpdate", writer->Finish());
  }

  std::unique_ptr<v1::Aggregator::Stub> stub_;
  const std::string client_id_;
  size_t chunk_bytes_;
  const std::string id_prefix_;
  std::string token_;
  uint64_t layout_hash_ = 0;
  uint64_t num_params_ = 0;
  uint64_t pushes_ = 0;
};

}  // namespace

std::string CompressionConfigText(const compress::CodecSpec& spec) {
  v1::CompressionConfig compression;
  v1::CodecChoice* choice = compression.add_upload();
  choice->set_codec(compress::FindCodec(spec.id)->name);
  SpecToProto(spec, choice->mutable_params());
  return absl::StrCat("compression { ", compression.ShortDebugString(), " }\n");
}

absl::StatusOr<std::unique_ptr<EncodedClient>> EncodedClient::Create(const std::string& target,
                                                                     const std::string& client_id,
                                                                     size_t chunk_bytes,
                                                                     bool own_connection) {
  if (chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  grpc::ChannelArguments args;
  // As the SDK's channels (client/client.cc), so that both paths connect alike.
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<EncodedClient>(
      std::make_unique<GrpcEncodedClient>(std::move(channel), client_id, chunk_bytes));
}

}  // namespace tally::bench
