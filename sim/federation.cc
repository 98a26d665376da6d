#include "sim/federation.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "sim/random.h"
#include "tally/client.h"

namespace tally::sim {

namespace {

// Long-poll budget of one GetTask; also bounds how long a client takes to
// notice that the run is over.
constexpr absl::Duration kTaskPoll = absl::Seconds(1);

// Seed streams (see DeriveSeed); the client index is added.
constexpr uint64_t kTrainSeedStream = uint64_t{1} << 32;
constexpr uint64_t kAttackSeedStream = uint64_t{2} << 32;

absl::Status CheckServerModel(const SoftmaxRegression& model, const ModelInfo& info) {
  std::vector<ModelLayout::TensorDef> defs;
  for (const TensorInfo& t : info.tensors) defs.push_back({t.name, t.shape});
  return model.CheckLayout(defs);
}

// `upload_codec`, if set, receives the codec the server assigned; only the
// training clients (which pass it) offer options.upload_codecs.
absl::StatusOr<std::unique_ptr<Client>> ConnectAndJoin(const FederationOptions& options,
                                                       const SoftmaxRegression& model,
                                                       std::string client_id,
                                                       std::string* upload_codec = nullptr) {
  ClientOptions client_options;
  client_options.target = options.target;
  client_options.client_id = std::move(client_id);
  client_options.chunk_bytes = options.chunk_bytes;
  if (upload_codec != nullptr) {
    client_options.upload_codecs = options.upload_codecs;
    client_options.error_feedback = options.error_feedback;
  }
  // The SDK seed drives retry jitter, update ids and through them the codec
  // seeds (qsgd rounding, randk selection), never the learning. By default
  // it differs between runs: a long-lived server deduplicates updates by
  // (client id, update id), so a second run that replayed the first run's ids
  // would have its updates acknowledged as duplicates and never counted.
  client_options.seed =
      options.sdk_seed == 0
          ? 0  // Random.
          : DeriveSeed(options.sdk_seed, std::hash<std::string>{}(client_options.client_id));
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(client_options));
  TALLY_ASSIGN_OR_RETURN(JoinResult join, client->Join());
  TALLY_RETURN_IF_ERROR(CheckServerModel(model, join.model));
  if (upload_codec != nullptr) *upload_codec = join.upload_codec;
  return client;
}

// State shared by the client threads and the driver: a stop flag, the number
// of clients still running, the first error, the newest round evaluated, and
// upload counts. Thread-safe.
class Fleet {
 public:
  void Fail(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);
    if (error_.ok()) error_ = std::move(status);
    stop_ = true;
  }
  absl::Status error() const ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);
    return error_;
  }
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);  // Wakes AwaitEvaluated.
    stop_ = true;
  }
  bool stopping() const { return stop_; }
  // The driver has evaluated the model of (server) round `round`.
  void SetEvaluated(uint64_t round) ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);
    evaluated_ = std::max(evaluated_, round);
  }
  // Blocks until round `round` has been evaluated or the fleet stops.
  void AwaitEvaluated(uint64_t round) ABSL_LOCKS_EXCLUDED(mu_) {
    struct Reached {
      const Fleet* fleet;
      uint64_t round;
      bool Done() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(fleet->mu_) {
        return fleet->stop_ || fleet->evaluated_ >= round;
      }
    } reached{this, round};
    tally::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&reached, &Reached::Done));
  }
  // Tasks for later rounds are not trained: the run ends with that round.
  void set_last_round(uint64_t round) { last_round_ = round; }
  uint64_t last_round() const { return last_round_; }
  std::atomic<int>& running() { return running_; }
  void CountRejected() { ++rejected_; }
  int rejected() const { return rejected_; }
  // An acknowledged push of `payload_bytes` (after compression).
  void CountPush(uint64_t payload_bytes) {
    upload_bytes_ += payload_bytes;
    ++pushes_;
  }
  uint64_t upload_bytes() const { return upload_bytes_; }
  uint64_t pushes() const { return pushes_; }
  // The first client's assigned upload codec wins (all offer the same).
  void SetUploadCodec(const std::string& codec) ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);
    if (upload_codec_.empty()) upload_codec_ = codec;
  }
  std::string upload_codec() const ABSL_LOCKS_EXCLUDED(mu_) {
    tally::MutexLock lock(&mu_);
    return upload_codec_;
  }

 private:
  mutable tally::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::string upload_codec_ ABSL_GUARDED_BY(mu_);
  uint64_t evaluated_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> running_{0};
  std::atomic<int> rejected_{0};
  std::atomic<uint64_t> upload_bytes_{0};
  std::atomic<uint64_t> pushes_{0};
  std::atomic<uint64_t> last_round_{~uint64_t{0}};
};

