#include "bench/load_generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/callback_driver.h"
#include "bench/encoded_client.h"
#include "bench/load_run.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace tally::bench {
namespace {

// One load client's connection and update: the SDK pushing a float32 delta,
// or an EncodedClient pushing a payload encoded up front.
class LoadClient {
 public:
  virtual ~LoadClient() = default;
  virtual absl::StatusOr<Task> GetTask(absl::Duration wait) = 0;
  // Pulls `task`'s model version; returns the model bytes received.
  virtual absl::StatusOr<uint64_t> Pull(const Task& task) = 0;
  // Pushes this client's update for `task`'s round and base version.
  virtual absl::StatusOr<PushResult> Push(const Task& task) = 0;
  virtual void Leave() = 0;
};

class SdkLoadClient final : public LoadClient {
 public:
  SdkLoadClient(std::unique_ptr<Client> client, std::vector<float> delta)
      : client_(std::move(client)), delta_(std::move(delta)) {}

  absl::StatusOr<Task> GetTask(absl::Duration wait) override { return client_->GetTask(wait); }
  absl::StatusOr<uint64_t> Pull(const Task& task) override {
    absl::StatusOr<Model> model = client_->PullModel(task.model_version);
    if (!model.ok()) return model.status();
    return model->payload_bytes;
  }
  absl::StatusOr<PushResult> Push(const Task& task) override {
    Update update;
    update.round = task.round;
    update.base_version = task.model_version;
    update.num_samples = 1;
    update.delta = delta_;
    return client_->PushUpdate(update);
  }
  void Leave() override { client_->Leave().IgnoreError(); }

 private:
  std::unique_ptr<Client> client_;
  std::vector<float> delta_;
};

class EncodedLoadClient final : public LoadClient {
 public:
  EncodedLoadClient(std::unique_ptr<EncodedClient> client, compress::CodecSpec spec,
                    std::string payload)
      : client_(std::move(client)), spec_(spec), payload_(std::move(payload)) {}

  absl::StatusOr<Task> GetTask(absl::Duration wait) override { return client_->GetTask(wait); }
  absl::StatusOr<uint64_t> Pull(const Task& task) override {
    return client_->Pull(task.model_version);
  }
  absl::StatusOr<PushResult> Push(const Task& task) override {
    return client_->Push(task.round, task.model_version, spec_, payload_);
  }
  void Leave() override { client_->Leave().IgnoreError(); }

 private:
  std::unique_ptr<EncodedClient> client_;
  const compress::CodecSpec spec_;
  const std::string payload_;
};

// Polls GetTask until a TRAIN task for a round after `last_round` (if any) or
// DONE arrives.
absl::StatusOr<Task> AwaitNextTask(LoadClient& client, bool has_last, uint64_t last_round,
                                   const LoadOptions& options, const RunState& state) {
  const absl::Time deadline = absl::Now() + options.round_timeout;
  while (true) {
    if (state.stopped()) return absl::CancelledError("run aborted");
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no task for the next round within ",
                                                      absl::FormatDuration(options.round_timeout)));
    }
    absl::StatusOr<Task> task = client.GetTask(options.task_wait);
    if (!task.ok()) return task.status();
    if (task->kind == Task::Kind::kDone) return task;
    if (task->kind == Task::Kind::kTrain && (!has_last || task->round > last_round)) return task;
    // WAIT, or TRAIN for the round this client already pushed to.
    absl::SleepFor(std::clamp(task->retry_after, absl::Milliseconds(5), absl::Seconds(1)));
  }
}

// Client creation, Join, delta generation and, with a codec, its encoding.
absl::StatusOr<std::unique_ptr<LoadClient>> SetUpClient(int index, const LoadOptions& options) {
  const std::string client_id = ClientId(index, options);
  const std::string& target = TargetOf(index, options);
  const uint64_t delta_seed = DeltaSeed(index, options);
  std::vector<float> delta = RandomDelta(options.params, delta_seed);
  if (options.codec.has_value()) {
    compress::CodecSpec spec = *options.codec;
    spec.seed = delta_seed;  // qsgd rounding, randk selection.
    std::string payload;
    TALLY_RETURN_IF_ERROR(compress::Encode(spec, delta, &payload));
    TALLY_ASSIGN_OR_RETURN(std::unique_ptr<EncodedClient> client,
                           EncodedClient::Create(target, client_id, options.chunk_bytes,
                                                                 options.connection_per_client));
    TALLY_ASSIGN_OR_RETURN(JoinResult joined, client->Join(spec));
    TALLY_RETURN_IF_ERROR(CheckParams(joined.model.num_params, options));
    return std::make_unique<EncodedLoadClient>(std::move(client), spec, std::move(payload));
  }
  ClientOptions client_options;
  client_options.target = target;
  client_options.client_id = client_id;
  client_options.chunk_bytes = options.chunk_bytes;
  client_options.own_connection = options.connection_per_client;
  // The SDK seed stays 0 (random): a fixed one would repeat update ids in a
  // second run against the same server, which would then be duplicates.
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(client_options));
  TALLY_ASSIGN_OR_RETURN(JoinResult joined, client->Join());
  TALLY_RETURN_IF_ERROR(CheckParams(joined.model.num_params, options));
  return std::make_unique<SdkLoadClient>(std::move(client), std::move(delta));
}

