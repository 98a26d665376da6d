// RawClient: a raw gRPC view of a tally server for input the SDK would never
// send (hand-made headers, chunks, cancelled or stalled streams), and
// OpenPush, an upload held open; shared by the integration tests.
#ifndef TALLY_TESTS_RAW_CLIENT_H_
#define TALLY_TESTS_RAW_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally {

class RawClient {
 public:
  RawClient(const std::string& target, const std::string& id) : id_(id) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    stub_ = tally::v1::Aggregator::NewStub(channel_);
    grpc::ClientContext ctx;
    tally::v1::JoinRequest request;
    request.set_client_id(id);
    tally::v1::JoinResponse response;
    EXPECT_TRUE(stub_->Join(&ctx, request, &response).ok());
    token_ = response.session_token();
    hash_ = response.model_spec().layout_hash();
    num_params_ = response.model_spec().num_params();
  }

  tally::v1::UpdateHeader Header(const std::string& update_id) const {
    tally::v1::UpdateHeader h;
    h.set_client_id(id_);
    h.set_session_token(token_);
    h.set_update_id(update_id);
    h.set_round(1);
    h.set_base_version(1);
    h.set_num_samples(1);
    h.set_codec(tally::v1::CODEC_DENSE_F32);
    h.set_layout_hash(hash_);
    h.set_num_params(num_params_);
    h.set_payload_bytes(4 * num_params_);
    return h;
  }

  // Sends the header and the chunks, then half-closes; returns the status.
  grpc::Status Push(const tally::v1::UpdateHeader& header, const std::vector<std::string>& chunks) {
    grpc::ClientContext ctx;
    tally::v1::PushUpdateResponse response;
    auto writer = stub_->PushUpdate(&ctx, &response);
    tally::v1::UpdateChunk msg;
    *msg.mutable_header() = header;
    bool ok = writer->Write(msg);
    uint64_t offset = 0;
    for (const std::string& data : chunks) {
      if (!ok) break;
      msg.Clear();
      msg.set_offset(offset);
      msg.set_data(data);
      offset += data.size();
      ok = writer->Write(msg);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  tally::v1::Aggregator::Stub& stub() { return *stub_; }
  const std::string& token() const { return token_; }
  const std::string& id() const { return id_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

 private:
  std::string id_;
  std::string token_;
  uint64_t hash_ = 0;
  uint64_t num_params_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tally::v1::Aggregator::Stub> stub_;
};

inline std::string Floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), 4 * v.size());
}

// A PushUpdate stream held open: header and chunks are sent one at a time.
class OpenPush {
 public:
  OpenPush(RawClient& client, const tally::v1::UpdateHeader& header)
      : writer_(client.stub().PushUpdate(&ctx_, &response_)) {
    tally::v1::UpdateChunk msg;
    *msg.mutable_header() = header;
    EXPECT_TRUE(writer_->Write(msg));
  }
  ~OpenPush() { ctx_.TryCancel(); }
  bool Send(const std::vector<float>& values) {
    tally::v1::UpdateChunk msg;
    msg.set_offset(offset_);
    msg.set_data(Floats(values));
    offset_ += 4 * values.size();
    return writer_->Write(msg);
  }
  grpc::Status Finish() {
    writer_->WritesDone();
    return writer_->Finish();
  }
  void Cancel() {
    ctx_.TryCancel();
    writer_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  tally::v1::PushUpdateResponse response_;
  std::unique_ptr<grpc::ClientWriter<tally::v1::UpdateChunk>> writer_;
  uint64_t offset_ = 0;
};

}  // namespace tally

#endif  // TALLY_TESTS_RAW_CLIENT_H_
