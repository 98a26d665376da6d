// The C API (tally/tally_c.h) over tally::Client. Each entry point converts
// its arguments, calls the C++ SDK inside Guarded() (which turns a status
// or an escaping exception into a tally_code and the caller's tally_error),
// and copies results into the caller's structs.

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/sync.h"
#include "tally/client.h"
#include "tally/tally_c.h"

struct tally_options {
  tally::ClientOptions options;
};

struct tally_client {
  std::unique_ptr<tally::Client> client;
  tally::Mutex mu;
  std::optional<tally::ModelInfo> model ABSL_GUARDED_BY(mu);  // As of the last join.
};

namespace {

// Copies `text` into dst[0, capacity), truncated and NUL-terminated.
void CopyString(absl::string_view text, char* dst, size_t capacity) {
  const size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(dst, text.data(), n);
  dst[n] = '\0';
}

int Report(const absl::Status& status, tally_error* error) {
  const int code = static_cast<int>(status.code());
  if (error != nullptr) {
    error->code = code;
    CopyString(status.message(), error->message, sizeof(error->message));
    const std::optional<absl::Duration> hint = tally::RetryAfter(status);
    error->retry_after_ms = hint.has_value() ? absl::ToInt64Milliseconds(*hint) : -1;
  }
  return code;
}

// Runs fn() -> absl::Status; no exception leaves.
template <typename Fn>
int Guarded(tally_error* error, Fn&& fn) {
  absl::Status status;
  try {
    status = fn();
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError("out of memory");
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
  } catch (...) {
    status = absl::InternalError("unexpected exception");
  }
  return Report(status, error);
}

absl::Status NullArgument(const char* name) {
  return absl::InvalidArgumentError(absl::StrCat(name, " is NULL"));
}

template <typename T>
absl::Status ParseNumber(absl::string_view name, absl::string_view text, T* out) {
  bool parsed;
  if constexpr (std::is_floating_point_v<T>) {
    parsed = absl::SimpleAtod(text, out);
  } else {
    parsed = absl::SimpleAtoi(text, out);
  }
  if (parsed) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("option ", name, ": '", text, "' is not a valid number"));
}

absl::Status ParseMillis(absl::string_view name, absl::string_view text, absl::Duration* out) {
  int64_t ms = 0;
  if (absl::Status s = ParseNumber(name, text, &ms); !s.ok()) return s;
  *out = absl::Milliseconds(ms);
  return absl::OkStatus();
}

using Setter = std::function<absl::Status(tally::ClientOptions&, absl::string_view)>;
using tally::ClientOptions;

Setter Text(std::string ClientOptions::*field) {
  return [field](ClientOptions& o, absl::string_view v) {
    o.*field = std::string(v);
    return absl::OkStatus();
  };
}

Setter List(std::vector<std::string> ClientOptions::*field) {
  return [field](ClientOptions& o, absl::string_view v) {
    o.*field = absl::StrSplit(v, ',', absl::SkipEmpty());
    return absl::OkStatus();
  };
}

template <typename T>
Setter Number(const char* name, T ClientOptions::*field) {
  return [name, field](ClientOptions& o, absl::string_view v) {
    return ParseNumber(name, v, &(o.*field));
  };
}

Setter Millis(const char* name, absl::Duration ClientOptions::*field) {
  return [name, field](ClientOptions& o, absl::string_view v) {
    return ParseMillis(name, v, &(o.*field));
  };
}

