#include "bench/encoded_client.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "bench/bench_messages.h"
#include "core/status_macros.h"
#include "proto/codec_params.h"
#include "tally/v1/config.pb.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::bench {
namespace {

constexpr int kMaxPushAttempts = 6;

class GrpcEncodedClient final : public EncodedClient {
 public:
  GrpcEncodedClient(std::shared_ptr<grpc::Channel> channel, std::string client_id,
                    size_t chunk_bytes)
      : stub_(v1::Aggregator::NewStub(channel)), id_prefix_(RandomUpdateIdPrefix()) {
    session_.client_id = std::move(client_id);
    session_.chunk_bytes = chunk_bytes;
  }

  absl::StatusOr<JoinResult> Join(const compress::CodecSpec& codec) override {
    v1::JoinResponse response;
    grpc::ClientContext context;
    TALLY_RETURN_IF_ERROR(FromGrpc(
        "Join", stub_->Join(&context, JoinRequestFor(session_.client_id, codec), &response)));
    return JoinResultFrom(response, codec, &session_);
  }

  absl::StatusOr<Task> GetTask(absl::Duration wait) override {
    v1::Task response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + wait + absl::Seconds(30)));
    TALLY_RETURN_IF_ERROR(FromGrpc(
        "GetTask", stub_->GetTask(&context, GetTaskRequestFor(session_, wait), &response)));
    return TaskFrom(response);
  }

  absl::StatusOr<uint64_t> Pull(uint64_t version) override {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader =
        stub_->PullModel(&context, PullRequestFor(session_, version));
    v1::ModelChunk chunk;
    uint64_t bytes = 0;
    while (reader->Read(&chunk)) bytes += chunk.data().size();
    TALLY_RETURN_IF_ERROR(FromGrpc("PullModel", reader->Finish()));
    return bytes;
  }

  absl::StatusOr<PushResult> Push(uint64_t round, uint64_t base_version,
                                  const compress::CodecSpec& spec,
                                  absl::string_view payload) override {
    const v1::UpdateHeader header =
        UpdateHeaderFor(session_, absl::StrCat("b", id_prefix_, "-", ++pushes_), round,
                        base_version, spec, payload.size());
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
    v1::LeaveResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return FromGrpc("Leave", stub_->Leave(&context, LeaveRequestFor(session_), &response));
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
    for (size_t offset = 0; open && offset < payload.size(); offset += session_.chunk_bytes) {
      chunk.Clear();
      chunk.set_data(std::string(payload.substr(offset, session_.chunk_bytes)));
      chunk.set_offset(offset);
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    return FromGrpc("PushUpdate", writer->Finish());
  }

  std::unique_ptr<v1::Aggregator::Stub> stub_;
  const std::string id_prefix_;
  BenchSession session_;
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