// One simulated client: Join, then GetTask / PullModel / train / PushUpdate
// until the server says DONE or the fleet stops.
class SimulatedClient {
 public:
  // `shards[k]` is what client k trains on (flipped labels for a label_flip
  // Byzantine client); a Byzantine client reads the other Byzantine shards
  // for the alie/ipm estimate.
  SimulatedClient(int index, const FederationOptions& options, const SoftmaxRegression& model,
                  const std::vector<Dataset>& shards, Fleet* fleet)
      : index_(index),
        options_(options),
        model_(model),
        shards_(shards),
        data_(shards[index]),
        fleet_(fleet) {}

  absl::Status Run() {
    std::string upload_codec;
    TALLY_ASSIGN_OR_RETURN(client_, ConnectAndJoin(options_, model_, ClientId(), &upload_codec));
    fleet_->SetUploadCodec(upload_codec);
    while (!fleet_->stopping()) {
      TALLY_ASSIGN_OR_RETURN(Task task, client_->GetTask(kTaskPoll));
      if (task.kind == Task::Kind::kDone) break;
      if (task.kind != Task::Kind::kTrain) continue;  // WAIT: the server long-polled.
      if (task.round > fleet_->last_round()) break;   // Beyond the run's last round.
      if (task.round == last_round_) {
        // Already pushed for this round; do not spin if asked again.
        absl::SleepFor(std::max(task.retry_after, absl::Milliseconds(50)));
        continue;
      }
      TALLY_RETURN_IF_ERROR(TrainAndPush(task));
    }
    client_->Leave().IgnoreError();  // Best effort: the server may be gone.
    return absl::OkStatus();
  }

  std::string ClientId() const { return SimClientId(index_); }

 private:
  absl::Status TrainAndPush(const Task& task) {
    if (options_.evaluate_every_round) {
      fleet_->AwaitEvaluated(task.round - 1);
      if (fleet_->stopping()) return absl::OkStatus();
    }
    absl::StatusOr<Model> base = client_->PullModel(task.model_version);
    if (IsRoundOver(base.status())) return absl::OkStatus();
    TALLY_RETURN_IF_ERROR(base.status());

    std::vector<float> local;
    TALLY_ASSIGN_OR_RETURN(TrainResult trained, HonestDelta(index_, *base, task, &local));
    if (byzantine()) {
      TALLY_ASSIGN_OR_RETURN(local, MaliciousDelta(*base, task, local));
    }

    Update update;
    update.round = task.round;
    update.base_version = base->version;
    update.num_samples = data_.size();
    update.local_steps = static_cast<uint32_t>(trained.steps);
    update.delta = local;
    update.metrics = {{"loss", trained.mean_loss}};
    absl::StatusOr<PushResult> pushed = client_->PushUpdate(update);
    if (IsRoundOver(pushed.status())) return absl::OkStatus();
    if (byzantine() && absl::IsInvalidArgument(pushed.status())) {
      // E.g. the NaN sender: the server refuses it, as it should. Count it
      // and do not retry this round.
      fleet_->CountRejected();
      last_round_ = task.round;
      return absl::OkStatus();
    }
    TALLY_RETURN_IF_ERROR(pushed.status());
    fleet_->CountPush(pushed->payload_bytes);
    last_round_ = task.round;
    return absl::OkStatus();
  }

  bool byzantine() const { return index_ < options_.byzantine; }

  // Client `k`'s honest delta (trained on shards_[k]) from `base` into `delta`.
  absl::StatusOr<TrainResult> HonestDelta(int k, const Model& base, const Task& task,
                                          std::vector<float>* delta) const {
    TrainOptions train = options_.train;
    train.seed = DeriveSeed(DeriveSeed(options_.train.seed, kTrainSeedStream + k), task.round);
    if (task.local_steps > 0) train.local_steps = static_cast<int>(task.local_steps);
    return TrainDelta(model_, shards_[k], train, base.params, delta);
  }