// The options tally_options_set knows, by name.
const std::map<std::string, Setter>& Setters() {
  static const auto* setters = new std::map<std::string, Setter>{
      {"target", Text(&ClientOptions::target)},
      {"client_id", Text(&ClientOptions::client_id)},
      {"tls_ca_file", Text(&ClientOptions::tls_ca_file)},
      {"tls_server_name", Text(&ClientOptions::tls_server_name)},
      {"tls_cert_file", Text(&ClientOptions::tls_cert_file)},
      {"tls_key_file", Text(&ClientOptions::tls_key_file)},
      {"auth_token", Text(&ClientOptions::auth_token)},
      {"upload_codecs", List(&ClientOptions::upload_codecs)},
      {"download_codecs", List(&ClientOptions::download_codecs)},
      {"seed", Number("seed", &ClientOptions::seed)},
      {"max_attempts", Number("max_attempts", &ClientOptions::max_attempts)},
      {"backoff_multiplier", Number("backoff_multiplier", &ClientOptions::backoff_multiplier)},
      {"chunk_bytes", Number("chunk_bytes", &ClientOptions::chunk_bytes)},
      {"max_bandwidth_bytes_per_s",
       Number("max_bandwidth_bytes_per_s", &ClientOptions::max_bandwidth_bytes_per_s)},
      {"initial_backoff_ms", Millis("initial_backoff_ms", &ClientOptions::initial_backoff)},
      {"max_backoff_ms", Millis("max_backoff_ms", &ClientOptions::max_backoff)},
      {"call_timeout_ms", Millis("call_timeout_ms", &ClientOptions::call_timeout)},
      {"transfer_timeout_ms", Millis("transfer_timeout_ms", &ClientOptions::transfer_timeout)},
      {"error_feedback",
       [](ClientOptions& o, absl::string_view v) {
         if (v != "0" && v != "1")
           return absl::InvalidArgumentError("option error_feedback: 0 or 1");
         o.error_feedback = v == "1";
         return absl::OkStatus();
       }},
  };
  return *setters;
}

void FillJoinInfo(const tally::JoinResult& join, tally_join_info* info) {
  *info = tally_join_info{};
  info->model_version = join.model_version;
  info->num_params = join.model.num_params;
  info->layout_hash = join.model.layout_hash;
  info->num_tensors = static_cast<uint32_t>(join.model.tensors.size());
  info->max_chunk_bytes = join.max_chunk_bytes;
  info->max_update_bytes = join.max_update_bytes;
  info->heartbeat_interval_ms = absl::ToInt64Milliseconds(join.heartbeat_interval);
  CopyString(join.upload_codec, info->upload_codec, sizeof(info->upload_codec));
  CopyString(join.download_codec, info->download_codec, sizeof(info->download_codec));
}

absl::Status FillTensorInfo(const tally::TensorInfo& tensor, tally_tensor_info* info) {
  if (tensor.name.size() >= sizeof(info->name) || tensor.shape.size() > TALLY_MAX_DIMS) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "tensor '", tensor.name, "': its name or rank does not fit tally_tensor_info"));
  }
  *info = tally_tensor_info{};
  CopyString(tensor.name, info->name, sizeof(info->name));
  info->ndim = static_cast<uint32_t>(tensor.shape.size());
  std::copy(tensor.shape.begin(), tensor.shape.end(), info->shape);
  info->offset = tensor.offset;
  info->size = tensor.size;
  return absl::OkStatus();
}

tally::Update UpdateFrom(const tally_update& in) {
  tally::Update update;
  update.round = in.round;
  update.base_version = in.base_version;
  update.num_samples = in.num_samples;
  update.local_steps = in.local_steps;
  update.delta = absl::MakeConstSpan(in.delta, in.delta_len);
  if (in.update_id != nullptr) update.update_id = in.update_id;
  return update;
}

void FillPushResult(const tally::PushResult& pushed, tally_push_result* result) {
  *result = tally_push_result{};
  CopyString(pushed.update_id, result->update_id, sizeof(result->update_id));
  result->duplicate = pushed.duplicate ? 1 : 0;
  result->round = pushed.round;
  result->model_version = pushed.model_version;
  result->attempts = pushed.attempts;
  result->payload_bytes = pushed.payload_bytes;
}

}  // namespace

extern "C" {

const char* tally_sdk_version(void) { return tally::kSdkVersion; }

const char* tally_code_name(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  if (code < 0 || code >= static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) return "UNKNOWN";
  return kNames[code];
}

tally_options* tally_options_create(void) { return new (std::nothrow) tally_options(); }

void tally_options_destroy(tally_options* options) { delete options; }

int tally_options_set(tally_options* options, const char* name, const char* value,
                      tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (options == nullptr) return NullArgument("options");
    if (name == nullptr || value == nullptr) return NullArgument("name or value");
    const auto it = Setters().find(name);
    if (it == Setters().end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", name, "'"));
    }
    tally::ClientOptions changed = options->options;
    if (absl::Status s = it->second(changed, value); !s.ok()) return s;
    options->options = std::move(changed);
    return absl::OkStatus();
  });
}

