// tally-server: the tally aggregation server.
//
// Flags are read here only; everything else comes from the text-proto
// ServerConfig given with --config (see proto/tally/v1/config.proto).
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/cli.h"
#include "google/protobuf/text_format.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/log.h"
#include "server/privacy_config.h"
#include "server/relay.h"
#include "server/server.h"

ABSL_FLAG(std::string, config, "",
          "Path of a text-proto tally.v1.ServerConfig (proto/tally/v1/config.proto). "
          "Empty = the embedded default config (the demo's softmax model, 20 clients per "
          "round).");
ABSL_FLAG(std::string, listen, "",
          "gRPC listen address HOST:PORT; overrides listen_address (default 0.0.0.0:50051). "
          "Port 0 picks a free port.");
ABSL_FLAG(int, metrics_port, 0,
          "Prometheus /metrics port; overrides metrics_port (default 9464). -1 disables.");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "Overrides checkpoint_dir: where checkpoints are written (created if missing).");
ABSL_FLAG(bool, start_fresh_if_corrupt, false,
          "If every checkpoint file in checkpoint_dir is corrupt, rename them *.corrupt and "
          "start from the initial model (without it the server refuses to start). A valid "
          "checkpoint is always resumed.");
ABSL_FLAG(std::string, rule, "",
          "Shorthand for strategy.rule: mean (default) or a robust rule (krum, multi_krum, "
          "median, trimmed_mean, geometric_median, centered_clipping, mda, monna, meamed, "
          "bulyan, flag, caf, average).");
ABSL_FLAG(std::string, pre, "",
          "Shorthand for strategy.pre: comma-separated pre-steps applied before the rule "
          "(nnm, clipping, arc, bucketing).");
ABSL_FLAG(int, f, -1, "Shorthand for strategy.f: declared number of Byzantine clients.");
ABSL_FLAG(std::string, schedule, "",
          "Shorthand for schedule.name: sync (default: rounds), fedasync, fedbuff, fedfix or "
          "fedcompass.");
ABSL_FLAG(std::string, role, "server",
          "server (default), or relay: serve clients and forward one combined update per round "
          "to --upstream (config relay.*).");
ABSL_FLAG(std::string, upstream, "", "Relay mode: HOST:PORT of the upstream (relay.upstream).");
ABSL_FLAG(std::string, relay_id, "",
          "Relay mode: client id at the upstream (relay.id; default relay-<hostname>).");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound gRPC port is written to this file once the server is serving.");
ABSL_FLAG(std::string, log_level, "info", "Minimum log level: debug, info, warning, error.");
ABSL_FLAG(std::string, log_format, "text",
          "text (\"<time> <I|W|E|D> <message>\") or json (one {\"ts\",\"level\",\"msg\"} object "
          "per line).");
ABSL_FLAG(bool, print_config, false,
          "Print the effective config (defaults and overrides applied) and exit.");
ABSL_FLAG(bool, exit_when_done, false,
          "Exit (as on SIGTERM: drain, checkpoint) once rounds.total_rounds is reached and the "
          "final model is written.");
ABSL_FLAG(int, shutdown_grace_ms, 10000,
          "On SIGTERM/SIGINT, how long in-flight calls may take to finish.");

