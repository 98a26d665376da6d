#include "bench/callback_driver.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_messages.h"
#include "core/sync.h"
#include "bench/push_call.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::bench {
namespace {

constexpr int kMaxPushAttempts = 6;
constexpr absl::Duration kTaskCallSlack = absl::Seconds(30);  // GetTask deadline past its wait.

// Runs closures on a few threads of its own, at once or after a delay.
// Thread-safe. Stop() (also the destructor) drops what has not run yet.
class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Scheduler(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back(&Scheduler::Run, this);
  }
  ~Scheduler() { Stop(); }

  void Post(std::function<void()> fn) { PostAt(Clock::now(), std::move(fn)); }
  void PostAfter(absl::Duration delay, std::function<void()> fn) {
    PostAt(Clock::now() + absl::ToChronoNanoseconds(delay), std::move(fn));
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }

 private:
  struct Item {
    Clock::time_point at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Item& other) const {
      return at != other.at ? at > other.at : seq > other.seq;
    }
  };

  void PostAt(Clock::time_point at, std::function<void()> fn) {
    // Notified under the lock: a gRPC thread posting a client's last step
    // must be done with the scheduler before that step can end the run
    // (RunCallbackClients then destroys the scheduler).
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    queue_.push(Item{at, next_seq_++, std::move(fn)});
    cv_.notify_one();
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (queue_.top().at > Clock::now()) {
        cv_.wait_until(lock, queue_.top().at);
        continue;
      }
      std::function<void()> fn = std::move(const_cast<Item&>(queue_.top()).fn);
      queue_.pop();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  uint64_t next_seq_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// A channel and its stubs; one per client with connection_per_client, else
// one per target shared by its clients.
struct Connection {
  explicit Connection(const std::string& target, bool own) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    if (own) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    stub = v1::Aggregator::NewStub(channel);
    generic = std::make_unique<grpc::GenericStub>(channel);
  }
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Aggregator::Stub> stub;
  std::unique_ptr<grpc::GenericStub> generic;
};

// An update ready to push.
struct Payload {
  compress::CodecSpec spec;
  std::string bytes;
};

class CallbackClient;

// What the clients of one run share. Thread-safe.
class CallbackRun {
 public:
  CallbackRun(const LoadOptions& options, RunState& state)
      : options(options),
        state(state),
        update_id_prefix(RandomUpdateIdPrefix()),
        scheduler(std::max(1, options.driver_threads)) {}

  // Records the first error and cancels every client's call in flight.
  void Fail(absl::Status status);
  // A client joined (or failed to); the last one opens the rounds.
  void Arrived();
  void StartNextJoin();
  void ClientFinished() {
    if (finished_.fetch_add(1) + 1 == options.clients) all_done_.Notify();
  }
  void WaitUntilAllFinished() { all_done_.WaitForNotification(); }

  const LoadOptions& options;
  RunState& state;
  const std::string update_id_prefix;
  std::vector<std::unique_ptr<CallbackClient>> clients;  // Set before the first Join.
  Scheduler scheduler;

 private:
  std::atomic<int> next_join_{0};
  std::atomic<int> finished_{0};
  tally::Notification all_done_;
};

// One simulated client: one call in flight at a time, each completion
// continuing on the scheduler. Thread-safe where it must be: Cancel() may
// run concurrently with the client's own steps.
//
// A call's ClientContext holds a reference to the channel, so it is
// destroyed before the call's completion is posted: once the last client
// has finished, RunCallbackClients destroys the channels, and a context
// still alive on gRPC's callback thread would then run the last
// ~grpc::Channel there. gRPC 1.51 serves the callback API of every channel
// from one process-wide completion queue (on Linux) that the last channel's
// destructor shuts down, joining its threads and deleting it: from one of
// those threads the join fails and the thread goes on polling the deleted
// queue ("ref_counted.h:183 assertion failed: prior > 0").
class CallbackClient {
 public:
  CallbackClient(int index, CallbackRun* run, Connection* connection, const Payload* payload,
                 ClientReport* report)
      : run_(run), options_(run->options), connection_(connection), payload_(payload),
        report_(report) {
    session_.client_id = ClientId(index, options_);
    session_.chunk_bytes = options_.chunk_bytes;
  }

  bool joined() const { return joined_; }

  void StartJoin();
  void BeginRounds() { AwaitTask(); }

