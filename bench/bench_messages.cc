#include "bench/bench_messages.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/codec_params.h"

namespace tally::bench {

absl::Status FromGrpc(absl::string_view rpc, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(rpc, ": ", status.error_message()));
}

v1::JoinRequest JoinRequestFor(const std::string& client_id, const compress::CodecSpec& codec) {
  v1::JoinRequest request;
  request.set_client_id(client_id);
  request.set_sdk_version(absl::StrCat(kSdkVersion, "-bench"));
  request.add_supported_codecs(v1::CODEC_DENSE_F32);
  request.add_supported_codecs(CodecToProto(codec));
  return request;
}

absl::StatusOr<JoinResult> JoinResultFrom(const v1::JoinResponse& response,
                                          const compress::CodecSpec& codec,
                                          BenchSession* session) {
  if (response.upload_codec() != CodecToProto(codec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("Join: the server assigned upload codec ", response.upload_codec(), ", not ",
                     compress::FindCodec(codec.id)->name, " (is it in its compression.upload?)"));
  }
  session->token = response.session_token();
  session->layout_hash = response.model_spec().layout_hash();
  session->num_params = response.model_spec().num_params();
  if (const uint32_t max = response.limits().max_chunk_bytes(); max > 0) {
    session->chunk_bytes = std::min<size_t>(session->chunk_bytes, max);
  }
  JoinResult join;
  join.model.num_params = session->num_params;
  join.model.layout_hash = session->layout_hash;
  join.upload_codec = compress::FindCodec(codec.id)->name;
  join.model_version = response.model_version();
  join.max_chunk_bytes = response.limits().max_chunk_bytes();
  join.max_update_bytes = response.limits().max_update_bytes();
  return join;
}

v1::GetTaskRequest GetTaskRequestFor(const BenchSession& session, absl::Duration wait) {
  v1::GetTaskRequest request;
  request.set_client_id(session.client_id);
  request.set_session_token(session.token);
  request.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(wait)));
  return request;
}

Task TaskFrom(const v1::Task& response) {
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

v1::PullModelRequest PullRequestFor(const BenchSession& session, uint64_t version) {
  v1::PullModelRequest request;
  request.set_client_id(session.client_id);
  request.set_session_token(session.token);
  request.set_version(version);
  request.set_codec(v1::CODEC_DENSE_F32);
  return request;
}

v1::UpdateHeader UpdateHeaderFor(const BenchSession& session, std::string update_id,
                                 uint64_t round, uint64_t base_version,
                                 const compress::CodecSpec& spec, size_t payload_bytes) {
  v1::UpdateHeader header;
  header.set_client_id(session.client_id);
  header.set_session_token(session.token);
  header.set_update_id(std::move(update_id));
  header.set_base_version(base_version);
  header.set_round(round);
  header.set_num_samples(1);
  header.set_codec(CodecToProto(spec));
  SpecToProto(spec, header.mutable_codec_params());
  header.set_layout_hash(session.layout_hash);
  header.set_num_params(session.num_params);
  header.set_payload_bytes(payload_bytes);
  return header;
}

v1::LeaveRequest LeaveRequestFor(const BenchSession& session) {
  v1::LeaveRequest request;
  request.set_client_id(session.client_id);
  request.set_session_token(session.token);
  return request;
}

std::string RandomUpdateIdPrefix() {
  return absl::StrCat(std::random_device{}(), std::random_device{}());
}

}  // namespace tally::bench
