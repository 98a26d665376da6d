#include "client/model_stream.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/codec_params.h"

namespace tally {
namespace client_internal {

absl::Status ModelAssembler::Add(const v1::ModelChunk& chunk) {
  if (!in_segment_) {
    if (!chunk.has_header()) {
      return absl::DataLossError(have_model_ ? "expected a segment header after a whole segment"
                                             : "the first message of the stream is not a header");
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
  if (direct_) {
    std::memcpy(reinterpret_cast<char*>(model_->params.data()) + received_bytes_, data.data(),
                data.size());
  } else {
    payload_.append(data);
  }
  received_bytes_ += data.size();
  model_->payload_bytes += data.size();
  if (received_bytes_ == expected_bytes_) return FinishSegment();
  return absl::OkStatus();
}

absl::Status ModelAssembler::AddHeader(const v1::ModelHeader& header) {
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
  const size_t d = joined_.num_params;
  absl::StatusOr<compress::CodecSpec> codec = SpecFromProto(header.codec(), header.codec_params());
  if (!codec.ok()) {
    return absl::UnimplementedError(
        absl::StrFormat("model codec %s is not supported by this SDK: %s",
                        v1::Codec_Name(header.codec()), codec.status().message()));
  }
  if (absl::Status valid = compress::ValidateSpec(*codec, d); !valid.ok()) {
    return absl::DataLossError(absl::StrCat("model header: ", valid.message()));
  }
  const uint64_t most = compress::MaxEncodedBytes(*codec, d);
  if (compress::IsPlainFloat32(*codec) ? header.payload_bytes() != most
                                       : header.payload_bytes() > most) {
    return absl::DataLossError(absl::StrFormat(
        "payload_bytes mismatch: header says %d, a %s payload of %d parameters %s %d",
        header.payload_bytes(), compress::FindCodec(codec->id)->name, d,
        compress::IsPlainFloat32(*codec) ? "is" : "is at most", most));
  }
  delta_ = header.base_version() != 0;
  if (delta_) {
    // A delta applies to the model so far, or to the held one.
    const bool on_model =
        have_model_ && model_->version == header.base_version() && chain_id_ == header.chain_id();
    const bool on_held = !have_model_ && held_ != nullptr &&
                         held_->version == header.base_version() &&
                         held_->chain_id == header.chain_id();
    if (!on_model && !on_held) {
      return absl::DataLossError(
          absl::StrFormat("a delta from version %d (chain %#x), which this client does not hold",
                          header.base_version(), header.chain_id()));
    }
    if (on_held) model_->params = held_->params;
  } else {
    model_->params.resize(d);
  }
  model_->version = header.version();
  model_->round = header.round();
  model_->info = joined_;
  codec_ = *codec;
  direct_ = !delta_ && compress::IsPlainFloat32(*codec);
  payload_.clear();
  expected_bytes_ = header.payload_bytes();
  received_bytes_ = 0;
  delta_base_ = header.delta_base();
  chain_id_ = header.chain_id();
  in_segment_ = true;
  if (expected_bytes_ == 0) return FinishSegment();
  return absl::OkStatus();
}

absl::Status ModelAssembler::FinishSegment() {
  in_segment_ = false;
  absl::Span<float> params = absl::MakeSpan(model_->params);
  if (!delta_) {
    if (!direct_) {
      if (absl::Status decoded = compress::Decode(codec_, payload_, params); !decoded.ok()) {
        return absl::DataLossError(absl::StrCat("model payload: ", decoded.message()));
      }
    }
    have_model_ = true;
    return absl::OkStatus();
  }
  std::vector<float> delta(params.size());
  if (absl::Status decoded = compress::Decode(codec_, payload_, absl::MakeSpan(delta));
      !decoded.ok()) {
    return absl::DataLossError(absl::StrCat("model delta: ", decoded.message()));
  }
  for (size_t j = 0; j < params.size(); ++j) params[j] += delta[j];
  // P: the download codec's rounding (none for float32), as the server does.
  if (download_.id != compress::CodecId::kFloat32) {
    compress::CodecSpec round = download_;
    round.zstd = false;
    std::string rounded;
    absl::Status status = compress::Encode(round, params, &rounded);
    if (status.ok()) status = compress::Decode(round, rounded, params);
    if (!status.ok()) return absl::DataLossError(absl::StrCat("model delta: ", status.message()));
  }
  ++model_->deltas;
  have_model_ = true;
  return absl::OkStatus();
}

absl::Status ModelAssembler::Complete() const {
  if (in_segment_) {
    return absl::DataLossError(absl::StrFormat("the stream ended after %d of %d payload bytes",
                                               received_bytes_, expected_bytes_));
  }
  if (!have_model_) return absl::DataLossError("the stream ended before the header");
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
