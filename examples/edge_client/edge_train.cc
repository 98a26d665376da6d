// edge_train: an edge device's whole loop with the C++ SDK. Joins, and for
// each training task pulls the global model, runs a few local steps of
// least-squares linear regression (the server's model must be a kernel
// [features, outputs] and a bias [outputs], e.g. tally-server's default
// model) on synthetic data, and pushes the delta with the codec the server
// assigns among the one offered (--codec: float32, int8, topk, ...; error
// feedback on). Rides out a server restart: the SDK retries and re-joins,
// and a round that fails for good is started again from GetTask.
//
//   edge_train --target=HOST:PORT --client_id=ID [--codec=int8] [--rounds=N]
//              [--seed=S] [--model_out=FILE] [--max_bandwidth=BYTES_PER_S]
//
// Everything is a function of (seed, client id, model version): the data of
// a round, the update id and hence the codec's seed, so a retried round
// pushes the same bytes, and the same binary on another CPU pushes the same
// updates when its float arithmetic is the same (built with
// -ffp-contract=off: no fused multiply-adds, which arm64 would otherwise use
// and x86-64 does not have by default). --model_out writes the final model
// as raw little-endian float32.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tally/client.h"

namespace {

struct Flags {
  std::string target = "localhost:50051";
  std::string client_id;
  std::string codec = "int8";
  int rounds = 1000000;
  uint64_t seed = 1;
  std::string model_out;
  uint64_t max_bandwidth = 0;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) return false;
    const std::string name = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
    if (name == "target")
      flags->target = value;
    else if (name == "client_id")
      flags->client_id = value;
    else if (name == "codec")
      flags->codec = value;
    else if (name == "rounds")
      flags->rounds = std::stoi(value);
    else if (name == "seed")
      flags->seed = std::stoull(value);
    else if (name == "model_out")
      flags->model_out = value;
    else if (name == "max_bandwidth")
      flags->max_bandwidth = std::stoull(value);
    else
      return false;
  }
  return !flags->client_id.empty();
}

// SplitMix64: a tiny generator whose output is the same on every platform.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A float in [-1, 1) with 24 random bits: exact, so identical everywhere.
float Uniform(uint64_t* state) {
  *state = Mix(*state);
  return static_cast<float>(static_cast<int64_t>(*state >> 40) - (1 << 23)) / float(1 << 23);
}

uint64_t HashString(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a.
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// params = [W (f x o, row-major), b (o)]. Runs `steps` full-batch gradient
// steps of mean squared error on `batch` synthetic examples y = x W* + b*
// (W*, b* drawn from the seed alone, x from the seed, client and version).
void TrainLinear(size_t f, size_t o, uint64_t seed, uint64_t data_key, int steps,
                 std::vector<float>* params) {
  constexpr size_t kBatch = 32;
  constexpr float kLearningRate = 0.05f;
  uint64_t truth_state = seed, data_state = seed ^ data_key;
  std::vector<float> truth(f * o + o), x(kBatch * f), y(kBatch * o);
  for (float& t : truth) t = Uniform(&truth_state);
  for (float& v : x) v = Uniform(&data_state);
  for (size_t n = 0; n < kBatch; ++n) {
    for (size_t j = 0; j < o; ++j) {
      float acc = truth[f * o + j];
      for (size_t i = 0; i < f; ++i) acc += x[n * f + i] * truth[i * o + j];
      y[n * o + j] = acc;
    }
  }
  std::vector<float>& w = *params;
  std::vector<float> grad(w.size());
  for (int s = 0; s < steps; ++s) {
    std::fill(grad.begin(), grad.end(), 0.0f);
    for (size_t n = 0; n < kBatch; ++n) {
      for (size_t j = 0; j < o; ++j) {
        float pred = w[f * o + j];
        for (size_t i = 0; i < f; ++i) pred += x[n * f + i] * w[i * o + j];
        const float err = (pred - y[n * o + j]) * (2.0f / kBatch);
        for (size_t i = 0; i < f; ++i) grad[i * o + j] += err * x[n * f + i];
        grad[f * o + j] += err;
      }
    }
    for (size_t k = 0; k < w.size(); ++k) w[k] -= kLearningRate * grad[k];
  }
}

// One training round: pull the task's model, train, push. Returns the
// push's status (or the first failing step's).
absl::Status TrainRound(tally::Client& client, const tally::Task& task, const Flags& flags,
                        size_t f, size_t o) {
  absl::StatusOr<tally::Model> model = client.PullModel(task.model_version);
  if (!model.ok()) return model.status();
  std::vector<float> local = model->params;
  const uint64_t data_key = HashString(flags.client_id) ^ Mix(model->version);
  TrainLinear(f, o, flags.seed, data_key, task.local_steps > 0 ? task.local_steps : 5, &local);
  std::vector<float> delta(local.size());
  for (size_t k = 0; k < local.size(); ++k) delta[k] = local[k] - model->params[k];
  tally::Update update;
  update.round = task.round;
  update.base_version = model->version;
  update.num_samples = 32;
  update.delta = delta;
  update.update_id = flags.client_id + "-v" + std::to_string(model->version);
  absl::StatusOr<tally::PushResult> pushed = client.PushUpdate(update);
  if (!pushed.ok()) return pushed.status();
  std::printf("round %" PRIu64 " pushed: base version %" PRIu64 ", %" PRIu64
              " bytes, attempts %u%s\n",
              task.round, model->version, pushed->payload_bytes, pushed->attempts,
              pushed->duplicate ? " (duplicate)" : "");
  std::fflush(stdout);
  return absl::OkStatus();
}

absl::Status WriteModel(tally::Client& client, const std::string& path) {
  absl::StatusOr<tally::Model> model = client.PullModel();
  if (!model.ok()) return model.status();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(model->params.data()),
            static_cast<std::streamsize>(model->params.size() * sizeof(float)));
  if (!out) return absl::UnavailableError("cannot write " + path);
  std::printf("final model: version %" PRIu64 ", %zu params -> %s\n", model->version,
              model->params.size(), path.c_str());
  return absl::OkStatus();
}

