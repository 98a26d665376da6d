#include "client/raw_push.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/sync.h"
#include "proto/chunk_wire.h"
#include "grpcpp/grpcpp.h"

namespace tally::client_internal {
namespace {

// Writes the messages one after another (never more than one write in
// flight), half-closes, and reads the single response.
class PushReactor final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  PushReactor(const tally::v1::UpdateHeader& header, absl::Span<const char> payload,
              size_t chunk_bytes)
      : payload_(payload), chunk_bytes_(chunk_bytes) {
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
    if (offset_ >= payload_.size()) {
      StartWritesDone();
      return;
    }
    const size_t size = std::min(chunk_bytes_, payload_.size() - offset_);
    std::string prefix, suffix;
    wire::ChunkFraming(size, offset_, &prefix, &suffix);
    grpc::Slice slices[3] = {grpc::Slice(prefix), grpc::Slice(payload_.data() + offset_, size),
                             grpc::Slice(suffix)};
    message_ = grpc::ByteBuffer(slices, 3);
    offset_ += size;
    StartWrite(&message_);
  }

  void OnReadDone(bool ok) override { got_response_ = ok; }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }

  grpc::Status Wait(tally::v1::PushUpdateResponse* response) {
    done_.WaitForNotification();
    if (!status_.ok()) return status_;
    if (!got_response_) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "the server sent no PushUpdate response");
    }
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (response_.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) {
        bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    if (!response->ParseFromString(bytes)) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "unparsable PushUpdate response");
    }
    return status_;
  }

 private:
  const absl::Span<const char> payload_;
  const size_t chunk_bytes_;
  size_t offset_ = 0;
  grpc::ByteBuffer message_;
  grpc::ByteBuffer response_;
  bool got_response_ = false;
  grpc::Status status_;
  tally::Notification done_;
};

}  // namespace

grpc::Status RawPushUpdate(grpc::GenericStub& stub, absl::Time deadline,
                           const tally::v1::UpdateHeader& header, absl::Span<const char> payload,
                           size_t chunk_bytes, tally::v1::PushUpdateResponse* response) {
  grpc::ClientContext context;
  if (deadline != absl::InfiniteFuture()) context.set_deadline(absl::ToChronoTime(deadline));
  PushReactor reactor(header, payload, chunk_bytes);
  stub.PrepareBidiStreamingCall(&context, kPushUpdateMethod, grpc::StubOptions(), &reactor);
  reactor.Start();
  return reactor.Wait(response);
}

}  // namespace tally::client_internal
