#include "bench/push_call.h"

#include <string>
#include <utility>
#include <vector>

#include "grpcpp/grpcpp.h"

namespace tally::bench {
namespace {

// Writes the messages one after another (never more than one write in
// flight), half-closes, reads the single response, and deletes itself when
// the call is done.
class PushReactor final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  PushReactor(const tally::v1::UpdateHeader& header, absl::string_view payload,
              size_t chunk_bytes, wire::ChunkWriter::Data data, PushDone done)
      : chunks_(payload, chunk_bytes, data), done_(std::move(done)) {
    grpc::Slice slice(wire::HeaderMessage(header));
    message_ = grpc::ByteBuffer(&slice, 1);
  }

  void Start() {
    StartRead(&response_);
    StartWrite(&message_);
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return;  // The call failed; OnDone reports why.
    if (chunks_.Next(&message_)) {
      StartWrite(&message_);
    } else {
      StartWritesDone();
    }
  }

  void OnReadDone(bool ok) override { got_response_ = ok; }

  void OnDone(const grpc::Status& status) override {
    tally::v1::PushUpdateResponse response;
    grpc::Status result = status;
    if (status.ok() && !ParseResponse(&response)) {
      result = grpc::Status(grpc::StatusCode::INTERNAL,
                            got_response_ ? "unparsable PushUpdate response"
                                          : "the server sent no PushUpdate response");
    }
    PushDone done = std::move(done_);
    delete this;
    done(result, std::move(response));
  }

 private:
  bool ParseResponse(tally::v1::PushUpdateResponse* response) {
    if (!got_response_) return false;
    std::vector<grpc::Slice> slices;
    if (!response_.Dump(&slices).ok()) return false;
    std::string bytes;
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return response->ParseFromString(bytes);
  }

  wire::ChunkWriter chunks_;
  PushDone done_;
  grpc::ByteBuffer message_;
  grpc::ByteBuffer response_;
  bool got_response_ = false;
};

}  // namespace

void StartPushCall(grpc::GenericStub& stub, grpc::ClientContext* context,
                   const tally::v1::UpdateHeader& header, absl::string_view payload,
                   size_t chunk_bytes, wire::ChunkWriter::Data data, PushDone done) {
  auto* reactor = new PushReactor(header, payload, chunk_bytes, data, std::move(done));
  stub.PrepareBidiStreamingCall(context, kPushUpdateMethod, grpc::StubOptions(), reactor);
  reactor->Start();
}

}  // namespace tally::bench