// Runs up to flags.rounds training rounds, until the server says done.
absl::Status Run(tally::Client& client, const Flags& flags) {
  absl::StatusOr<tally::JoinResult> joined = client.Join();
  if (!joined.ok()) return joined.status();
  const auto& tensors = joined->model.tensors;
  if (tensors.size() != 2 || tensors[0].shape.size() != 2 || tensors[1].shape.size() != 1 ||
      tensors[0].shape[1] != tensors[1].shape[0]) {
    return absl::FailedPreconditionError("the model must be a kernel [f, o] and a bias [o]");
  }
  const size_t f = tensors[0].shape[0], o = tensors[0].shape[1];
  std::printf("joined: %zu params, upload codec %s\n", size_t(joined->model.num_params),
              joined->upload_codec.c_str());
  int done_rounds = 0, failures = 0;
  while (done_rounds < flags.rounds) {
    absl::StatusOr<tally::Task> task = client.GetTask(absl::Seconds(10));
    absl::Status status = task.status();
    if (task.ok() && task->kind == tally::Task::Kind::kDone) break;
    if (task.ok() && task->kind == tally::Task::Kind::kTrain) {
      status = TrainRound(client, *task, flags, f, o);
      if (status.ok()) ++done_rounds;
    }
    if (status.ok()) {
      failures = 0;
      continue;
    }
    // The SDK already retried transient errors; the round itself may be gone
    // (a restarted server forgot its task): back off, then ask again.
    std::fprintf(stderr, "round failed (%s); asking for a new task\n",
                 std::string(status.message()).c_str());
    if (++failures > 10) return status;
    absl::SleepFor(absl::Milliseconds(200) * failures);
  }
  return flags.model_out.empty() ? absl::OkStatus() : WriteModel(client, flags.model_out);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: %s --target=HOST:PORT --client_id=ID [--codec=int8] [--rounds=N] "
                 "[--seed=S] [--model_out=FILE] [--max_bandwidth=BYTES_PER_S]\n",
                 argv[0]);
    return 2;
  }
  tally::ClientOptions options;
  options.target = flags.target;
  options.client_id = flags.client_id;
  if (flags.codec != "float32") options.upload_codecs = {flags.codec};
  options.download_codecs = {"float32"};  // The exact model: comparable across runs.
  options.seed = flags.seed;
  options.max_attempts = 12;  // Rides out a restart of a few seconds.
  options.max_backoff = absl::Seconds(2);
  options.max_bandwidth_bytes_per_s = flags.max_bandwidth;
  absl::StatusOr<std::unique_ptr<tally::Client>> client = tally::Client::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 2;
  }
  const absl::Status status = Run(**client, flags);
  if (!status.ok()) {
    std::fprintf(stderr, "edge_train: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
