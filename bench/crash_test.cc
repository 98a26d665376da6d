// tally-crash-test: kills a real tally-server with SIGKILL at random moments
// of a federation, restarts it on the same checkpoint directory and port, and
// checks that training continues from the checkpoint and that the final model
// is exactly what the acknowledged updates imply — nothing lost, nothing
// counted twice.
//
// K clients (SDK, one thread each) run synchronous rounds of all K clients
// until the server answers DONE after --rounds rounds. Client i's update in
// round r is a pure function of (i, r) with update id "c<i>-r<r>", so a
// round lost in a crash is redone with the same updates and a resent update
// the restored model already holds is a duplicate. With sgd (lr 1) and equal
// sample counts the final model must be sum over r of mean_i delta(i, r),
// whatever the crashes; the check allows float rounding only (1e-5).
//
//   tally-crash-test [--kills=5] [--rounds=30] [--clients=4] [--seed=1]
// Exit 0 on success; 1 with a message naming the mismatch.
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/server_process.h"
#include "tally/client.h"

ABSL_FLAG(int, kills, 5, "SIGKILLs of the server during the run.");
ABSL_FLAG(int, rounds, 30, "rounds.total_rounds of the federation.");
ABSL_FLAG(int, clients, 4, "Clients (all take part in every round).");
ABSL_FLAG(int, params, 1000, "Model parameters.");
ABSL_FLAG(uint64_t, seed, 1, "Seeds the kill times.");
ABSL_FLAG(std::string, server_bin, "", "tally-server executable (default: found as tally-bench does).");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(5), "Give up after this long.");

namespace tally::bench {
namespace {

// Client i's delta in round r: distinct per client, round and coordinate.
float Delta(int client, uint64_t round, int j) {
  return 0.001f * static_cast<float>((client + 1) * ((j % 7) + 1)) +
         0.0001f * static_cast<float>(round);
}

// A port free now, to reuse across restarts (clients keep one target).
absl::StatusOr<int> FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::InternalError("bind");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct Shared {
  std::string target;
  int params = 0;
  uint64_t rounds = 0;
  absl::Time deadline;
  std::atomic<int> done{0};
  std::atomic<uint64_t> acknowledged{0};  // New updates the server took.
  std::atomic<uint64_t> duplicates{0};    // Resent ones it already had.
};

// Trains until DONE; every failure (server down, session lost, round closed)
// just means "ask again".
void RunClient(int index, Shared& shared) {
  ClientOptions options;
  options.target = shared.target;
  options.client_id = absl::StrCat("c", index);
  options.max_attempts = 3;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.call_timeout = absl::Seconds(5);
  options.transfer_timeout = absl::Seconds(10);
  auto client = Client::Create(options);
  if (!client.ok()) return;
  bool joined = false;
  std::vector<float> delta(shared.params);
  while (absl::Now() < shared.deadline) {
    if (!joined) {
      joined = (*client)->Join().ok();
      if (!joined) {
        absl::SleepFor(absl::Milliseconds(50));
        continue;
      }
    }
    absl::StatusOr<Task> task = (*client)->GetTask(absl::Seconds(2));
    if (!task.ok()) {
      joined = false;  // The server may have restarted: a fresh session.
      absl::SleepFor(absl::Milliseconds(20));
      continue;
    }
    if (task->kind == Task::Kind::kDone) break;
    if (task->kind != Task::Kind::kTrain) continue;
    for (int j = 0; j < shared.params; ++j) delta[j] = Delta(index, task->round, j);
    // "Training" of 5..40 ms, so that the pushes of a round spread out and
    // kills land between them (acknowledged updates of an unfinished round).
    absl::SleepFor(absl::Milliseconds(5 + (index * 13 + task->round * 7) % 36));
    Update update;
    update.round = task->round;
    update.base_version = task->model_version;
    update.num_samples = 1;
    update.delta = delta;
    update.update_id = absl::StrCat("c", index, "-r", task->round);
    absl::StatusOr<PushResult> pushed = (*client)->PushUpdate(update);
    if (pushed.ok()) (pushed->duplicate ? shared.duplicates : shared.acknowledged).fetch_add(1);
  }
  shared.done.fetch_add(1);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tally-crash-test: FAIL: %s\n", message.c_str());
  return 1;
}

int Run() {
  const int kills = absl::GetFlag(FLAGS_kills);
  const int clients = absl::GetFlag(FLAGS_clients);
  const uint64_t rounds = static_cast<uint64_t>(absl::GetFlag(FLAGS_rounds));
  const int params = absl::GetFlag(FLAGS_params);
  std::string binary = absl::GetFlag(FLAGS_server_bin);
  if (binary.empty()) {
    auto found = FindServerBinary();
    if (!found.ok()) return Fail(std::string(found.status().message()));
    binary = *found;
  }
  absl::StatusOr<int> port = FreePort();
  if (!port.ok()) return Fail("no free port");
  char dir_template[] = "/tmp/tally-crash-test-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return Fail("mkdtemp");
  const std::string checkpoint_dir = dir_template;

  ServerProcessOptions server_options;
  server_options.binary = binary;
  server_options.config_text = absl::StrCat(
      "listen_address: \"127.0.0.1:", *port, "\"\nmetrics_port: -1\n",
      "checkpoint_dir: \"", checkpoint_dir, "\"\ncheckpoint_interval_ms: 1\n",
      "model { tensors { name: \"w\" shape: ", params, " } }\n",
      "rounds { clients_per_round: ", clients, " min_clients: ", clients,
      " total_rounds: ", rounds, " round_timeout_ms: 60000 }\n");
  auto start = [&]() { return ServerProcess::Start(server_options); };
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = start();
  if (!server.ok()) return Fail(std::string(server.status().message()));

  Shared shared;
  shared.target = absl::StrCat("127.0.0.1:", *port);
  shared.params = params;
  shared.rounds = rounds;
  shared.deadline = absl::Now() + absl::GetFlag(FLAGS_timeout);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) threads.emplace_back(RunClient, i, std::ref(shared));

  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int> pause_ms(20, 250);
  int killed = 0;
  for (; killed < kills && shared.done.load() == 0; ++killed) {
    absl::SleepFor(absl::Milliseconds(pause_ms(rng)));
    if (shared.done.load() > 0) break;
    ::kill((*server)->pid(), SIGKILL);
    (*server)->Stop().IgnoreError();  // Reaps the killed child.
    server->reset();
    server = start();
    if (!server.ok()) return Fail(absl::StrCat("restart: ", server.status().message()));
    std::fprintf(stderr, "tally-crash-test: SIGKILL %d, restarted\n", killed + 1);
  }
  for (std::thread& t : threads) t.join();

