// Conversions between the wire types (tally.v1 protos, grpc::Status) and the
// SDK's public types. The only place in the SDK where grpc::Status becomes
// absl::Status. Internal to client/ (not installed).
#ifndef TALLY_CLIENT_PROTO_CONVERT_H_
#define TALLY_CLIENT_PROTO_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tally/client.h"
#include "tally/v1/tally.pb.h"

namespace tally {
namespace client_internal {

// The type URL of google.rpc.RetryInfo: the key of the retry hint, both in
// the gRPC status details and as an absl::Status payload.
inline constexpr char kRetryInfoTypeUrl[] = "type.googleapis.com/google.rpc.RetryInfo";

// Same code; the message is prefixed with the RPC name ("PullModel: ...").
// A RetryInfo in the status details becomes a payload (RetryAfter()).
absl::Status FromGrpcStatus(absl::string_view rpc, const grpc::Status& status);

// Tensors with offsets in order, num_params and layout hash, recomputed with
// core/model_layout and checked against what the server sent (DATA_LOSS on a
// mismatch, naming the field).
absl::StatusOr<ModelInfo> ModelInfoFromSpec(const v1::ModelSpec& spec);

Task TaskFromProto(const v1::Task& proto);
ServerStatusInfo ServerStatusFromProto(const v1::ServerStatus& proto);

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_PROTO_CONVERT_H_
