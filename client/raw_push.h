// PushUpdate over the generic stub: each chunk message is framed by hand
// (tally.v1.UpdateChunk fields 2 "data" and 3 "offset") around one gRPC slice
// of the payload, which points into the caller's payload: no user-space copy
// (the kernel's socket copy is the only one), instead of two (into a
// protobuf string, then again when the message is serialized). The server
// decodes the same wire format.
// Internal to client/.
#ifndef TALLY_CLIENT_RAW_PUSH_H_
#define TALLY_CLIENT_RAW_PUSH_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/pacer.h"
#include "grpcpp/generic/generic_stub.h"
#include "tally/v1/tally.pb.h"

namespace tally::client_internal {

inline constexpr char kPushUpdateMethod[] = "/tally.v1.Aggregator/PushUpdate";

// Sends `header` then `payload` in chunks of `chunk_bytes` (> 0; smaller on
// a paced link, pacer.ChunkBytes), each chunk paced by `pacer`, and returns
// the server's response, or the call's status as a gRPC status. The payload
// is sent from where it is, one chunk at a time; the call has ended when
// this returns.
grpc::Status RawPushUpdate(grpc::GenericStub& stub, absl::Time deadline,
                           const tally::v1::UpdateHeader& header, absl::Span<const char> payload,
                           size_t chunk_bytes, BandwidthPacer& pacer,
                           tally::v1::PushUpdateResponse* response);

}  // namespace tally::client_internal

#endif  // TALLY_CLIENT_RAW_PUSH_H_
