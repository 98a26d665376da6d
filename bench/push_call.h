// An asynchronous PushUpdate over the generic stub for tally-bench's
// callback driver (the SDK's blocking, paced one is client/raw_push.h): each
// chunk message framed by hand (proto/chunk_wire.h's ChunkWriter) around
// one gRPC slice of the payload, copied or borrowed. Internal to bench/.
#ifndef TALLY_BENCH_PUSH_CALL_H_
#define TALLY_BENCH_PUSH_CALL_H_

#include <cstddef>
#include <functional>

#include "absl/strings/string_view.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/chunk_wire.h"
#include "tally/v1/tally.pb.h"

namespace tally::bench {

inline constexpr char kPushUpdateMethod[] = "/tally.v1.Aggregator/PushUpdate";

// The call's status (INTERNAL if it ended OK without a parsable response)
// and the server's response.
using PushDone = std::function<void(const grpc::Status&, tally::v1::PushUpdateResponse)>;

// Starts a PushUpdate on `stub` under `context` (which must outlive the
// call): `header`, then `payload` in chunks of `chunk_bytes` (> 0), copied
// or borrowed as `data` says (kBorrow: `payload` must outlive the call).
// `done` runs once, on a gRPC thread, when the call has ended; it may
// destroy `context`, which holds a reference to the stub's channel (see
// CallbackClient in bench/callback_driver.cc for why that matters).
void StartPushCall(grpc::GenericStub& stub, grpc::ClientContext* context,
                   const tally::v1::UpdateHeader& header, absl::string_view payload,
                   size_t chunk_bytes, wire::ChunkWriter::Data data, PushDone done);

}  // namespace tally::bench

#endif  // TALLY_BENCH_PUSH_CALL_H_
