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
#include "bench/encoded_client.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace tally::bench {
namespace {

struct PushSample {
  int round_index = 0;        // Among the measured rounds.
  double start = 0, end = 0;  // Seconds since the run's epoch.
  uint64_t bytes = 0;         // 0 for duplicates.
  bool duplicate = false;
  uint32_t attempts = 0;
};

struct ClientReport {
  std::vector<PushSample> samples;
  // When this client saw a task past its last measured round (the model with
  // that round applied is published); < 0 if it did not.
  double final_seen = -1;
};

// Shared state of one run: the first error, the stop flag and the start barrier.
class RunState {
 public:
  RunState(int clients, const std::atomic<bool>* external_stop)
      : clients_(clients), external_stop_(external_stop), epoch_(Clock::now()) {}

  // Records the first error and stops every client.
  void Fail(absl::Status status) {
    tally::MutexLock lock(&mu_);
    if (first_error_.ok()) first_error_ = std::move(status);
    failed_.store(true);
  }
  absl::Status first_error() const {
    tally::MutexLock lock(&mu_);
    return first_error_;
  }
  bool stopped() const {
    return failed_.load() || (external_stop_ != nullptr && external_stop_->load());
  }

  // Every client calls this exactly once; returns when all have.
  void ArriveAndWait() {
    tally::MutexLock lock(&mu_);
    if (++arrived_ == clients_) setup_seconds_ = Now();
    mu_.Await(absl::Condition(this, &RunState::AllArrived));
  }

  // When the last client arrived at the start barrier.
  double setup_seconds() const {
    tally::MutexLock lock(&mu_);
    return setup_seconds_;
  }

  double Now() const { return std::chrono::duration<double>(Clock::now() - epoch_).count(); }

 private:
  using Clock = std::chrono::steady_clock;

  bool AllArrived() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return arrived_ == clients_; }

  const int clients_;
  const std::atomic<bool>* const external_stop_;
  const Clock::time_point epoch_;
  std::atomic<bool> failed_{false};
  mutable tally::Mutex mu_;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  double setup_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

// n floats uniform in [-1e-3, 1e-3), from a splitmix64 stream (fast enough to
// fill gigabytes of deltas in a second or two).
std::vector<float> RandomDelta(size_t n, uint64_t seed) {
  std::vector<float> delta(n);
  uint64_t state = seed;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    delta[i] = (static_cast<float>(z >> 40) * 0x1p-24f - 0.5f) * 2e-3f;
  }
  return delta;
}

// One load client's connection and update: the SDK pushing a float32 delta,
// or an EncodedClient pushing a payload encoded up front.
class LoadClient {
 public:
  virtual ~LoadClient() = default;
  virtual absl::StatusOr<Task> GetTask(absl::Duration wait) = 0;
  // Pushes this client's update for `task`'s round and base version.
  virtual absl::StatusOr<PushResult> Push(const Task& task) = 0;
  virtual void Leave() = 0;
};

class SdkLoadClient final : public LoadClient {
 public:
  SdkLoadClient(std::unique_ptr<Client> client, std::vector<float> delta)
      : client_(std::move(client)), delta_(std::move(delta)) {}

  absl::StatusOr<Task> GetTask(absl::Duration wait) override { return client_->GetTask(wait); }
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

absl::Status CheckParams(uint64_t server_params, const LoadOptions& options) {
  if (server_params == options.params) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("the server's model has ", server_params,
                                                    " parameters but --params=", options.params));
}

const std::string& TargetOf(int index, const LoadOptions& options) {
  if (options.client_targets.empty()) return options.target;
  return options.client_targets[static_cast<size_t>(index) % options.client_targets.size()];
}

