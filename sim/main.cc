// tally-sim: runs a federated-learning demo over real gRPC on loopback.
//
// N simulated clients (one thread each, each with its own tally::Client)
// train a softmax-regression classifier on synthetic non-IID data (Dirichlet
// label split) against a tally server: an in-process one on 127.0.0.1:0 by
// default, or an external one given with --server. Prints per-round test
// accuracy, loss, bytes received by the server and round time, then a summary.
// Exit status: 0 if accuracy rose above the initial model's, 1 otherwise or on
// error, 2 on bad flags.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"
#include "sim/federation.h"
#include "sim/report.h"
#include "sim/softmax_model.h"
#include "sim/synthetic_data.h"

ABSL_FLAG(std::string, server, "",
          "Address (host:port) of a running tally-server to use. Empty: start an "
          "in-process server on 127.0.0.1 with a free port.");
ABSL_FLAG(int, clients, 20, "Number of simulated clients (one thread each).");
ABSL_FLAG(int, rounds, 30,
          "Stop after this many rounds. With the in-process server this is also its "
          "total_rounds; an external server may say DONE earlier.");
ABSL_FLAG(int, features, 32, "Input features F; the model's kernel is [F, classes].");
ABSL_FLAG(int, classes, 10, "Classes C; the model's bias is [C].");
ABSL_FLAG(int, samples_per_client, 200,
          "Mean training samples per client (the Dirichlet split varies it).");
ABSL_FLAG(int, test_samples, 2000, "Held-out test samples for the per-round evaluation.");
ABSL_FLAG(double, alpha, 0.5,
          "Dirichlet concentration of the label split; smaller is more non-IID.");
ABSL_FLAG(double, separation, 0,
          "Std dev of the class-mean coordinates; 0 = auto (0.5 * sqrt(32 / features), "
          "about 84% centralized accuracy).");
ABSL_FLAG(int, local_epochs, 1, "Local epochs per round (unless the task sets local steps).");
ABSL_FLAG(int, batch, 32, "Local mini-batch size.");
ABSL_FLAG(double, lr, 0.1, "Local SGD learning rate.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the synthetic data and of local training (shuffling).");
ABSL_FLAG(int64_t, chunk_bytes, 1 << 20, "Upload chunk size in bytes (the server may cap it).");
ABSL_FLAG(bool, quiet, false, "No live progress line on stderr.");
ABSL_FLAG(std::string, server_log_level, "warning",
          "Log level of the in-process server: debug, info, warning, error.");

namespace tally::sim {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tally-sim: %s\n", std::string(status.message()).c_str());
  return 1;
}

// In-process server for the demo: the sim's model, every client in every round.
absl::StatusOr<std::unique_ptr<server::Server>> StartServer(const SoftmaxRegression& model,
                                                            int clients, int rounds) {
  v1::ServerConfig config = server::DefaultConfig();
  config.set_listen_address("127.0.0.1:0");
  config.set_metrics_port(-1);
  v1::ModelConfig* model_config = config.mutable_model();
  model_config->clear_tensors();
  for (const ModelLayout::TensorDef& def : model.TensorDefs()) {
    v1::TensorConfig* tensor = model_config->add_tensors();
    tensor->set_name(def.name);
    for (int64_t d : def.shape) tensor->add_shape(d);
  }
  model_config->mutable_init()->set_kind(v1::ModelInit::ZEROS);
  config.mutable_rounds()->set_clients_per_round(clients);
  config.mutable_rounds()->set_min_clients(clients);
  config.mutable_rounds()->set_total_rounds(rounds);
  config.mutable_limits()->set_max_update_bytes(0);  // Re-derived from the model size.
  server::ServerOptions options;
  options.config = std::move(config);
  return server::Server::Create(std::move(options));
}

SyntheticDataOptions DataOptionsFromFlags() {
  SyntheticDataOptions data;
  data.num_features = absl::GetFlag(FLAGS_features);
  data.num_classes = absl::GetFlag(FLAGS_classes);
  data.num_clients = absl::GetFlag(FLAGS_clients);
  data.samples_per_client = absl::GetFlag(FLAGS_samples_per_client);
  data.test_samples = absl::GetFlag(FLAGS_test_samples);
  data.alpha = absl::GetFlag(FLAGS_alpha);
  data.class_separation = absl::GetFlag(FLAGS_separation);
  data.min_samples_per_client = std::min(data.min_samples_per_client, data.samples_per_client);
  data.seed = absl::GetFlag(FLAGS_seed);
  return data;
}

