// tally-bench: end-to-end ingest benchmark of a tally server.
//
// K concurrent clients (threads using the C++ SDK) push dense float32 updates
// of d parameters, one per synchronous round, and the tool reports updates/s,
// MB/s ingested, PushUpdate latency percentiles and peak RSS of server and
// client. By default it starts tally-server itself on 127.0.0.1 with a
// generated config (one tensor of d floats, rounds of exactly K clients);
// --target=host:port benchmarks a running server instead, which must have a
// d-parameter model and rounds.clients_per_round == K.
// --schedule=fedasync|fedbuff|fedfix|fedcompass runs the server on that
// asynchronous schedule instead of rounds (num_clients K, fedbuff's buffer
// --buffer_size); each client then pushes --rounds updates as fast as it is
// let (with --target, pass the running server's schedule).
// --codec=NAME pushes compressed updates: the started server accepts NAME
// (with --codec_ratio / --codec_block_size) in compression.upload, and every
// client encodes its delta once before the measurement and pushes that
// payload (bench/encoded_client.h), so the numbers are the server's ingest;
// the report adds the payload size and the float32 GB/s it represents.
// --relays=N starts N relay processes (tally-server --role=relay) in front of
// the started server (the root, rounds of N relay batches) and spreads the
// clients over them round-robin (relay j's rounds take its share of K); the
// report adds each relay's clients, CPU and peak RSS.
//
//   tally-bench --clients=10 --params=10000000 --rounds=5 --json=out.json
//   tally-bench --clients=64 --params=1000000 --rounds=20 --schedule=fedasync
//   tally-bench --codec=topk --codec_ratio=0.01
//   tally-bench --clients=10 --relays=2
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "bench/encoded_client.h"
#include "bench/load_generator.h"
#include "bench/process_monitor.h"
#include "bench/server_process.h"
#include "compress/codec.h"

ABSL_FLAG(std::string, target, "",
          "host:port of a running tally-server to benchmark. Empty (default): start "
          "--server_bin on 127.0.0.1 with a generated config and stop it at the end.");
ABSL_FLAG(std::string, server_bin, "",
          "tally-server executable to start. Default: tally-server next to this "
          "executable, or in ../server/ (the CMake build tree).");
ABSL_FLAG(int, clients, 10, "Concurrent clients K (one thread and one SDK client each).");
ABSL_FLAG(std::string, id_prefix, "bench-",
          "Client i's id is <id_prefix><i>: give each tally-bench driving one server its own.");
ABSL_FLAG(bool, connection_per_client, false,
          "Every client its own gRPC channel and TCP connection, as separate devices. "
          "Default: the clients share one connection.");
ABSL_FLAG(std::string, driver, "threads",
          "threads: one thread per client (the C++ SDK, or the encoded-payload client with "
          "--codec); callback: every client a state machine of gRPC callback calls on a few "
          "threads (--driver_threads), for thousands of clients.");
ABSL_FLAG(int, driver_threads, 2, "--driver=callback: threads that run the clients' steps.");
ABSL_FLAG(int, max_concurrent_uploads, 0,
          "The started server's limits.max_concurrent_uploads; 0 (default): --clients (every "
          "client's upload at once).");
ABSL_FLAG(uint64_t, undo_memory_bytes, 0,
          "The started server's limits.undo_memory_bytes; 0 (default): the server's default.");
ABSL_FLAG(std::string, server_config, "",
          "Text proto appended to the started server's generated config, for fields it does not "
          "set itself, e.g. 'grpc { bdp_probe: false }'.");
ABSL_FLAG(bool, pull, false,
          "Every client pulls the model (PullModel of the task's version) each round before it "
          "pushes; the report gives download, upload and whole rounds.");
ABSL_FLAG(uint64_t, params, 10'000'000, "Parameters d per update (float32, 4*d bytes).");
ABSL_FLAG(int, rounds, 5, "Measured rounds; every client pushes one update per round.");
ABSL_FLAG(int, warmup_rounds, 1, "Rounds run before the measured ones, not in the stats.");
ABSL_FLAG(std::string, schedule, "sync",
          "The server's schedule: sync (rounds of K clients), fedasync, fedbuff, fedfix or "
          "fedcompass.");
ABSL_FLAG(int, buffer_size, 3, "--schedule=fedbuff: updates per model version (K of FedBuff).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the random deltas.");
ABSL_FLAG(uint64_t, chunk_bytes, 1 << 20, "Upload chunk size of the SDK (capped by the server).");
ABSL_FLAG(absl::Duration, task_wait, absl::Seconds(30), "GetTask long-poll budget per call.");
ABSL_FLAG(absl::Duration, server_start_timeout, absl::Seconds(30),
          "How long to wait for a started server to write its port.");
ABSL_FLAG(std::string, json, "bench_result.json",
          "Where to write the JSON result; empty = nowhere.");
ABSL_FLAG(std::string, codec, "",
          "Push compressed updates in this codec (float32, float16, bfloat16, int8, qsgd, sign, "
          "topk, randk), each client's encoded once before the measurement; the started server "
          "accepts it. Empty (default): dense float32 through the SDK.");
