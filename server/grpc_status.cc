#include "server/grpc_status.h"

#include "tally/v1/tally.pb.h"

namespace tally::server {

absl::Status WithRetryAfter(absl::Status status, absl::Duration delay) {
  tally::v1::RetryInfo info;
  const int64_t nanos = absl::ToInt64Nanoseconds(delay);
  info.mutable_retry_delay()->set_seconds(nanos / 1000000000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  status.SetPayload(kRetryInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  auto retry = status.GetPayload(kRetryInfoTypeUrl);
  if (!retry.has_value()) return grpc::Status(code, message);
  tally::v1::RpcStatus details;
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(message);
  google::protobuf::Any* any = details.add_details();
  any->set_type_url(kRetryInfoTypeUrl);
  any->set_value(std::string(*retry));
  return grpc::Status(code, message, details.SerializeAsString());
}

}  // namespace tally::server
