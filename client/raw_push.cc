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
// flight), half-closes, and reads the single response. The caller's thread
// drives the writes (AwaitWrite / WriteChunk), so pacing a metered link sleeps
// there, never on a gRPC callback thread.
class PushReactor final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit PushReactor(const tally::v1::UpdateHeader& header) {
    grpc::Slice slice(wire::HeaderMessage(header));
    message_ = grpc::ByteBuffer(&slice, 1);
  }

  // Starts the call with the header as its first write. The hold keeps the
  // call from finishing (OnDone) while the caller's thread may still start
  // writes from outside a reaction; Release() drops it.
  void Start() {
    AddHold();
    StartRead(&response_);
    StartWrite(&message_);
    StartCall();
  }

  // Waits for the write in flight; false if the call failed (OnDone says why).
  bool AwaitWrite() {
    tally::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&write_done_));
    write_done_ = false;
    return write_ok_;
  }

  // Writes payload[offset, offset + size) as one chunk message, its data
  // slice pointing into the payload (RawPushUpdate returns only after the
  // call has ended). Only after AwaitWrite returned true.
  void WriteChunk(absl::Span<const char> payload, size_t offset, size_t size) {
    std::string prefix, suffix;
    wire::ChunkFraming(size, offset, &prefix, &suffix);
    grpc::Slice slices[3] = {grpc::Slice(prefix),
                             grpc::Slice(payload.data() + offset, size, grpc::Slice::STATIC_SLICE),
                             grpc::Slice(suffix)};
    message_ = grpc::ByteBuffer(slices, 3);
    StartWrite(&message_);
  }

  void Close() { StartWritesDone(); }

  // The caller starts no more operations.
  void Release() { RemoveHold(); }

  void OnWriteDone(bool ok) override {
    tally::MutexLock lock(&mu_);
    write_ok_ = ok;
    write_done_ = true;
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
  tally::Mutex mu_;
  bool write_done_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ByteBuffer message_;  // The write in flight; replaced only after it is done.
  grpc::ByteBuffer response_;
  bool got_response_ = false;
  grpc::Status status_;
  tally::Notification done_;
};

}  // namespace

grpc::Status RawPushUpdate(grpc::GenericStub& stub, absl::Time deadline,
                           const tally::v1::UpdateHeader& header, absl::Span<const char> payload,
                           size_t chunk_bytes, BandwidthPacer& pacer,
                           tally::v1::PushUpdateResponse* response) {
  grpc::ClientContext context;
  if (deadline != absl::InfiniteFuture()) context.set_deadline(absl::ToChronoTime(deadline));
  PushReactor reactor(header);
  stub.PrepareBidiStreamingCall(&context, kPushUpdateMethod, grpc::StubOptions(), &reactor);
  reactor.Start();
  chunk_bytes = pacer.ChunkBytes(chunk_bytes);
  size_t offset = 0;
  while (reactor.AwaitWrite()) {
    if (offset >= payload.size()) {
      reactor.Close();
      break;
    }
    const size_t size = std::min(chunk_bytes, payload.size() - offset);
    pacer.Pace(size);
    reactor.WriteChunk(payload, offset, size);
    offset += size;
  }
  reactor.Release();
  return reactor.Wait(response);
}

}  // namespace tally::client_internal