ABSL_FLAG(double, codec_ratio, 0, "--codec=topk/randk: k = ceil(ratio * params); 0 = 0.01.");
ABSL_FLAG(int, relays, 0,
          "Start this many relays (tally-server --role=relay) in front of the started server "
          "and spread the clients over them; 0 (default): clients push to the server itself. "
          "Synchronous schedule only, not with --target.");
ABSL_FLAG(int, codec_block_size, -1,
          "--codec=int8/qsgd/sign: entries per scale; -1 = the codec's default.");

namespace tally::bench {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<pid_t> g_server_pid{0};

// SIGINT/SIGTERM are blocked in every thread and taken here: the first one
// stops the run and the spawned server, so main() still cleans up; a second
// one (or the first, with no server to stop) exits at once.
void HandleSignals(sigset_t signals) {
  int signal = 0;
  sigwait(&signals, &signal);
  g_stop.store(true);
  const pid_t pid = g_server_pid.load();
  if (pid <= 0) _exit(128 + signal);
  std::fprintf(stderr, "tally-bench: interrupted; stopping the server (again to force)\n");
  kill(pid, SIGTERM);
  sigwait(&signals, &signal);
  _exit(128 + signal);
}

void StartSignalThread() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread(HandleSignals, signals).detach();
}

// A generated config: on a free loopback port, no /metrics, rounds of
// exactly `clients` updates (clients, or relay batches at a root), then
// `extra` (the model, the schedule) and the codec, if any.
std::string ConfigText(absl::string_view role, int clients, absl::string_view extra,
                       const std::optional<compress::CodecSpec>& codec) {
  std::string text = absl::StrCat("# Generated by tally-bench (", role,
                                  ").\nlisten_address: \"127.0.0.1:0\"\nmetrics_port: -1\n"
                                  "rounds { clients_per_round: ",
                                  clients, " min_clients: ", clients, " }\n", extra);
  if (codec.has_value()) absl::StrAppend(&text, CompressionConfigText(*codec));
  if (!absl::GetFlag(FLAGS_server_config).empty()) {
    absl::StrAppend(&text, absl::GetFlag(FLAGS_server_config), "\n");
  }
  return text;
}

// `uploads` at once, and every one of `load_clients`, all from 127.0.0.1,
// may join: the per-peer session and join-rate caps (defaults 10000 and
// 6000 a minute) raised to twice the load clients.
std::string LimitsText(int uploads, int load_clients) {
  const int per_peer = std::max(10000, 2 * load_clients);
  std::string undo;
  if (const uint64_t bytes = absl::GetFlag(FLAGS_undo_memory_bytes); bytes > 0) {
    undo = absl::StrCat(" undo_memory_bytes: ", bytes);
  }
  return absl::StrCat("limits { max_concurrent_uploads: ", uploads,
                      " max_sessions_per_peer: ", per_peer, " peer_joins_per_minute: ", per_peer,
                      undo, " }\n");
}

std::string ServerConfigText(int clients, int load_clients, uint64_t params,
                             const std::string& schedule,
                             const std::optional<compress::CodecSpec>& codec) {
  std::string extra = absl::StrCat("model { tensors { name: \"w\" shape: ", params, " } }\n",
                                   LimitsText(absl::GetFlag(FLAGS_max_concurrent_uploads) > 0
                                                  ? absl::GetFlag(FLAGS_max_concurrent_uploads)
                                                  : clients,
                                              load_clients));
  if (schedule != "sync") {
    absl::StrAppend(&extra, "schedule { name: \"", schedule, "\" num_clients: ", clients,
                    " buffer_size: ", absl::GetFlag(FLAGS_buffer_size), " }\n");
  }
  return ConfigText("server", clients, extra, codec);
}