  // The malicious delta of this Byzantine client.
  absl::StatusOr<std::vector<float>> MaliciousDelta(const Model& base, const Task& task,
                                            const std::vector<float>& honest) const {
    DeltaStats stats;
    if (AttackNeedsStats(options_.attack)) {
      std::vector<std::vector<float>> rows(options_.byzantine);
      for (int k = 0; k < options_.byzantine; ++k) {
        if (k == index_) {
          rows[k] = honest;
          continue;
        }
        TALLY_RETURN_IF_ERROR(HonestDelta(k, base, task, &rows[k]).status());
      }
      TALLY_ASSIGN_OR_RETURN(stats, ComputeDeltaStats(rows));
    }
    AttackOptions attack_options = options_.attack_options;
    if (attack_options.num_clients == 0) {
      attack_options.num_clients = static_cast<int>(shards_.size());
    }
    if (attack_options.num_byzantine == 0) attack_options.num_byzantine = options_.byzantine;
    return ApplyAttack(options_.attack, attack_options, honest, &stats,
                       DeriveSeed(DeriveSeed(options_.train.seed, kAttackSeedStream + index_),
                                  task.round));
  }

  // The round closed or the base version moved on while this client worked:
  // not an error, just ask for the next task.
  static bool IsRoundOver(const absl::Status& status) {
    return absl::IsAborted(status) || absl::IsNotFound(status) ||
           absl::IsFailedPrecondition(status);
  }

  const int index_;
  const FederationOptions& options_;
  const SoftmaxRegression& model_;
  const std::vector<Dataset>& shards_;
  const Dataset& data_;
  Fleet* const fleet_;
  std::unique_ptr<Client> client_;
  uint64_t last_round_ = ~uint64_t{0};
};

// The driver's view: watches versions, evaluates, reports.
class Observer {
 public:
  Observer(const FederationOptions& options, const SoftmaxRegression& model, const Dataset& test,
           int num_clients, Fleet* fleet)
      : options_(options), model_(model), test_(test), num_clients_(num_clients), fleet_(fleet) {}

  // Joins and records round 0 (the current global model).
  absl::Status Start(FederationResult* result) {
    TALLY_ASSIGN_OR_RETURN(client_, ConnectAndJoin(options_, model_, "sim-observer"));
    TALLY_ASSIGN_OR_RETURN(ServerStatusInfo status, client_->GetServerStatus());
    TALLY_ASSIGN_OR_RETURN(Model initial, client_->PullModel(0));
    start_round_ = initial.round;
    bytes_ = status.bytes_received;
    start_time_ = last_time_ = absl::Now();
    if (options_.out != nullptr) absl::FPrintF(options_.out, "%s\n", FormatRoundHeader());
    return Record(initial, status, result);
  }

  uint64_t start_round() const { return start_round_; }

  // Reports every new version until max_rounds, the server's DONE, all
  // clients gone, or an error.
  absl::Status Watch(FederationResult* result) {
    while (result->rounds.back().round < options_.max_rounds && !result->server_done &&
           fleet_->error().ok()) {
      absl::StatusOr<uint64_t> version =
          client_->WaitForVersion(version_, options_.progress_interval);
      if (absl::IsDeadlineExceeded(version.status())) {
        TALLY_ASSIGN_OR_RETURN(ServerStatusInfo status, client_->GetServerStatus());
        if (IsFinal(status)) result->server_done = true;
        if (fleet_->running() == 0 && status.model_version == version_) break;
        ShowProgress(status);
        continue;
      }
      TALLY_RETURN_IF_ERROR(version.status());
      // Status first: clients start pushing the next round as soon as the
      // version is out, and their bytes belong to the next line.
      TALLY_ASSIGN_OR_RETURN(ServerStatusInfo status, client_->GetServerStatus());
      TALLY_ASSIGN_OR_RETURN(Model model, client_->PullModel(0));
      TALLY_RETURN_IF_ERROR(Record(model, status, result));
      if (IsFinal(status)) result->server_done = true;
    }
    ClearProgress();
    result->total_time = last_time_ - start_time_;
    return absl::OkStatus();
  }

 private:
  // DONE and nothing newer than what was already reported.
  bool IsFinal(const ServerStatusInfo& status) const {
    return status.done && status.model_version == version_;
  }

  absl::Status Record(const Model& model, const ServerStatusInfo& status,
                      FederationResult* result) {
    TALLY_ASSIGN_OR_RETURN(Evaluation test, model_.Evaluate(model.params, test_));
    const absl::Time now = absl::Now();
    RoundRecord record;
    record.round = static_cast<int>(model.round - start_round_);
    if (!result->rounds.empty()) {
      record.rounds_covered = record.round - result->rounds.back().round;
    }
    record.model_version = model.version;
    record.test = test;
    record.bytes_received = status.bytes_received - bytes_;
    record.wall_time = now - last_time_;
    version_ = model.version;
    bytes_ = status.bytes_received;
    if (record.round > 0) last_time_ = now;
    result->rounds.push_back(record);
    fleet_->SetEvaluated(model.round);
    ClearProgress();
    if (options_.out != nullptr) {
      absl::FPrintF(options_.out, "%s\n", FormatRoundLine(record));
      std::fflush(options_.out);
    }
    return absl::OkStatus();
  }

