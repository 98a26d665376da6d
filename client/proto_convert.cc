#include "client/proto_convert.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model_layout.h"

namespace tally {

double Task::ConfigNumber(const std::string& name, double fallback) const {
  auto it = config.find(name);
  if (it == config.end()) return fallback;
  const double* number = std::get_if<double>(&it->second);
  return number != nullptr ? *number : fallback;
}

std::string Task::ConfigText(const std::string& name, const std::string& fallback) const {
  auto it = config.find(name);
  if (it == config.end()) return fallback;
  const std::string* text = std::get_if<std::string>(&it->second);
  return text != nullptr ? *text : fallback;
}

namespace client_internal {

absl::Status FromGrpcStatus(absl::string_view rpc, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share the canonical numbering.
  const std::string& message = status.error_message();
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(rpc, ": ", message.empty() ? "(no message)" : message));
  // A retry hint (google.rpc.RetryInfo inside a google.rpc.Status) travels on
  // as a payload under its type URL; see RetryAfter() in tally/client.h.
  v1::RpcStatus details;
  if (!status.error_details().empty() && details.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : details.details()) {
      if (any.type_url() == kRetryInfoTypeUrl) result.SetPayload(kRetryInfoTypeUrl, absl::Cord(any.value()));
    }
  }
  return result;
}

absl::StatusOr<ModelInfo> ModelInfoFromSpec(const v1::ModelSpec& spec) {
  std::vector<ModelLayout::TensorDef> defs;
  defs.reserve(spec.tensors_size());
  for (const v1::TensorSpec& t : spec.tensors()) {
    if (t.dtype() != v1::DTYPE_FLOAT32 && t.dtype() != v1::DTYPE_UNSPECIFIED) {
      return absl::UnimplementedError(absl::StrCat("model_spec: tensor '", t.name(), "' has dtype ",
                                                   v1::DType_Name(t.dtype()),
                                                   "; this SDK supports float32 only"));
    }
    defs.push_back({t.name(), std::vector<int64_t>(t.shape().begin(), t.shape().end())});
  }
  absl::StatusOr<ModelLayout> layout = ModelLayout::Create(defs);
  if (!layout.ok()) {
    return absl::DataLossError(
        absl::StrCat("server sent an invalid model_spec: ", layout.status().message()));
  }
  if (layout->NumParams() != spec.num_params()) {
    return absl::DataLossError(absl::StrCat("model_spec.num_params mismatch: server says ",
                                            spec.num_params(), ", tensor shapes give ",
                                            layout->NumParams()));
  }
  if (layout->Hash() != spec.layout_hash()) {
    return absl::DataLossError(
        absl::StrFormat("model_spec.layout_hash mismatch: server says %#018x, layout gives %#018x",
                        spec.layout_hash(), layout->Hash()));
  }
  ModelInfo info;
  info.num_params = layout->NumParams();
  info.layout_hash = layout->Hash();
  info.tensors.reserve(layout->tensors().size());
  for (const TensorLayout& t : layout->tensors()) {
    info.tensors.push_back(TensorInfo{t.name, t.shape, t.offset, t.size});
  }
  return info;
}

Task TaskFromProto(const v1::Task& proto) {
  Task task;
  switch (proto.kind()) {
    case v1::Task::TRAIN:
      task.kind = Task::Kind::kTrain;
      break;
    case v1::Task::DONE:
      task.kind = Task::Kind::kDone;
      break;
    case v1::Task::EVALUATE:
      task.kind = Task::Kind::kEvaluate;
      break;
    default:  // WAIT, and anything newer than this SDK: ask again later.
      task.kind = Task::Kind::kWait;
      break;
  }
  task.round = proto.round();
  task.model_version = proto.model_version();
  task.local_steps = proto.local_steps();
  task.deadline = proto.deadline_unix_ms() == 0 ? absl::InfiniteFuture()
                                                : absl::FromUnixMillis(proto.deadline_unix_ms());
  task.retry_after = absl::Milliseconds(proto.retry_after_ms());
  for (const auto& [name, value] : proto.config()) {
    if (value.kind_case() == v1::ConfigValue::kText) {
      task.config.emplace(name, value.text());
    } else {
      task.config.emplace(name, value.number());
    }
  }
  task.evaluation_id = proto.evaluation().evaluation_id();
  return task;
}

ServerStatusInfo ServerStatusFromProto(const v1::ServerStatus& proto) {
  ServerStatusInfo info;
  info.model_version = proto.model_version();
  info.round = proto.round();
  info.rounds_completed = proto.rounds_completed();
  info.rounds_failed = proto.rounds_failed();
  info.connected_clients = proto.connected_clients();
  info.updates_in_round = proto.updates_in_round();
  info.uploads_in_flight = proto.uploads_in_flight();
  info.restored_version = proto.restored_version();
  info.restored_from = proto.restored_from();
  info.restored_clients = proto.restored_clients();
  info.checkpoint_version = proto.checkpoint_version();
  info.updates_accepted = proto.updates_accepted();
  info.updates_rejected = proto.updates_rejected();
  info.bytes_received = proto.bytes_received();
  info.peak_rss_bytes = proto.peak_rss_bytes();
  info.rss_bytes = proto.rss_bytes();
  info.done = proto.done();
  info.last_round_millis = proto.last_round_millis();
  info.server_version = proto.build().version();
  info.server_commit = proto.build().commit();
  info.server_build_type = proto.build().build_type();
  info.fit_metrics.insert(proto.fit_metrics().begin(), proto.fit_metrics().end());
  info.fit_metrics_round = proto.fit_metrics_round();
  info.evaluation_metrics.insert(proto.evaluation_metrics().begin(),
                                 proto.evaluation_metrics().end());
  info.evaluation_version = proto.evaluation_version();
  info.evaluations_completed = proto.evaluations_completed();
  info.metric_names_dropped = proto.metric_names_dropped();
  info.history_path = proto.history_path();
  info.privacy_epsilon = proto.privacy_epsilon();
  info.privacy_delta = proto.privacy_delta();
  info.privacy_steps = proto.privacy_steps();
  info.privacy_target_epsilon = proto.privacy_target_epsilon();
  info.privacy_clip_norm = proto.privacy_clip_norm();
  return info;
}

}  // namespace client_internal
}  // namespace tally