FederationOptions FederationOptionsFromFlags(const std::string& target) {
  FederationOptions fed;
  fed.target = target;
  fed.max_rounds = absl::GetFlag(FLAGS_rounds);
  fed.train.epochs = absl::GetFlag(FLAGS_local_epochs);
  fed.train.batch_size = absl::GetFlag(FLAGS_batch);
  fed.train.learning_rate = absl::GetFlag(FLAGS_lr);
  fed.train.seed = absl::GetFlag(FLAGS_seed);
  fed.chunk_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_chunk_bytes));
  const bool progress = !absl::GetFlag(FLAGS_quiet) && isatty(STDERR_FILENO);
  fed.progress = progress ? stderr : nullptr;
  return fed;
}

absl::Status CheckFlags() {
  auto bad = [](absl::string_view flag, auto value, absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value, ": must be ", want));
  };
  if (absl::GetFlag(FLAGS_clients) < 1) return bad("clients", absl::GetFlag(FLAGS_clients), ">= 1");
  if (absl::GetFlag(FLAGS_rounds) < 1) return bad("rounds", absl::GetFlag(FLAGS_rounds), ">= 1");
  if (absl::GetFlag(FLAGS_features) < 1) {
    return bad("features", absl::GetFlag(FLAGS_features), ">= 1");
  }
  if (absl::GetFlag(FLAGS_classes) < 2) {
    return bad("classes", absl::GetFlag(FLAGS_classes), ">= 2");
  }
  if (absl::GetFlag(FLAGS_chunk_bytes) < 1) {
    return bad("chunk_bytes", absl::GetFlag(FLAGS_chunk_bytes), ">= 1");
  }
  return absl::OkStatus();
}

int Run() {
  if (absl::Status flags = CheckFlags(); !flags.ok()) {
    Fail(flags);
    return 2;
  }
  server::LogLevel log_level;
  if (!server::ParseLogLevel(absl::GetFlag(FLAGS_server_log_level), &log_level)) {
    Fail(absl::InvalidArgumentError("--server_log_level: must be debug, info, warning or error"));
    return 2;
  }
  server::SetLogLevel(log_level);

  const SoftmaxRegression model(absl::GetFlag(FLAGS_features), absl::GetFlag(FLAGS_classes));
  absl::StatusOr<FederatedData> data = GenerateFederatedData(DataOptionsFromFlags());
  if (!data.ok()) return Fail(data.status());

  std::unique_ptr<server::Server> server;
  std::string target = absl::GetFlag(FLAGS_server);
  if (target.empty()) {
    auto started = StartServer(model, absl::GetFlag(FLAGS_clients), absl::GetFlag(FLAGS_rounds));
    if (!started.ok()) return Fail(started.status());
    server = std::move(started).value();
    target = absl::StrCat("127.0.0.1:", server->port());
  }
  absl::PrintF(
      "tally-sim: %d clients, %d rounds, model [%d,%d]+[%d] (%d params), "
      "alpha %g, server %s%s\n",
      absl::GetFlag(FLAGS_clients), absl::GetFlag(FLAGS_rounds), model.num_features(),
      model.num_classes(), model.num_classes(), model.num_params(), absl::GetFlag(FLAGS_alpha),
      target, server ? " (in-process)" : "");

  absl::StatusOr<FederationResult> result =
      RunFederation(FederationOptionsFromFlags(target), model, *data);
  if (server) server->Shutdown(absl::Seconds(5));
  if (!result.ok()) return Fail(result.status());

  const Summary summary = Summarize(result->rounds, result->total_time);
  absl::PrintF("%s", FormatSummary(summary));
  std::fflush(stdout);
  if (summary.rounds == 0 && result->server_done) {
    std::fprintf(stderr,
                 "tally-sim: FAILED: the server reports DONE (it already completed its "
                 "total_rounds); no round ran. Restart it or use the in-process server.\n");
    return 1;
  }
  if (!(summary.final_accuracy > summary.initial_accuracy)) {
    std::fprintf(stderr,
                 "tally-sim: FAILED: test accuracy did not rise above the initial %.4f "
                 "(final %.4f after %d rounds)\n",
                 summary.initial_accuracy, summary.final_accuracy, summary.rounds);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tally::sim

int main(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;
  // --help lists this file's flags (absl's default matches files named after
  // the binary).
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "sim/main.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "federated-learning demo over real gRPC with simulated clients.\n"
      "Usage: tally-sim [--server=HOST:PORT] [--clients=20] [--rounds=30] [--seed=1] ...");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "tally-sim: unexpected argument '%s' (see --help)\n", rest[1]);
    return 2;
  }
  return tally::sim::Run();
}