namespace {

using tally::server::LogError;
using tally::server::LogInfo;

bool HelpFlagsFromMain(absl::string_view filename) {
  return absl::StrContains(filename, "server/main.cc");
}

// Every client connection is a file descriptor, and the soft limit is often
// 1024: take the hard limit (what `ulimit -Hn` / systemd's LimitNOFILE
// allow), as nginx's worker_rlimit_nofile or Go's runtime do.
void RaiseOpenFileLimit() {
  struct rlimit limit {};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t soft = limit.rlim_cur;
  if (soft < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = soft;
  }
  LogInfo(absl::StrCat("open files limit ", limit.rlim_cur,
                       soft < limit.rlim_cur ? absl::StrCat(" (raised from ", soft, ")") : "",
                       ": at most that many client connections at once"));
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tally-server: %s\n", std::string(status.message()).c_str());
  return 1;
}

// Process-wide settings for a long-running server.
void TuneProcess() {
  // gRPC's threads would otherwise each get a glibc malloc arena that keeps
  // freed chunk buffers: measured 100-200 MB of extra peak RSS at 50 uploads.
  mallopt(M_ARENA_MAX, 2);
  // Chunk buffers (~1 MiB) come from the heap and are reused instead of being
  // mmapped and unmapped per message (a page fault per 4 KiB each time);
  // model-sized buffers (> 16 MiB) are still mmapped and returned on free.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  // Debian's Abseil is built with Mutex deadlock detection on: every lock
  // taken while another is held (ours and gRPC's, which uses absl::Mutex)
  // updates a global lock graph. Measured at 10,000 connections: 15% of the
  // server's CPU. The tests keep it; a release server does not.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

// Parses the flags and sets up logging; false (after a message) on a bad
// flag.
bool SetUpFromFlags(int argc, char** argv) {
  if (!tally::ParseFlags(argc, argv, "tally-server",
                         "federated-learning aggregation server.\n"
                         "Usage: tally-server [--config=server.textproto] [--listen=HOST:PORT] "
                         "[--metrics_port=N] [--checkpoint_dir=DIR]",
                         HelpFlagsFromMain)) {
    return false;
  }
  tally::server::LogLevel level;
  if (!tally::server::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::fprintf(stderr, "tally-server: --log_level must be debug, info, warning or error\n");
    return false;
  }
  tally::server::SetLogLevel(level);
  tally::server::LogFormat format;
  if (!tally::server::ParseLogFormat(absl::GetFlag(FLAGS_log_format), &format)) {
    std::fprintf(stderr, "tally-server: --log_format must be text or json\n");
    return false;
  }
  tally::server::SetLogFormat(format);
  RaiseOpenFileLimit();

  return true;
}

// The config file, with the flags' overrides, defaulted and validated.
absl::StatusOr<tally::v1::ServerConfig> ConfigFromFlags() {
  tally::v1::ServerConfig config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    auto loaded = tally::server::LoadConfigFile(absl::GetFlag(FLAGS_config));
    if (!loaded.ok()) return loaded.status();
    config = std::move(loaded).value();
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) config.set_listen_address(absl::GetFlag(FLAGS_listen));
  if (absl::GetFlag(FLAGS_metrics_port) != 0) {
    config.set_metrics_port(absl::GetFlag(FLAGS_metrics_port));
  }
  if (!absl::GetFlag(FLAGS_checkpoint_dir).empty()) {
    config.set_checkpoint_dir(absl::GetFlag(FLAGS_checkpoint_dir));
  }
  if (!absl::GetFlag(FLAGS_rule).empty()) {
    config.mutable_strategy()->set_rule(absl::GetFlag(FLAGS_rule));
  }
  if (!absl::GetFlag(FLAGS_pre).empty()) {
    config.mutable_strategy()->clear_pre();
    for (absl::string_view step : absl::StrSplit(absl::GetFlag(FLAGS_pre), ',')) {
      config.mutable_strategy()->add_pre(std::string(step));
    }
  }
  if (absl::GetFlag(FLAGS_f) >= 0) {
    config.mutable_strategy()->set_f(static_cast<uint32_t>(absl::GetFlag(FLAGS_f)));
  }
  if (!absl::GetFlag(FLAGS_schedule).empty()) {
    config.mutable_schedule()->set_name(absl::GetFlag(FLAGS_schedule));
  }
  if (!absl::GetFlag(FLAGS_upstream).empty()) {
    config.mutable_relay()->set_upstream(absl::GetFlag(FLAGS_upstream));
  }
  if (!absl::GetFlag(FLAGS_relay_id).empty()) {
    config.mutable_relay()->set_id(absl::GetFlag(FLAGS_relay_id));
  }
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role != "server" && role != "relay") {
    return absl::InvalidArgumentError(absl::StrCat("--role: '", role, "' is not server or relay"));
  }
  if ((role == "relay") != !config.relay().upstream().empty()) {
    return absl::InvalidArgumentError(
        role == "relay" ? "--role=relay needs --upstream=HOST:PORT (or relay.upstream)"
                        : "relay.upstream is set: run with --role=relay");
  }
  tally::server::ApplyDefaults(&config);
  if (absl::Status valid = tally::server::ValidateConfig(config); !valid.ok()) return valid;
  return config;
}

// Serves /metrics on metrics_port (if > 0) from `registry`.
absl::Status ServeMetrics(const tally::v1::ServerConfig& config,
                          const std::shared_ptr<prometheus::Registry>& registry,
                          std::unique_ptr<prometheus::Exposer>* exposer) {
  if (config.metrics_port() > 0) {
    const std::string address = absl::StrCat(config.metrics_address(), ":", config.metrics_port());
    try {
      *exposer = std::make_unique<prometheus::Exposer>(address);
      (*exposer)->RegisterCollectable(registry);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("metrics_port: cannot serve /metrics on ", address, ": ", e.what()));
    }
    LogInfo(absl::StrCat("metrics on http://", address, "/metrics"));
  }

  return absl::OkStatus();
}

// --port_file: the port, written atomically.
void WritePortFile(int port) {
  const std::string path = absl::GetFlag(FLAGS_port_file);
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    LogError(absl::StrCat("cannot write --port_file ", path));
  }
}

// Until SIGTERM / SIGINT, or (--exit_when_done) the end of the federation.
void WaitForTheEnd(const sigset_t& signals, tally::server::Server& server) {
  const bool exit_when_done = absl::GetFlag(FLAGS_exit_when_done);
  const timespec tick = {0, 200 * 1000 * 1000};
  while (true) {
    const int signal_number = sigtimedwait(&signals, nullptr, &tick);
    if (signal_number > 0) {
      LogInfo(absl::StrCat("received signal ", signal_number, ", draining"));
      break;
    }
    if (exit_when_done && server.RunFinished()) {
      LogInfo("the federation is finished (--exit_when_done), draining");
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  TuneProcess();
  if (!SetUpFromFlags(argc, argv)) return 2;
  absl::StatusOr<tally::v1::ServerConfig> loaded = ConfigFromFlags();
  if (!loaded.ok()) return Fail(loaded.status());
  const tally::v1::ServerConfig& config = *loaded;
  if (absl::GetFlag(FLAGS_print_config)) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(config, &text);
    std::fputs(text.c_str(), stdout);
    std::fputs(tally::server::PrivacyPlanComment(config).c_str(), stdout);
    return 0;
  }

  // Signals are handled by sigwait() below: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  if (absl::Status served = ServeMetrics(config, registry, &exposer); !served.ok()) {
    return Fail(served);
  }
  tally::server::ServerOptions options;
  options.config = config;
  options.registry = registry;
  options.start_fresh_if_corrupt = absl::GetFlag(FLAGS_start_fresh_if_corrupt);
  options.connect_upstream = tally::server::RelayLink::Connect;
  auto server = tally::server::Server::Create(std::move(options));
  if (!server.ok()) return Fail(server.status());
  WritePortFile((*server)->port());
  WaitForTheEnd(signals, **server);
  (*server)->Shutdown(absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms)));
  LogInfo("stopped");
  return 0;
}