  void Cancel() {
    tally::MutexLock lock(&mu_);
    if (current_ != nullptr) current_->TryCancel();
  }

 private:
  class PullReactor;

  template <typename Request, typename Response>
  struct UnaryCall {
    grpc::ClientContext context;
    Request request;
    Response response;
  };

  // Starts a unary call through `start(async stub, context, request,
  // response, callback)` and continues with `then(result)` on the scheduler.
  template <typename Response, typename Request, typename Start>
  void CallUnary(const char* rpc, Request request, absl::Duration timeout, Start start,
                 std::function<void(absl::StatusOr<Response>)> then) {
    auto* call = new UnaryCall<Request, Response>();
    call->request = std::move(request);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    SetCurrent(&call->context);
    start(connection_->stub->async(), &call->context, &call->request, &call->response,
          [this, call, rpc, then = std::move(then)](grpc::Status status) {
            SetCurrent(nullptr);
            absl::StatusOr<Response> result =
                status.ok() ? absl::StatusOr<Response>(std::move(call->response))
                            : absl::StatusOr<Response>(FromGrpc(rpc, status));
            delete call;
            run_->scheduler.Post([then, result = std::move(result)] { then(result); });
          });
  }

  void SetCurrent(grpc::ClientContext* context) {
    tally::MutexLock lock(&mu_);
    current_ = context;
  }

  void OnJoined(const absl::StatusOr<v1::JoinResponse>& response);
  void AwaitTask();
  void RequestTask();
  void OnTask(const absl::StatusOr<Task>& task);
  bool IsNext(const Task& task) const {
    return !has_last_ || options_.async || task.round > last_round_;
  }
  void StartPull();
  void StartPush(uint32_t attempt);
  void OnPushed(uint32_t attempt, const absl::StatusOr<v1::PushUpdateResponse>& response);
  void Leave();
  void Fail(const absl::Status& status) {
    run_->Fail(absl::Status(status.code(), absl::StrCat("client ", session_.client_id, ": ",
                                                        status.message())));
    run_->ClientFinished();
  }

  CallbackRun* const run_;
  const LoadOptions& options_;
  Connection* const connection_;
  const Payload* const payload_;
  ClientReport* const report_;
  BenchSession session_;
  bool joined_ = false;

  // The rounds (touched only by this client's steps, one at a time).
  int round_ = 0;  // Warm-up rounds included.
  bool has_last_ = false;
  uint64_t last_round_ = 0;
  bool final_ = false;  // Past the last round: waiting for its publication.
  absl::Time await_deadline_;
  Task task_;
  double push_start_ = 0;
  uint64_t pushes_ = 0;

  // The push in flight's context (its other calls own theirs).
  std::unique_ptr<grpc::ClientContext> push_context_;

  tally::Mutex mu_;
  grpc::ClientContext* current_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// PullModel: reads every chunk, counting its data bytes.
class CallbackClient::PullReactor final : public grpc::ClientReadReactor<v1::ModelChunk> {
 public:
  PullReactor(CallbackClient* client, double start) : client_(client), start_(start) {}