// Client creation, Join, delta generation and, with a codec, its encoding.
absl::StatusOr<std::unique_ptr<LoadClient>> SetUpClient(int index, const LoadOptions& options) {
  const std::string client_id = absl::StrCat("bench-", index);
  const std::string& target = TargetOf(index, options);
  const uint64_t delta_seed = options.seed * 1000003 + static_cast<uint64_t>(index) + 1;
  std::vector<float> delta = RandomDelta(options.params, delta_seed);
  if (options.codec.has_value()) {
    compress::CodecSpec spec = *options.codec;
    spec.seed = delta_seed;  // qsgd rounding, randk selection.
    std::string payload;
    TALLY_RETURN_IF_ERROR(compress::Encode(spec, delta, &payload));
    TALLY_ASSIGN_OR_RETURN(std::unique_ptr<EncodedClient> client,
                           EncodedClient::Create(target, client_id, options.chunk_bytes));
    TALLY_ASSIGN_OR_RETURN(JoinResult joined, client->Join(spec));
    TALLY_RETURN_IF_ERROR(CheckParams(joined.model.num_params, options));
    return std::make_unique<EncodedLoadClient>(std::move(client), spec, std::move(payload));
  }
  ClientOptions client_options;
  client_options.target = target;
  client_options.client_id = client_id;
  client_options.chunk_bytes = options.chunk_bytes;
  // The SDK seed stays 0 (random): a fixed one would repeat update ids in a
  // second run against the same server, which would then be duplicates.
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(client_options));
  TALLY_ASSIGN_OR_RETURN(JoinResult joined, client->Join());
  TALLY_RETURN_IF_ERROR(CheckParams(joined.model.num_params, options));
  return std::make_unique<SdkLoadClient>(std::move(client), std::move(delta));
}

void RunClient(int index, const LoadOptions& options, RunState& state, ClientReport* report) {
  const std::string name = absl::StrCat("client bench-", index, ": ");
  auto fail = [&](const absl::Status& status) {
    state.Fail(absl::Status(status.code(), absl::StrCat(name, status.message())));
  };
  absl::StatusOr<std::unique_ptr<LoadClient>> client = SetUpClient(index, options);
  if (!client.ok()) fail(client.status());
  state.ArriveAndWait();
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
    const double start = state.Now();
    absl::StatusOr<PushResult> pushed = (*client)->Push(*task);
    const double end = state.Now();
    if (!pushed.ok()) return fail(pushed.status());
    if (r >= options.warmup_rounds) {
      report->samples.push_back({r - options.warmup_rounds, start, end,
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

absl::StatusOr<LoadResult> Summarize(const LoadOptions& options,
                                     const std::vector<ClientReport>& reports) {
  LoadResult result;
  std::vector<double> latencies;
  double first_start = std::numeric_limits<double>::infinity();
  double last_end = 0;
  double first_final = std::numeric_limits<double>::infinity();
  bool all_final = true;
  std::vector<std::pair<double, double>> rounds(options.rounds,
                                                {std::numeric_limits<double>::infinity(), 0.0});
  for (const ClientReport& report : reports) {
    all_final = all_final && report.final_seen >= 0;
    if (report.final_seen >= 0) first_final = std::min(first_final, report.final_seen);
    for (const PushSample& s : report.samples) {
      latencies.push_back(s.end - s.start);
      first_start = std::min(first_start, s.start);
      last_end = std::max(last_end, s.end);
      rounds[s.round_index].first = std::min(rounds[s.round_index].first, s.start);
      rounds[s.round_index].second = std::max(rounds[s.round_index].second, s.end);
      result.bytes_accepted += s.bytes;
      result.push_attempts += s.attempts;
      (s.duplicate ? result.updates_duplicate : result.updates_accepted) += 1;
    }
  }
  if (latencies.empty()) return absl::InternalError("no measured PushUpdate calls");
  result.push_wall_seconds = last_end - first_start;
  result.final_round_observed = all_final;
  const double end = all_final ? std::max(last_end, first_final) : last_end;
  result.wall_seconds = end - first_start;
  result.updates_per_second = result.updates_accepted / result.wall_seconds;
  result.mb_per_second = result.bytes_accepted / 1e6 / result.wall_seconds;
  result.represented_bytes = result.updates_accepted * options.params * sizeof(float);
  result.represented_gb_per_second = result.represented_bytes / 1e9 / result.wall_seconds;
  for (const auto& [start, stop] : rounds) result.round_seconds.push_back(stop - start);

  std::sort(latencies.begin(), latencies.end());
  result.latency_p50 = Percentile(latencies, 50);
  result.latency_p90 = Percentile(latencies, 90);
  result.latency_p99 = Percentile(latencies, 99);
  result.latency_max = latencies.back();
  double sum = 0;
  for (double l : latencies) sum += l;
  result.latency_mean = sum / latencies.size();
  return result;
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
  std::vector<std::thread> threads;
  threads.reserve(options.clients);
  for (int i = 0; i < options.clients; ++i) {
    threads.emplace_back(RunClient, i, std::cref(options), std::ref(state), &reports[i]);
  }
  for (std::thread& thread : threads) thread.join();
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
