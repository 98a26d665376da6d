#include "client/model_stream.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace tally {
namespace client_internal {

absl::Status ModelAssembler::Add(const v1::ModelChunk& chunk) {
  if (!have_header_) {
    if (!chunk.has_header()) {
      return absl::DataLossError("the first message of the stream is not a header");
    }
    return AddHeader(chunk.header());
  }
  if (!chunk.has_data()) {
    return absl::DataLossError(absl::StrFormat(
        "expected a data chunk at byte %d, got another kind of message", received_bytes_));
  }
  const std::string& data = chunk.data();
  if (chunk.offset() != received_bytes_) {
    return absl::DataLossError(
        absl::StrFormat("chunk at offset %d, expected offset %d (chunks must be contiguous)",
                        chunk.offset(), received_bytes_));
  }
  if (data.size() > expected_bytes_ - received_bytes_) {
    return absl::DataLossError(
        absl::StrFormat("chunk of %d bytes at offset %d overruns payload_bytes=%d", data.size(),
                        received_bytes_, expected_bytes_));
  }
  std::memcpy(reinterpret_cast<char*>(model_->params.data()) + received_bytes_, data.data(),
              data.size());
  received_bytes_ += data.size();
  return absl::OkStatus();
}

absl::Status ModelAssembler::AddHeader(const v1::ModelHeader& header) {
  if (header.codec() != v1::CODEC_DENSE_F32) {
    return absl::UnimplementedError(
        absl::StrFormat("model codec %s is not supported by this SDK (only CODEC_DENSE_F32)",
                        v1::Codec_Name(header.codec())));
  }
  if (!header.has_model_spec()) {
    return absl::DataLossError("the model header has no model_spec");
  }
  const v1::ModelSpec& spec = header.model_spec();
  if (spec.layout_hash() != joined_.layout_hash) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "layout hash mismatch: the server's model has %#018x, Join returned %#018x; the model "
        "changed, call Join() again",
        spec.layout_hash(), joined_.layout_hash));
  }
  if (spec.num_params() != joined_.num_params) {
    return absl::FailedPreconditionError(
        absl::StrFormat("num_params mismatch: the server's model has %d, Join returned %d",
                        spec.num_params(), joined_.num_params));
  }
  const uint64_t expected = joined_.num_params * sizeof(float);
  if (header.payload_bytes() != expected) {
    return absl::DataLossError(
        absl::StrFormat("payload_bytes mismatch: header says %d, 4 * num_params = %d",
                        header.payload_bytes(), expected));
  }
  model_->version = header.version();
  model_->round = header.round();
  model_->info = joined_;
  model_->params.resize(joined_.num_params);
  expected_bytes_ = expected;
  have_header_ = true;
  return absl::OkStatus();
}

absl::Status ModelAssembler::Complete() const {
  if (!have_header_) return absl::DataLossError("the stream ended before the header");
  if (received_bytes_ != expected_bytes_) {
    return absl::DataLossError(absl::StrFormat("the stream ended after %d of %d payload bytes",
                                               received_bytes_, expected_bytes_));
  }
  return absl::OkStatus();
}

v1::UpdateHeader BuildUpdateHeader(const std::string& client_id, const std::string& session_token,
                                   const ModelInfo& model, const Update& update,
                                   const std::string& update_id) {
  v1::UpdateHeader header;
  header.set_client_id(client_id);
  header.set_session_token(session_token);
  header.set_update_id(update_id);
  header.set_base_version(update.base_version);
  header.set_round(update.round);
  header.set_num_samples(update.num_samples);
  header.set_local_steps(update.local_steps);
  header.set_codec(v1::CODEC_DENSE_F32);
  header.set_layout_hash(model.layout_hash);
  header.set_num_params(model.num_params);
  header.set_payload_bytes(model.num_params * sizeof(float));
  header.mutable_metrics()->insert(update.metrics.begin(), update.metrics.end());
  return header;
}

}  // namespace client_internal
}  // namespace tally