  // The final state, from the last server.
  ClientOptions admin_options;
  admin_options.target = shared.target;
  admin_options.client_id = "checker";
  auto checker = Client::Create(admin_options);
  if (!checker.ok() || !(*checker)->Join().ok()) return Fail("cannot reach the final server");
  absl::StatusOr<ServerStatusInfo> status = (*checker)->GetServerStatus();
  absl::StatusOr<Model> model = (*checker)->PullModel();
  if (!status.ok() || !model.ok()) return Fail("cannot read the final state");
  int failures = 0;
  if (!status->done || status->rounds_completed != rounds || model->version != rounds + 1) {
    ++failures;
    Fail(absl::StrCat("expected ", rounds, " rounds and version ", rounds + 1, ", got ",
                      status->rounds_completed, " rounds, version ", model->version,
                      status->done ? "" : " (not done)"));
  }
  // Expected: sum over rounds of the clients' mean delta (sgd, lr 1, zeros).
  double worst = 0;
  for (int j = 0; j < params; ++j) {
    double expected = 0;
    for (uint64_t r = 1; r <= rounds; ++r) {
      double sum = 0;
      for (int i = 0; i < clients; ++i) sum += Delta(i, r, j);
      expected += sum / clients;
    }
    worst = std::max(worst, std::abs(model->params[j] - expected));
  }
  if (worst > 1e-5) {
    ++failures;
    Fail(absl::StrCat("the final model differs from the acknowledged updates by up to ", worst));
  }
  (*server)->Stop().IgnoreError();
  std::system(absl::StrCat("rm -rf '", checkpoint_dir, "'").c_str());
  if (failures > 0) return 1;
  const uint64_t acknowledged = shared.acknowledged.load();
  std::printf(
      "tally-crash-test: OK: %d SIGKILLs, %llu rounds, %llu updates acknowledged for %llu in "
      "the model (%llu in rounds a crash undid, accepted again when resent), %llu resent "
      "duplicates acknowledged as such; final model exact (max error %.2g)\n",
      killed, static_cast<unsigned long long>(rounds),
      static_cast<unsigned long long>(acknowledged),
      static_cast<unsigned long long>(rounds * clients),
      static_cast<unsigned long long>(acknowledged - rounds * clients),
      static_cast<unsigned long long>(shared.duplicates.load()), worst);
  return 0;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return tally::bench::Run();
}