  void ShowProgress(const ServerStatusInfo& status) {
    if (options_.progress == nullptr) return;
    absl::FPrintF(options_.progress, "\r\x1b[K  round %d/%d: %u/%d updates, %.1f s",
                  static_cast<int>(status.round - start_round_), options_.max_rounds,
                  status.updates_in_round, num_clients_,
                  absl::ToDoubleSeconds(absl::Now() - last_time_));
    std::fflush(options_.progress);
    progress_shown_ = true;
  }

  void ClearProgress() {
    if (!progress_shown_) return;
    absl::FPrintF(options_.progress, "\r\x1b[K");
    std::fflush(options_.progress);
    progress_shown_ = false;
  }

  const FederationOptions& options_;
  const SoftmaxRegression& model_;
  const Dataset& test_;
  const int num_clients_;
  Fleet* const fleet_;
  std::unique_ptr<Client> client_;
  uint64_t start_round_ = 0;
  uint64_t version_ = 0;
  uint64_t bytes_ = 0;
  absl::Time start_time_;
  absl::Time last_time_;
  bool progress_shown_ = false;
};

}  // namespace

std::string SimClientId(int index) { return absl::StrFormat("sim-client-%03d", index); }

absl::StatusOr<FederationResult> RunFederation(const FederationOptions& options,
                                               const SoftmaxRegression& model,
                                               const FederatedData& data) {
  if (data.clients.empty()) return absl::InvalidArgumentError("no simulated clients");
  TALLY_RETURN_IF_ERROR(ValidateTrainOptions(options.train));
  if (options.byzantine < 0 || options.byzantine > static_cast<int>(data.clients.size())) {
    return absl::InvalidArgumentError(absl::StrCat("byzantine = ", options.byzantine,
                                                   ": must be in [0, number of clients = ",
                                                   data.clients.size(), "]"));
  }
  // What each client trains on: its own shard, label-flipped for a
  // label_flip Byzantine client.
  std::vector<Dataset> shards = data.clients;
  if (AttackFlipsLabels(options.attack)) {
    for (int k = 0; k < options.byzantine; ++k) shards[k] = FlipLabels(data.clients[k]);
  }
  FederationResult result;
  Fleet fleet;
  Observer observer(options, model, data.test, static_cast<int>(data.clients.size()), &fleet);
  TALLY_RETURN_IF_ERROR(observer.Start(&result));

  // Rounds are numbered from 1; the server had completed start_round() before.
  fleet.set_last_round(observer.start_round() + static_cast<uint64_t>(options.max_rounds));
  std::vector<std::unique_ptr<SimulatedClient>> clients;
  std::vector<std::thread> threads;
  for (size_t k = 0; k < data.clients.size(); ++k) {
    clients.push_back(std::make_unique<SimulatedClient>(static_cast<int>(k), options, model,
                                                        shards, &fleet));
  }
  fleet.running() = static_cast<int>(clients.size());
  for (auto& client : clients) {
    threads.emplace_back([&fleet, c = client.get()] {
      if (absl::Status status = c->Run(); !status.ok()) {
        fleet.Fail(
            absl::Status(status.code(), absl::StrCat(c->ClientId(), ": ", status.message())));
      }
      --fleet.running();
    });
  }
  absl::Status watched = observer.Watch(&result);
  fleet.Stop();
  for (std::thread& thread : threads) thread.join();
  TALLY_RETURN_IF_ERROR(watched);
  TALLY_RETURN_IF_ERROR(fleet.error());
  result.rejected_updates = fleet.rejected();
  if (std::string codec = fleet.upload_codec(); !codec.empty()) result.upload_codec = codec;
  result.upload_payload_bytes = fleet.upload_bytes();
  result.updates_pushed = fleet.pushes();
  return result;
}

double FederationResult::UploadBytesPerUpdate() const {
  if (updates_pushed == 0) return 0;
  return static_cast<double>(upload_payload_bytes) / static_cast<double>(updates_pushed);
}

}  // namespace tally::sim