void RunClient(int index, const LoadOptions& options, RunState& state, ClientReport* report) {
  const std::string name = absl::StrCat("client ", ClientId(index, options), ": ");
  auto fail = [&](const absl::Status& status) {
    state.Fail(absl::Status(status.code(), absl::StrCat(name, status.message())));
  };
  absl::StatusOr<std::unique_ptr<LoadClient>> client = SetUpClient(index, options);
  if (!client.ok()) fail(client.status());
  if (state.Arrive()) {
    if (options.on_all_joined && !state.stopped()) options.on_all_joined();
    state.Release();
  }
  state.WaitForRelease();
  if (state.stopped()) return;

  const int total_rounds = options.warmup_rounds + options.rounds;
  bool has_last = false;
  uint64_t last_round = 0;
  for (int r = 0; r < total_rounds; ++r) {
    absl::StatusOr<Task> task =
        AwaitNextTask(**client, has_last && !options.async, last_round, options, state);
    if (task.ok() && task->kind == Task::Kind::kDone) {
      task = absl::FailedPreconditionError(
          "the server answered DONE (its rounds.total_rounds ended the federation)");
    }
    if (!task.ok()) return fail(task.status());
    const bool measured = r >= options.warmup_rounds;
    if (options.pull) {
      const double start = state.Now();
      absl::StatusOr<uint64_t> pulled = (*client)->Pull(*task);
      const double end = state.Now();
      if (!pulled.ok()) return fail(pulled.status());
      if (measured) report->pulls.push_back({r - options.warmup_rounds, start, end, *pulled});
    }
    const double start = state.Now();
    absl::StatusOr<PushResult> pushed = (*client)->Push(*task);
    const double end = state.Now();
    if (!pushed.ok()) return fail(pushed.status());
    if (measured) {
      report->pushes.push_back({r - options.warmup_rounds, start, end,
                                pushed->duplicate ? 0 : pushed->payload_bytes, pushed->duplicate,
                                pushed->attempts});
    }
    has_last = true;
    last_round = task->round;
  }
  // The next task (or DONE) means the last round has been applied (async:
  // that the client may go on; FedAsync applies its update first).
  if (AwaitNextTask(**client, has_last && !options.async, last_round, options, state).ok()) {
    report->final_seen = state.Now();
  }
  (*client)->Leave();
}

// The client for Admin GetStatus after the run. Created before the load
// clients: while it holds a channel gRPC stays initialised, so the last load
// client's destruction does not run gRPC's library shutdown, which sometimes
// blocks for ~10 s (seen with Debian's gRPC 1.51) and skewed total_seconds.
absl::StatusOr<std::unique_ptr<Client>> NewAdminClient(const LoadOptions& options) {
  ClientOptions admin_options;
  admin_options.target = options.target;
  admin_options.client_id = "bench-admin";
  admin_options.seed = options.seed;
  return Client::Create(admin_options);
}

void FetchServerStatus(absl::StatusOr<std::unique_ptr<Client>>& admin, LoadResult* result) {
  absl::StatusOr<ServerStatusInfo> status =
      admin.ok() ? (*admin)->GetServerStatus() : admin.status();
  if (status.ok()) {
    result->has_server_status = true;
    result->server_status = *status;
  } else {
    result->server_status_error = status.status().ToString();
  }
}

}  // namespace

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, double(sorted.size()))) - 1;
  return sorted[index];
}

absl::Status ValidateLoadOptions(const LoadOptions& options) {
  if (options.clients < 1) return absl::InvalidArgumentError("clients must be >= 1");
  if (options.params < 1) return absl::InvalidArgumentError("params must be >= 1");
  if (options.rounds < 1) return absl::InvalidArgumentError("rounds must be >= 1");
  if (options.warmup_rounds < 0) return absl::InvalidArgumentError("warmup_rounds must be >= 0");
  if (options.chunk_bytes < 1024) return absl::InvalidArgumentError("chunk_bytes must be >= 1024");
  if (options.driver_threads < 1) return absl::InvalidArgumentError("driver_threads must be >= 1");
  if (options.codec.has_value()) {
    if (absl::Status valid = compress::ValidateSpec(*options.codec, options.params); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("codec: ", valid.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options) {
  if (absl::Status valid = ValidateLoadOptions(options); !valid.ok()) return valid;
  absl::StatusOr<std::unique_ptr<Client>> admin = NewAdminClient(options);
  RunState state(options.clients, options.stop);
  std::vector<ClientReport> reports(options.clients);
  if (options.driver == LoadOptions::Driver::kCallback) {
    RunCallbackClients(options, state, reports);
  } else {
    std::vector<std::thread> threads;
    threads.reserve(options.clients);
    for (int i = 0; i < options.clients; ++i) {
      threads.emplace_back(RunClient, i, std::cref(options), std::ref(state), &reports[i]);
    }
    for (std::thread& thread : threads) thread.join();
  }
  if (absl::Status error = state.first_error(); !error.ok()) return error;
  if (state.stopped()) return absl::CancelledError("interrupted");

  absl::StatusOr<LoadResult> result = Summarize(options, reports);
  if (!result.ok()) return result;
  result->total_seconds = state.Now();
  result->setup_seconds = state.setup_seconds();
  FetchServerStatus(admin, &*result);
  return result;
}

}  // namespace tally::bench
