// PushUpdate over the generic stub: each chunk message is framed by hand
// (proto/chunk_wire.h) around one gRPC slice of the payload, so a payload
// byte is copied at most once (into a slice gRPC then owns; with
// ChunkWriter::Data::kBorrow not at all: the kernel's socket copy is the
// only one) instead of twice (into a protobuf string, then again when the
// message is serialized). The server decodes the
// same wire format. Used by the SDK (blocking) and tally-bench's callback
// driver (asynchronous).
#ifndef TALLY_PROTO_PUSH_CALL_H_
#define TALLY_PROTO_PUSH_CALL_H_

#include <cstddef>
#include <functional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/chunk_wire.h"
#include "tally/v1/tally.pb.h"

namespace tally::wire {

inline constexpr char kPushUpdateMethod[] = "/tally.v1.Aggregator/PushUpdate";

// The call's status (INTERNAL if it ended OK without a parsable response)
// and the server's response.
using PushDone = std::function<void(const grpc::Status&, tally::v1::PushUpdateResponse)>;

// Starts a PushUpdate on `stub` under `context` (which must outlive the
// call): `header`, then `payload` in chunks of `chunk_bytes` (> 0), copied
// or borrowed as `data` says (kBorrow: `payload` must outlive the call).
// `done` runs once, on a gRPC thread, when the call has ended.
void StartPushCall(grpc::GenericStub& stub, grpc::ClientContext* context,
                   const tally::v1::UpdateHeader& header, absl::string_view payload,
                   size_t chunk_bytes, ChunkWriter::Data data, PushDone done);

// StartPushCall with a deadline (InfiniteFuture: none) and the caller
// blocked until the call ends; returns its status. The payload is borrowed
// (sent from where it is, never copied in user space): the call has ended
// when PushCall returns.
grpc::Status PushCall(grpc::GenericStub& stub, absl::Time deadline,
                      const tally::v1::UpdateHeader& header, absl::string_view payload,
                      size_t chunk_bytes, tally::v1::PushUpdateResponse* response);

}  // namespace tally::wire

#endif  // TALLY_PROTO_PUSH_CALL_H_
