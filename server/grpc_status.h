// The one conversion point between absl::Status and grpc::Status, including
// the retry hint of RESOURCE_EXHAUSTED answers (a google.rpc.RetryInfo in the
// status details, see tally.v1.RpcStatus).
#ifndef TALLY_SERVER_GRPC_STATUS_H_
#define TALLY_SERVER_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace tally::server {

// The type URL under which a retry hint travels (absl payload and Any).
inline constexpr char kRetryInfoTypeUrl[] = "type.googleapis.com/google.rpc.RetryInfo";

// `status` with a hint that the call may be retried after `delay` (the SDK's
// tally::RetryAfter reads it back, from this status or from the wire).
absl::Status WithRetryAfter(absl::Status status, absl::Duration delay);

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tally::server

#endif  // TALLY_SERVER_GRPC_STATUS_H_