tally_client* tally_client_create(const tally_options* options, tally_error* error) {
  tally_client* result = nullptr;
  Guarded(error, [&]() -> absl::Status {
    if (options == nullptr) return NullArgument("options");
    absl::StatusOr<std::unique_ptr<tally::Client>> client = tally::Client::Create(options->options);
    if (!client.ok()) return client.status();
    auto handle = std::make_unique<tally_client>();
    handle->client = *std::move(client);
    result = handle.release();
    return absl::OkStatus();
  });
  return result;
}

void tally_client_destroy(tally_client* client) {
  try {
    delete client;
  } catch (...) {  // A destructor that throws: nothing to report it to.
  }
}

int tally_client_join(tally_client* client, tally_join_info* info, tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr) return NullArgument("client");
    absl::StatusOr<tally::JoinResult> joined = client->client->Join();
    if (!joined.ok()) return joined.status();
    {
      tally::MutexLock lock(&client->mu);
      client->model = joined->model;
    }
    if (info != nullptr) FillJoinInfo(*joined, info);
    return absl::OkStatus();
  });
}

int tally_client_tensor(tally_client* client, uint32_t index, tally_tensor_info* info,
                        tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr || info == nullptr) return NullArgument("client or info");
    tally::MutexLock lock(&client->mu);
    if (!client->model.has_value()) {
      return absl::FailedPreconditionError("tally_client_tensor: call tally_client_join first");
    }
    if (index >= client->model->tensors.size()) {
      return absl::OutOfRangeError(
          absl::StrCat("tensor ", index, " of ", client->model->tensors.size()));
    }
    return FillTensorInfo(client->model->tensors[index], info);
  });
}

int tally_client_get_task(tally_client* client, int64_t wait_ms, tally_task* task,
                          tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr || task == nullptr) return NullArgument("client or task");
    absl::StatusOr<tally::Task> got = client->client->GetTask(absl::Milliseconds(wait_ms));
    if (!got.ok()) return got.status();
    *task = tally_task{};
    // The C API has no ReportEvaluation yet: an EVALUATE task is a WAIT to
    // it (the server's evaluation then closes at its timeout without it).
    task->kind = got->kind == tally::Task::Kind::kTrain ? TALLY_TASK_TRAIN
                 : got->kind == tally::Task::Kind::kDone ? TALLY_TASK_DONE
                                                         : TALLY_TASK_WAIT;
    task->round = got->round;
    task->model_version = got->model_version;
    task->local_steps = got->local_steps;
    task->retry_after_ms = absl::ToInt64Milliseconds(got->retry_after);
    return absl::OkStatus();
  });
}

int tally_client_pull_model(tally_client* client, uint64_t version, float* params, size_t capacity,
                            tally_model_info* info, tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr || params == nullptr) return NullArgument("client or params");
    absl::StatusOr<tally::Model> model = client->client->PullModel(version);
    if (!model.ok()) return model.status();
    if (capacity < model->params.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tally_client_pull_model: the model has ",
                                                     model->params.size(), " floats, the buffer ",
                                                     capacity));
    }
    std::copy(model->params.begin(), model->params.end(), params);
    if (info != nullptr)
      *info = tally_model_info{model->version, model->round, model->payload_bytes};
    return absl::OkStatus();
  });
}

int tally_client_push_update(tally_client* client, const tally_update* update,
                             tally_push_result* result, tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr || update == nullptr) return NullArgument("client or update");
    if (update->delta == nullptr && update->delta_len > 0) return NullArgument("update->delta");
    absl::StatusOr<tally::PushResult> pushed = client->client->PushUpdate(UpdateFrom(*update));
    if (!pushed.ok()) return pushed.status();
    if (result != nullptr) FillPushResult(*pushed, result);
    return absl::OkStatus();
  });
}

int tally_client_wait_for_version(tally_client* client, uint64_t after_version, int64_t timeout_ms,
                                  uint64_t* version, tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr) return NullArgument("client");
    absl::StatusOr<uint64_t> seen =
        client->client->WaitForVersion(after_version, absl::Milliseconds(timeout_ms));
    if (!seen.ok()) return seen.status();
    if (version != nullptr) *version = *seen;
    return absl::OkStatus();
  });
}

int tally_client_heartbeat(tally_client* client, tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr) return NullArgument("client");
    return client->client->Heartbeat();
  });
}

int tally_client_leave(tally_client* client, tally_error* error) {
  return Guarded(error, [&]() -> absl::Status {
    if (client == nullptr) return NullArgument("client");
    return client->client->Leave();
  });
}

}  // extern "C"