  void Start(v1::PullModelRequest request, absl::Duration timeout) {
    request_ = std::move(request);
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    client_->SetCurrent(&context_);
    client_->connection_->stub->async()->PullModel(&context_, &request_, this);
    StartRead(&chunk_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    bytes_ += chunk_.data().size();
    StartRead(&chunk_);
  }

  void OnDone(const grpc::Status& status) override {
    client_->SetCurrent(nullptr);
    CallbackClient* client = client_;
    absl::Status result = FromGrpc("PullModel", status);
    const double start = start_;
    const uint64_t bytes = bytes_;
    delete this;
    client->run_->scheduler.Post([client, result, start, bytes] {
      if (!result.ok()) return client->Fail(result);
      if (client->round_ >= client->options_.warmup_rounds) {
        client->report_->pulls.push_back({client->round_ - client->options_.warmup_rounds, start,
                                          client->run_->state.Now(), bytes});
      }
      client->StartPush(1);
    });
  }

 private:
  CallbackClient* const client_;
  const double start_;
  grpc::ClientContext context_;
  v1::PullModelRequest request_;
  v1::ModelChunk chunk_;
  uint64_t bytes_ = 0;
};

void CallbackClient::StartJoin() {
  CallUnary<v1::JoinResponse>(
      "Join", JoinRequestFor(session_.client_id, payload_->spec), options_.round_timeout,
      [](auto* async, auto* context, auto* request, auto* response, auto done) {
        async->Join(context, request, response, std::move(done));
      },
      [this](const absl::StatusOr<v1::JoinResponse>& response) { OnJoined(response); });
}

void CallbackClient::OnJoined(const absl::StatusOr<v1::JoinResponse>& response) {
  absl::Status status = response.status();
  if (status.ok()) {
    absl::StatusOr<JoinResult> joined = JoinResultFrom(*response, payload_->spec, &session_);
    status = joined.ok() ? CheckParams(joined->model.num_params, options_) : joined.status();
  }
  joined_ = status.ok();
  if (!status.ok()) Fail(status);
  run_->StartNextJoin();
  run_->Arrived();
}

void CallbackClient::AwaitTask() {
  await_deadline_ = absl::Now() + options_.round_timeout;
  RequestTask();
}

void CallbackClient::RequestTask() {
  if (run_->state.stopped()) return run_->ClientFinished();
  if (absl::Now() > await_deadline_) {
    return Fail(absl::DeadlineExceededError(absl::StrCat(
        "no task for the next round within ", absl::FormatDuration(options_.round_timeout))));
  }
  CallUnary<v1::Task>(
      "GetTask", GetTaskRequestFor(session_, options_.task_wait),
      options_.task_wait + kTaskCallSlack,
      [](auto* async, auto* context, auto* request, auto* response, auto done) {
        async->GetTask(context, request, response, std::move(done));
      },
      [this](const absl::StatusOr<v1::Task>& response) {
        OnTask(response.ok() ? absl::StatusOr<Task>(TaskFrom(*response)) : response.status());
      });
}

void CallbackClient::OnTask(const absl::StatusOr<Task>& task) {
  if (!task.ok()) return Fail(task.status());
  const bool next = task->kind == Task::Kind::kTrain && IsNext(*task);
  if (final_ && (next || task->kind == Task::Kind::kDone)) {
    // The model with the last round applied is published.
    report_->final_seen = run_->state.Now();
    return Leave();
  }
  if (task->kind == Task::Kind::kDone) {
    return Fail(absl::FailedPreconditionError(
        "the server answered DONE (its rounds.total_rounds ended the federation)"));
  }
  if (!next) {  // WAIT, or TRAIN for the round this client already pushed to.
    run_->scheduler.PostAfter(
        std::clamp(task->retry_after, absl::Milliseconds(5), absl::Seconds(1)),
        [this] { RequestTask(); });
    return;
  }
  task_ = *task;
  if (options_.pull) return StartPull();
  StartPush(1);
}

void CallbackClient::StartPull() {
  auto* reactor = new PullReactor(this, run_->state.Now());
  reactor->Start(PullRequestFor(session_, task_.model_version), options_.round_timeout);
}

void CallbackClient::StartPush(uint32_t attempt) {
  if (attempt == 1) {
    push_start_ = run_->state.Now();
    ++pushes_;
  }
  const v1::UpdateHeader header = UpdateHeaderFor(
      session_, absl::StrCat("b", run_->update_id_prefix, "-", pushes_), task_.round,
      task_.model_version, payload_->spec, payload_->bytes.size());
  push_context_ = std::make_unique<grpc::ClientContext>();
  push_context_->set_deadline(absl::ToChronoTime(absl::Now() + options_.round_timeout));
  SetCurrent(push_context_.get());
  // The payload outlives the run: its chunks are sent from where it is.
  StartPushCall(
      *connection_->generic, push_context_.get(), header, payload_->bytes, session_.chunk_bytes,
      wire::ChunkWriter::Data::kBorrow,
      [this, attempt](const grpc::Status& status, v1::PushUpdateResponse response) {
        SetCurrent(nullptr);
        push_context_.reset();  // Before the post: see the class comment.
        absl::StatusOr<v1::PushUpdateResponse> result =
            status.ok() ? absl::StatusOr<v1::PushUpdateResponse>(std::move(response))
                        : absl::StatusOr<v1::PushUpdateResponse>(FromGrpc("PushUpdate", status));
        run_->scheduler.Post(
            [this, attempt, result = std::move(result)] { OnPushed(attempt, result); });
      });
}

void CallbackClient::OnPushed(uint32_t attempt,
                              const absl::StatusOr<v1::PushUpdateResponse>& response) {
  const absl::Status status = response.status();
  const bool duplicate = absl::IsAlreadyExists(status);  // A retry of an accepted update.
  if (!status.ok() && !duplicate) {
    if ((absl::IsResourceExhausted(status) || absl::IsUnavailable(status)) &&
        attempt < kMaxPushAttempts && !run_->state.stopped()) {
      run_->scheduler.PostAfter(absl::Milliseconds(50) * attempt,
                                [this, attempt] { StartPush(attempt + 1); });
      return;
    }
    return Fail(status);
  }
  if (round_ >= options_.warmup_rounds) {
    report_->pushes.push_back({round_ - options_.warmup_rounds, push_start_, run_->state.Now(),
                               duplicate ? 0 : payload_->bytes.size(), duplicate, attempt});
  }
  has_last_ = true;
  last_round_ = task_.round;
  final_ = ++round_ == options_.warmup_rounds + options_.rounds;
  AwaitTask();
}

void CallbackClient::Leave() {
  CallUnary<v1::LeaveResponse>(
      "Leave", LeaveRequestFor(session_), absl::Seconds(10),
      [](auto* async, auto* context, auto* request, auto* response, auto done) {
        async->Leave(context, request, response, std::move(done));
      },
      [this](const absl::StatusOr<v1::LeaveResponse>&) { run_->ClientFinished(); });
}

void CallbackRun::Fail(absl::Status status) {
  state.Fail(std::move(status));
  scheduler.Post([this] {
    for (const std::unique_ptr<CallbackClient>& client : clients) client->Cancel();
  });
}

void CallbackRun::Arrived() {
  if (!state.Arrive()) return;
  if (options.on_all_joined && !state.stopped()) options.on_all_joined();
  state.Release();
  for (const std::unique_ptr<CallbackClient>& client : clients) {
    if (client->joined()) {
      CallbackClient* c = client.get();
      scheduler.Post([c] { c->BeginRounds(); });
    }
  }
}

void CallbackRun::StartNextJoin() {
  const int index = next_join_.fetch_add(1);
  if (index < options.clients) clients[index]->StartJoin();
}

// The payloads: client i's delta as float32 or in options.codec, for the
// first kMaxDistinctPayloads clients.
absl::StatusOr<std::vector<Payload>> MakePayloads(const LoadOptions& options) {
  std::vector<Payload> payloads(std::min(options.clients, kMaxDistinctPayloads));
  for (size_t i = 0; i < payloads.size(); ++i) {
    const int index = static_cast<int>(i);
    payloads[i].spec = options.codec.value_or(compress::DefaultSpec(compress::CodecId::kFloat32));
    payloads[i].spec.seed = DeltaSeed(index, options);  // qsgd rounding, randk selection.
    const std::vector<float> delta = RandomDelta(options.params, DeltaSeed(index, options));
    if (absl::Status encoded = compress::Encode(payloads[i].spec, delta, &payloads[i].bytes);
        !encoded.ok()) {
      return encoded;
    }
  }
  return payloads;
}

}  // namespace

void RunCallbackClients(const LoadOptions& options, RunState& state,
                        std::vector<ClientReport>& reports) {
  absl::StatusOr<std::vector<Payload>> payloads = MakePayloads(options);
  if (!payloads.ok()) return state.Fail(payloads.status());
  // Connections, then clients, then the scheduler's threads stop first.
  std::vector<std::unique_ptr<Connection>> connections;
  std::map<std::string, Connection*> shared;
  CallbackRun run(options, state);
  for (int i = 0; i < options.clients; ++i) {
    const std::string& target = TargetOf(i, options);
    Connection* connection = nullptr;
    if (options.connection_per_client) {
      connections.push_back(std::make_unique<Connection>(target, /*own=*/true));
      connection = connections.back().get();
    } else if (auto it = shared.find(target); it != shared.end()) {
      connection = it->second;
    } else {
      connections.push_back(std::make_unique<Connection>(target, /*own=*/false));
      connection = shared[target] = connections.back().get();
    }
    run.clients.push_back(std::make_unique<CallbackClient>(
        i, &run, connection, &(*payloads)[static_cast<size_t>(i) % payloads->size()],
        &reports[i]));
  }
  for (int i = 0; i < std::min(options.clients, kJoinWindow); ++i) {
    run.scheduler.Post([&run] { run.StartNextJoin(); });
  }
  run.WaitUntilAllFinished();
  run.scheduler.Stop();
}

}  // namespace tally::bench
