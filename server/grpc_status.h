// The one conversion point between absl::Status and grpc::Status.
#ifndef TALLY_SERVER_GRPC_STATUS_H_
#define TALLY_SERVER_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace tally::server {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace tally::server

#endif  // TALLY_SERVER_GRPC_STATUS_H_