// A relay's config: no model (the root's; so are the limits derived from it).
std::string RelayConfigText(int clients, const std::optional<compress::CodecSpec>& codec) {
  return ConfigText("relay", clients, LimitsText(clients, clients), codec);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// /proc/loadavg's 1, 5 and 15 minute averages.
std::string LoadAverage() {
  std::vector<std::string> fields = absl::StrSplit(ReadText("/proc/loadavg"), ' ');
  if (fields.size() < 3) return "";
  return absl::StrJoin(fields.begin(), fields.begin() + 3, " ");
}

// The value after "key" and a colon in a "key : value" file such as
// /proc/cpuinfo; empty if absent.
std::string ProcField(const std::string& path, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(ReadText(path), '\n')) {
    if (!absl::ConsumePrefix(&line, key)) continue;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return "";
}

double ProcessCpuSeconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// One started relay: its clients and what it used during the load.
struct RelayReport {
  std::string target;
  int clients = 0;
  std::optional<double> cpu_seconds;  // During RunLoad.
  std::optional<uint64_t> peak_rss;   // VmHWM.
  std::string stop_status = "n/a";
};

// A process (the started server, or tally-bench) during the load.
struct Footprint {
  std::optional<ProcessSample> before;  // Before the clients were created.
  std::optional<ProcessSample> joined;  // Every client joined, before the first round.
  ProcessSample max;                    // The largest of each, sampled every 250 ms.
};

// Where the run happened.
struct Machine {
  std::string date;        // UTC, ISO 8601, at the start.
  std::string cpu_model;   // /proc/cpuinfo "model name".
  std::string kernel;      // uname -sr.
  uint64_t memory_bytes = 0;  // MemTotal.
  std::string loadavg_before, loadavg_after;  // /proc/loadavg's first three fields.
  uint64_t nofile_soft = 0, nofile_hard = 0;  // RLIMIT_NOFILE (after raising soft to hard).
};

// Everything a run measured, beyond the LoadResult.
struct Report {
  Machine machine;
  std::string mode;  // "spawn" or "target".
  std::string target;
  std::string server_bin;
  LoadOptions options;
  LoadResult load;
  unsigned cores = 0;
  std::optional<uint64_t> server_peak_rss_proc;  // VmHWM, spawn mode.
  uint64_t server_exit_max_rss = 0;              // wait4 ru_maxrss, spawn mode.
  std::optional<double> server_cpu_seconds;      // During RunLoad, spawn mode.
  std::string server_stop_status = "n/a";
  std::optional<uint64_t> client_peak_rss;
  double client_cpu_seconds = 0;  // During RunLoad.
  std::vector<RelayReport> relays;  // --relays.
  Footprint server;  // Spawn mode.
  Footprint client;
  // ESTABLISHED TCP connections on the server's port once every client
  // joined (spawn mode): one per client with --connection_per_client.
  std::optional<uint64_t> server_connections_joined;
};

// Raises this process's soft RLIMIT_NOFILE to its hard limit (a spawned
// server inherits it): each client connection is a file descriptor at both
// ends.
void RaiseFdLimit(Machine* machine) {
  struct rlimit limit {};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  machine->nofile_soft = limit.rlim_cur;
  machine->nofile_hard = limit.rlim_max;
}

Machine ReadMachine() {
  Machine machine;
  machine.date = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  machine.cpu_model = ProcField("/proc/cpuinfo", "model name");
  struct utsname name {};
  if (uname(&name) == 0) machine.kernel = absl::StrCat(name.sysname, " ", name.release);
  const std::string mem_text = ProcField("/proc/meminfo", "MemTotal");
  absl::string_view mem = mem_text;
  absl::ConsumeSuffix(&mem, " kB");
  uint64_t kib = 0;
  if (absl::SimpleAtoi(mem, &kib)) machine.memory_bytes = kib * 1024;
  machine.loadavg_before = LoadAverage();
  RaiseFdLimit(&machine);
  return machine;
}

// The codec's name, or "float32 (SDK)" / "float32 (callback)" for the
// dense update of the thread or callback driver.
std::string CodecName(const LoadOptions& options) {
  if (options.codec.has_value()) return compress::FindCodec(options.codec->id)->name;
  return options.driver == LoadOptions::Driver::kCallback ? "float32 (callback)"
                                                          : "float32 (SDK)";
}

std::string MiB(uint64_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }
std::string MiB(const std::optional<uint64_t>& bytes) {
  return bytes.has_value() ? MiB(*bytes) : "n/a";
}

void PrintLatency(absl::string_view call, const LatencyStats& s) {
  absl::PrintF("  %-13s p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  (mean %.1f, max %.1f)\n", call,
               s.p50 * 1e3, s.p90 * 1e3, s.p99 * 1e3, s.mean * 1e3, s.max * 1e3);
}

// The growth of the resident set from before the clients were created to
// when all had joined, per client: what a connected, idle client costs.
std::optional<double> BytesPerClient(const Footprint& f, int clients) {
  if (!f.before.has_value() || !f.joined.has_value()) return std::nullopt;
  return (static_cast<double>(f.joined->rss_bytes) - static_cast<double>(f.before->rss_bytes)) /
         clients;
}

void PrintFootprint(absl::string_view who, const Footprint& f, int clients) {
  if (!f.before.has_value()) return;
  const ProcessSample joined = f.joined.value_or(ProcessSample{});
  absl::PrintF(
      "  %-13s RSS %s before the clients, %s all joined (%s per client), max %s; fds %d / %d / "
      "max %d; threads %d / %d / max %d\n",
      absl::StrCat(who, " /proc"), MiB(f.before->rss_bytes), MiB(joined.rss_bytes),
      absl::StrFormat("%.1f KiB", BytesPerClient(f, clients).value_or(0) / 1024),
      MiB(f.max.rss_bytes), f.before->fds, joined.fds, f.max.fds, f.before->threads,
      joined.threads, f.max.threads);
}

void PrintSummary(const Report& r) {
  const LoadResult& l = r.load;
  const ServerStatusInfo& s = l.server_status;
  absl::PrintF(
      "tally-bench: %d clients x %d params (%s per float32 update), %d measured rounds "
      "(+%d warm-up), schedule %s, codec %s, %s, %s, %u cores, %s server %s%s\n",
      r.options.clients, r.options.params, MiB(r.options.params * 4), r.options.rounds,
      r.options.warmup_rounds, absl::GetFlag(FLAGS_schedule), CodecName(r.options),
      r.options.connection_per_client ? "a connection per client" : "one shared connection",
      r.options.pull ? "pull + push" : "push only", r.cores, r.mode, r.target,
      r.relays.empty() ? "" : absl::StrCat(" behind ", r.relays.size(), " relays"));
  absl::PrintF("  ingest        %.1f MB/s  (%d updates, %.1f MB in %.3f s; pushes alone %.3f s)\n",
               l.mb_per_second, l.updates_accepted, l.bytes_accepted / 1e6, l.wall_seconds,
               l.push_wall_seconds);
  if (r.options.codec.has_value()) {
    absl::PrintF(
        "  codec         %s, %d bytes per update (%.1fx fewer than float32), encoded once "
        "per client before the run\n",
        CodecName(r.options), l.bytes_accepted / std::max<uint64_t>(1, l.updates_accepted),
        l.bytes_accepted > 0 ? static_cast<double>(l.represented_bytes) / l.bytes_accepted : 0.0);
    absl::PrintF("  represented   %.2f GB/s of float32 updates\n", l.represented_gb_per_second);
  }
  absl::PrintF("  updates/s     %.2f\n", l.updates_per_second);
  PrintLatency("PushUpdate", l.push);
  if (r.options.pull) {
    absl::PrintF(
        "  download      %.1f MB/s in the pull phases (%d pulls, %.1f MB in %.3f s); upload %.1f "
        "MB/s in the push phases (%.3f s)\n",
        l.download_mb_per_second, l.pull.count, l.bytes_downloaded / 1e6, l.download_seconds,
        l.upload_mb_per_second, l.upload_seconds);
    absl::PrintF("  whole rounds  %.1f MB/s down + up over %.3f s\n", l.round_mb_per_second,
                 l.wall_seconds);
    PrintLatency("PullModel", l.pull);
  }
  if (l.round_seconds.size() <= 50) {
    absl::PrintF("  round times   %s s\n",
                 absl::StrJoin(l.round_seconds, " ", [](std::string* out, double v) {
                   absl::StrAppendFormat(out, "%.3f", v);
                 }));
  } else {  // Long runs (soaks): a summary; every time is in the JSON.
    std::vector<double> sorted = l.round_seconds;
    std::sort(sorted.begin(), sorted.end());
    absl::PrintF("  round times   min %.3f  median %.3f  p99 %.3f  max %.3f s (%d rounds)\n",
                 sorted.front(), sorted[sorted.size() / 2], sorted[sorted.size() * 99 / 100],
                 sorted.back(), sorted.size());
  }
  absl::PrintF("  server RSS    peak %s (/proc VmHWM), %s (exit rusage), %s (Admin GetStatus)\n",
               MiB(r.server_peak_rss_proc),
               r.server_exit_max_rss > 0 ? MiB(r.server_exit_max_rss) : "n/a",
               l.has_server_status ? MiB(s.peak_rss_bytes) : "n/a");
  if (r.server_cpu_seconds.has_value()) {
    absl::PrintF("  server CPU    %.1f s over %.1f s of load (%.2f cores)\n", *r.server_cpu_seconds,
                 l.total_seconds, *r.server_cpu_seconds / l.total_seconds);
  }
  for (size_t i = 0; i < r.relays.size(); ++i) {
    const RelayReport& relay = r.relays[i];
    absl::PrintF("  relay %-7d %s: %d clients, CPU %s, peak RSS %s, stop %s\n", i + 1,
                 relay.target, relay.clients,
                 relay.cpu_seconds.has_value()
                     ? absl::StrFormat("%.1f s (%.2f cores)", *relay.cpu_seconds,
                                       *relay.cpu_seconds / l.total_seconds)
                     : "n/a",
                 MiB(relay.peak_rss), relay.stop_status);
  }
  absl::PrintF("  client        peak RSS %s, CPU %.1f s (%.2f cores)\n", MiB(r.client_peak_rss),
               r.client_cpu_seconds, r.client_cpu_seconds / l.total_seconds);
  PrintFootprint("server", r.server, r.options.clients);
  PrintFootprint("client", r.client, r.options.clients);
  if (r.server_connections_joined.has_value()) {
    absl::PrintF("  connections   %d established on the server's port with every client joined\n",
                 *r.server_connections_joined);
  }
  if (l.has_server_status) {
    absl::PrintF(
        "  server status version %d, rounds completed %d (failed %d), updates accepted "
        "%d rejected %d\n",
        s.model_version, s.rounds_completed, s.rounds_failed, s.updates_accepted,
        s.updates_rejected);
  } else {
    absl::PrintF("  server status unavailable: %s\n", l.server_status_error);
  }
  if (!l.final_round_observed) {
    absl::PrintF(
        "  note: the last round's publication was not observed; wall time ends at the "
        "last PushUpdate\n");
  }
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

template <typename T>
std::string JsonOptional(const std::optional<T>& v) {
  return v.has_value() ? absl::StrCat(*v) : "null";
}

std::string JsonBool(bool b) { return b ? "true" : "false"; }

std::string JsonLatency(const LatencyStats& s) {
  return absl::StrFormat(
      "{\"count\": %d, \"p50\": %.6f, \"p90\": %.6f, \"p99\": %.6f, \"mean\": %.6f, \"max\": %.6f}",
      s.count, s.p50, s.p90, s.p99, s.mean, s.max);
}

std::string JsonSample(const std::optional<ProcessSample>& s) {
  if (!s.has_value()) return "null";
  return absl::StrFormat("{\"rss_bytes\": %d, \"fds\": %d, \"threads\": %d}", s->rss_bytes,
                         s->fds, s->threads);
}

std::string JsonFootprint(const Footprint& f, int clients) {
  const std::optional<double> per_client = BytesPerClient(f, clients);
  return absl::StrFormat(
      "{\"before\": %s, \"joined\": %s, \"max\": %s, \"rss_bytes_per_client\": %s}",
      JsonSample(f.before), JsonSample(f.joined), JsonSample(f.max),
      per_client.has_value() ? absl::StrFormat("%.1f", *per_client) : "null");
}

std::string ToJson(const Report& r) {
  const LoadResult& l = r.load;
  const ServerStatusInfo& s = l.server_status;
  const std::optional<uint64_t> server_peak =
      r.server_peak_rss_proc.has_value()
          ? r.server_peak_rss_proc
          : (l.has_server_status ? std::optional<uint64_t>(s.peak_rss_bytes) : std::nullopt);
  std::string out = "{\n";
  absl::StrAppendFormat(
      &out,
      "  \"config\": {\"mode\": %s, \"target\": %s, \"server_bin\": %s, \"clients\": %d, "
      "\"params\": %d, \"update_bytes\": %d, \"rounds\": %d, \"warmup_rounds\": %d, "
      "\"chunk_bytes\": %d, \"seed\": %d, \"schedule\": %s, \"codec\": %s, \"id_prefix\": %s, "
      "\"connection_per_client\": %s, \"pull\": %s, \"driver\": %s, \"driver_threads\": %d, "
      "\"server_config\": %s, \"relays\": %d},\n",
      JsonString(r.mode), JsonString(r.target), JsonString(r.server_bin), r.options.clients,
      r.options.params, r.options.params * 4, r.options.rounds, r.options.warmup_rounds,
      r.options.chunk_bytes, r.options.seed, JsonString(absl::GetFlag(FLAGS_schedule)),
      JsonString(CodecName(r.options)), JsonString(r.options.id_prefix),
      JsonBool(r.options.connection_per_client), JsonBool(r.options.pull),
      JsonString(absl::GetFlag(FLAGS_driver)), r.options.driver_threads,
      JsonString(absl::GetFlag(FLAGS_server_config)), r.relays.size());
  const Machine& m = r.machine;
  absl::StrAppendFormat(
      &out,
      "  \"machine\": {\"cores\": %u, \"cpu_model\": %s, \"memory_bytes\": %d, \"kernel\": %s, "
      "\"date\": %s, \"loadavg_before\": %s, \"loadavg_after\": %s, \"nofile_soft\": %d, "
      "\"nofile_hard\": %d},\n",
      r.cores, JsonString(m.cpu_model), m.memory_bytes, JsonString(m.kernel), JsonString(m.date),
      JsonString(m.loadavg_before), JsonString(m.loadavg_after), m.nofile_soft, m.nofile_hard);
  absl::StrAppendFormat(&out,
                        "  \"updates_per_second\": %.4f,\n  \"mb_per_second\": %.3f,\n"
                        "  \"represented_gb_per_second\": %.4f,\n"
                        "  \"server_peak_rss_bytes\": %s,\n",
                        l.updates_per_second, l.mb_per_second, l.represented_gb_per_second,
                        JsonOptional(server_peak));
  absl::StrAppendFormat(&out, "  \"latency_seconds\": %s,\n  \"pull_latency_seconds\": %s,\n",
                        JsonLatency(l.push), JsonLatency(l.pull));
  absl::StrAppendFormat(
      &out,
      "  \"upload\": {\"bytes\": %d, \"phase_seconds\": %.6f, \"mb_per_second\": %.3f},\n"
      "  \"download\": {\"bytes\": %d, \"pulls\": %d, \"phase_seconds\": %.6f, "
      "\"mb_per_second\": %.3f},\n"
      "  \"round\": {\"wall_seconds\": %.6f, \"mb_per_second\": %.3f},\n",
      l.bytes_accepted, l.upload_seconds, l.upload_mb_per_second, l.bytes_downloaded, l.pull.count,
      l.download_seconds, l.download_mb_per_second, l.wall_seconds, l.round_mb_per_second);
  absl::StrAppendFormat(
      &out,
      "  \"footprint\": {\"server\": %s, \"client\": %s, \"server_connections_joined\": %s},\n",
      JsonFootprint(r.server, r.options.clients), JsonFootprint(r.client, r.options.clients),
      JsonOptional(r.server_connections_joined));
  absl::StrAppendFormat(
      &out,
      "  \"measured\": {\"updates_accepted\": %d, \"updates_duplicate\": %d, "
      "\"bytes_accepted\": %d, \"wall_seconds\": %.6f, \"push_wall_seconds\": %.6f, "
      "\"final_round_observed\": %s, \"push_attempts\": %d, \"round_seconds\": [%s], "
      "\"setup_seconds\": %.3f, \"total_seconds\": %.3f},\n",
      l.updates_accepted, l.updates_duplicate, l.bytes_accepted, l.wall_seconds,
      l.push_wall_seconds, l.final_round_observed ? "true" : "false", l.push_attempts,
      absl::StrJoin(l.round_seconds, ", ",
                    [](std::string* o, double v) { absl::StrAppendFormat(o, "%.6f", v); }),
      l.setup_seconds, l.total_seconds);
  absl::StrAppendFormat(&out,
                        "  \"server\": {\"peak_rss_bytes_proc\": %s, \"exit_max_rss_bytes\": %s, "
                        "\"cpu_seconds\": %s, \"stop_status\": %s, \"admin_status_error\": %s",
                        JsonOptional(r.server_peak_rss_proc),
                        r.server_exit_max_rss > 0 ? absl::StrCat(r.server_exit_max_rss) : "null",
                        JsonOptional(r.server_cpu_seconds), JsonString(r.server_stop_status),
                        l.has_server_status ? "null" : JsonString(l.server_status_error));
  if (l.has_server_status) {
    absl::StrAppendFormat(
        &out,
        ", \"peak_rss_bytes_admin\": %d, \"rss_bytes_admin\": %d, \"model_version\": %d, "
        "\"rounds_completed\": %d, \"rounds_failed\": %d, \"updates_accepted\": %d, "
        "\"updates_rejected\": %d, \"bytes_received\": %d, \"version\": %s, \"commit\": %s",
        s.peak_rss_bytes, s.rss_bytes, s.model_version, s.rounds_completed, s.rounds_failed,
        s.updates_accepted, s.updates_rejected, s.bytes_received, JsonString(s.server_version),
        JsonString(s.server_commit));
  }
  absl::StrAppendFormat(&out, "},\n  \"relays\": [%s],\n",
                        absl::StrJoin(r.relays, ", ", [](std::string* o, const RelayReport& relay) {
                          absl::StrAppendFormat(
                              o,
                              "{\"target\": %s, \"clients\": %d, \"cpu_seconds\": %s, "
                              "\"peak_rss_bytes\": %s, \"stop_status\": %s}",
                              JsonString(relay.target), relay.clients,
                              JsonOptional(relay.cpu_seconds), JsonOptional(relay.peak_rss),
                              JsonString(relay.stop_status));
                        }));
  absl::StrAppendFormat(&out,
                        "  \"client\": {\"peak_rss_bytes\": %s, \"cpu_seconds\": %.3f}\n}\n",
                        JsonOptional(r.client_peak_rss), r.client_cpu_seconds);
  return out;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// --codec and its parameters; nullopt without --codec.
absl::StatusOr<std::optional<compress::CodecSpec>> CodecFromFlags() {
  const std::string name = absl::GetFlag(FLAGS_codec);
  if (name.empty()) return std::nullopt;
  const compress::CodecInfo* info = compress::FindCodec(name);
  if (info == nullptr || info->id == compress::CodecId::kSpsa) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--codec=", name, ": must be float32, float16, bfloat16, int8, qsgd, sign, topk or randk"));
  }
  compress::CodecSpec spec = compress::DefaultSpec(info->id);
  if (absl::GetFlag(FLAGS_codec_ratio) != 0) spec.ratio = absl::GetFlag(FLAGS_codec_ratio);
  if (const int block = absl::GetFlag(FLAGS_codec_block_size); block >= 0) {
    spec.block_size = static_cast<uint32_t>(block);
  }
  return spec;
}

LoadOptions LoadOptionsFromFlags() {
  LoadOptions options;
  options.clients = absl::GetFlag(FLAGS_clients);
  options.id_prefix = absl::GetFlag(FLAGS_id_prefix);
  options.connection_per_client = absl::GetFlag(FLAGS_connection_per_client);
  options.pull = absl::GetFlag(FLAGS_pull);
  options.driver = absl::GetFlag(FLAGS_driver) == "callback" ? LoadOptions::Driver::kCallback
                                                             : LoadOptions::Driver::kThreads;
  options.driver_threads = absl::GetFlag(FLAGS_driver_threads);
  options.params = absl::GetFlag(FLAGS_params);
  options.rounds = absl::GetFlag(FLAGS_rounds);
  options.warmup_rounds = absl::GetFlag(FLAGS_warmup_rounds);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  options.task_wait = absl::GetFlag(FLAGS_task_wait);
  options.async = absl::GetFlag(FLAGS_schedule) != "sync";
  options.stop = &g_stop;
  return options;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer(const LoadOptions& options,
                                                           Report* report) {
  ServerProcessOptions server_options;
  server_options.binary = absl::GetFlag(FLAGS_server_bin);
  if (server_options.binary.empty()) {
    absl::StatusOr<std::string> found = FindServerBinary();
    if (!found.ok()) return found.status();
    server_options.binary = *found;
  }
  const int relays = absl::GetFlag(FLAGS_relays);
  server_options.config_text =
      ServerConfigText(relays > 0 ? relays : options.clients, options.clients, options.params,
                       absl::GetFlag(FLAGS_schedule), options.codec);
  server_options.start_timeout = absl::GetFlag(FLAGS_server_start_timeout);
  report->server_bin = server_options.binary;
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(std::move(server_options));
  if (!server.ok()) return server;
  g_server_pid.store((*server)->pid());
  report->target = (*server)->target();
  std::fprintf(stderr, "tally-bench: started %s (pid %d) on %s\n", report->server_bin.c_str(),
               static_cast<int>((*server)->pid()), report->target.c_str());
  return server;
}

// --relays relay processes in front of `root`, relay j with every
// --relays-th client from j; their targets go into report->options.
absl::StatusOr<std::vector<std::unique_ptr<ServerProcess>>> StartRelays(const ServerProcess& root,
                                                                         Report* report) {
  const int count = absl::GetFlag(FLAGS_relays);
  std::vector<std::unique_ptr<ServerProcess>> relays;
  for (int j = 0; j < count; ++j) {
    RelayReport relay;
    relay.clients = report->options.clients / count + (j < report->options.clients % count);
    ServerProcessOptions options;
    options.binary = report->server_bin;
    options.config_text =
        RelayConfigText(relay.clients, report->options.codec);
    options.extra_args = {"--role=relay", "--upstream=" + root.target(),
                          absl::StrCat("--relay_id=bench-relay-", j + 1)};
    options.start_timeout = absl::GetFlag(FLAGS_server_start_timeout);
    absl::StatusOr<std::unique_ptr<ServerProcess>> started = ServerProcess::Start(options);
    if (!started.ok()) {
      return absl::Status(started.status().code(),
                          absl::StrCat("relay ", j + 1, ": ", started.status().message()));
    }
    relay.target = (*started)->target();
    std::fprintf(stderr, "tally-bench: started relay %d (pid %d) on %s, upstream %s\n", j + 1,
                 static_cast<int>((*started)->pid()), relay.target.c_str(),
                 root.target().c_str());
    report->options.client_targets.push_back(relay.target);
    report->relays.push_back(std::move(relay));
    relays.push_back(*std::move(started));
  }
  return relays;
}

// Records what the relays used since `cpu_before` and stops them.
void StopRelays(const std::vector<std::unique_ptr<ServerProcess>>& relays,
                const std::vector<absl::StatusOr<double>>& cpu_before, Report* report) {
  for (size_t j = 0; j < relays.size(); ++j) {
    RelayReport& relay = report->relays[j];
    if (auto peak = relays[j]->PeakRssBytes(); peak.ok()) relay.peak_rss = *peak;
    if (auto cpu = relays[j]->CpuSeconds(); cpu.ok() && cpu_before[j].ok()) {
      relay.cpu_seconds = *cpu - *cpu_before[j];
    }
    const absl::Status stopped = relays[j]->Stop();
    relay.stop_status = stopped.ToString();
    if (!stopped.ok()) {
      std::fprintf(stderr, "tally-bench: relay %zu: %s\n--- relay log tail ---\n%s\n", j + 1,
                   relay.stop_status.c_str(), relays[j]->LogTail().c_str());
    }
  }
}

// Runs the load; with a spawned `server` (and relays), measures them and
// stops them.
absl::StatusOr<LoadResult> MeasureLoad(ServerProcess* server,
                                       const std::vector<std::unique_ptr<ServerProcess>>& relays,
                                       Report* report) {
  constexpr absl::Duration kSampleInterval = absl::Milliseconds(250);
  const std::string server_proc = server != nullptr ? absl::StrCat("/proc/", server->pid()) : "";
  std::optional<ProcessMonitor> server_monitor;
  if (server != nullptr) {
    server_monitor.emplace(server_proc, kSampleInterval);
    report->server.before = server_monitor->Sample();
  }
  ProcessMonitor client_monitor("/proc/self", kSampleInterval);
  report->client.before = client_monitor.Sample();
  report->options.on_all_joined = [&] {
    report->client.joined = client_monitor.Sample();
    if (server == nullptr) return;
    report->server.joined = server_monitor->Sample();
    if (auto connections = CountEstablishedConnections(server_proc, server->port());
        connections.ok()) {
      report->server_connections_joined = *connections;
    }
  };
  const double client_cpu_before = ProcessCpuSeconds();
  absl::StatusOr<double> server_cpu_before =
      server != nullptr ? server->CpuSeconds() : absl::StatusOr<double>(0.0);
  std::vector<absl::StatusOr<double>> relay_cpu_before;
  for (const auto& relay : relays) relay_cpu_before.push_back(relay->CpuSeconds());
  absl::StatusOr<LoadResult> load = RunLoad(report->options);
  report->options.on_all_joined = nullptr;  // It refers to this frame.
  client_monitor.Sample();
  report->client.max = client_monitor.Max();
  if (server_monitor.has_value()) {
    server_monitor->Sample();
    report->server.max = server_monitor->Max();
  }
  StopRelays(relays, relay_cpu_before, report);
  report->client_cpu_seconds = ProcessCpuSeconds() - client_cpu_before;
  if (auto peak = ReadPeakRssBytes("/proc/self"); peak.ok()) report->client_peak_rss = *peak;
  if (server == nullptr) return load;

  if (auto peak = server->PeakRssBytes(); peak.ok()) report->server_peak_rss_proc = *peak;
  if (auto cpu = server->CpuSeconds(); cpu.ok() && server_cpu_before.ok()) {
    report->server_cpu_seconds = *cpu - *server_cpu_before;
  }
  g_server_pid.store(0);
  const absl::Status stopped = server->Stop();
  report->server_stop_status = stopped.ToString();
  report->server_exit_max_rss = server->exit_max_rss_bytes();
  if (!stopped.ok() || !load.ok()) {
    std::fprintf(stderr, "tally-bench: server: %s\n--- server log tail ---\n%s\n",
                 report->server_stop_status.c_str(), server->LogTail().c_str());
  }
  return load;
}

absl::Status ValidateRelayFlags(const Report& report) {
  const int relays = absl::GetFlag(FLAGS_relays);
  if (relays == 0) return absl::OkStatus();
  if (relays < 0) return absl::InvalidArgumentError("--relays must be >= 0");
  if (report.mode != "spawn") {
    return absl::InvalidArgumentError("--relays starts its own root: leave --target empty");
  }
  if (absl::GetFlag(FLAGS_schedule) != "sync") {
    return absl::InvalidArgumentError("--relays: relays forward synchronous rounds only");
  }
  if (report.options.clients < relays) {
    return absl::InvalidArgumentError("--relays: need at least one client per relay");
  }
  return absl::OkStatus();
}

absl::Status Run() {
  Report report;
  report.machine = ReadMachine();
  report.cores = std::thread::hardware_concurrency();
  report.options = LoadOptionsFromFlags();
  absl::StatusOr<std::optional<compress::CodecSpec>> codec = CodecFromFlags();
  if (!codec.ok()) return codec.status();
  report.options.codec = *codec;
  if (const std::string driver = absl::GetFlag(FLAGS_driver);
      driver != "threads" && driver != "callback") {
    return absl::InvalidArgumentError("--driver: must be threads or callback, not " + driver);
  }
  if (absl::Status valid = ValidateLoadOptions(report.options); !valid.ok()) return valid;
  report.target = absl::GetFlag(FLAGS_target);
  report.mode = report.target.empty() ? "spawn" : "target";
  if (absl::Status valid = ValidateRelayFlags(report); !valid.ok()) return valid;
  std::unique_ptr<ServerProcess> server;  // Stopped and cleaned up on every return.
  std::vector<std::unique_ptr<ServerProcess>> relays;  // Likewise (before the server).
  if (report.target.empty()) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> started = StartServer(report.options, &report);
    if (!started.ok()) return started.status();
    server = *std::move(started);
    absl::StatusOr<std::vector<std::unique_ptr<ServerProcess>>> started_relays =
        StartRelays(*server, &report);
    if (!started_relays.ok()) return started_relays.status();
    relays = *std::move(started_relays);
  }
  report.options.target = report.target;

  absl::StatusOr<LoadResult> load = MeasureLoad(server.get(), relays, &report);
  if (!load.ok()) return load.status();
  report.load = *std::move(load);
  report.machine.loadavg_after = LoadAverage();
  PrintSummary(report);
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (json_path.empty()) return absl::OkStatus();
  if (absl::Status written = WriteFile(json_path, ToJson(report)); !written.ok()) return written;
  absl::PrintF("  JSON written to %s\n", json_path);
  return absl::OkStatus();
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) {
  // As in tally-server: ~1 MiB chunk buffers are reused from the heap rather
  // than mmapped and faulted in afresh for every message.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  // As in tally-server: no Mutex deadlock detection (Debian's Abseil has it
  // on; it took 31% of this process's CPU driving 10,000 clients).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // --help lists this file's flags (absl's default wants a file named like
  // the binary, and "tally-bench" has a dash).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "bench/tally_bench.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "Load generator for tally-server: K concurrent clients push dense float32 (or\n"
      "--codec compressed) updates of d parameters; reports updates/s, MB/s ingested,\n"
      "PushUpdate latency and peak RSS.\n"
      "  tally-bench [--clients=10] [--params=10000000] [--rounds=5] [--target=host:port]\n"
      "              [--codec=int8 | --codec=topk --codec_ratio=0.01] [--relays=2]");
  absl::ParseCommandLine(argc, argv);
  tally::bench::StartSignalThread();
  const absl::Status status = tally::bench::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "tally-bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
