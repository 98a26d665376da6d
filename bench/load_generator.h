// The tally-bench load driver: K simulated clients push dense float32
// updates of d parameters to one tally server, round after round, and time
// every PushUpdate (and, with `pull`, every PullModel before it). With
// `codec` set they push compressed updates instead (bench/encoded_client.h),
// encoded once before the measurement.
//
// Each client joins, pre-generates one random delta (seeded by its index)
// and, with a codec, encodes it, waits until every client has joined, then
// for warmup_rounds + rounds rounds asks for a TRAIN task, pulls the task's
// model version (with `pull`) and pushes the delta against the task's round
// and base version. The server must run synchronous rounds of exactly
// `clients` updates (of every load generator driving it), so every client
// pushes once per round. With `async` (a server on an asynchronous schedule)
// there are no rounds: each client asks for a task and pushes, warmup_rounds
// + rounds times, as fast as the server lets it; "round" r then means every
// client's r-th update.
// Two drivers run the clients: kThreads, one thread per client through the
// C++ SDK (or an EncodedClient); kCallback, every client a state machine of
// gRPC callback calls, so that thousands of clients need no thread each
// (bench/callback_driver.h).
//
// Thread safety: RunLoad() is self-contained; it may be called from any
// thread, one run at a time per server.
#ifndef TALLY_BENCH_LOAD_GENERATOR_H_
#define TALLY_BENCH_LOAD_GENERATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "compress/codec.h"
#include "tally/client.h"

namespace tally::bench {

struct LoadOptions {
  std::string target;                            // gRPC target "host:port". Required.
  // Where the load clients connect, client i to client_targets[i % size]
  // (e.g. relays in front of `target`); empty: all to `target`. Admin
  // GetStatus after the run always asks `target`.
  std::vector<std::string> client_targets;
  int clients = 10;                              // Concurrent clients, >= 1.
  // Client i's id is id_prefix + i: several load generators (processes) can
  // drive one server with distinct prefixes.
  std::string id_prefix = "bench-";
  // Every client its own channel and TCP connection (ClientOptions::
  // own_connection), as real devices; false: gRPC shares one connection
  // among the clients of this process.
  bool connection_per_client = false;
  // Every client pulls the task's model version (PullModel) each round
  // before it pushes, as in a real round.
  bool pull = false;
  // Called once, when every client has joined and before the first round
  // (e.g. to sample the server with all clients connected).
  std::function<void()> on_all_joined;
  enum class Driver { kThreads, kCallback };
  Driver driver = Driver::kThreads;
  int driver_threads = 2;  // kCallback: threads that run the clients' steps and timers.
  uint64_t params = 10'000'000;                  // d; must equal the server model's size.
  int rounds = 5;                                // Measured rounds, >= 1.
  int warmup_rounds = 1;                         // Rounds run first and left out of the stats.
  uint64_t seed = 1;                             // Deltas and client SDK seeds derive from it.
  size_t chunk_bytes = size_t{1} << 20;          // SDK upload chunk size.
  absl::Duration task_wait = absl::Seconds(30);  // GetTask long-poll budget.
  bool async = false;  // The server runs an asynchronous schedule.
  // Give up when no TRAIN task for the next round arrives within this.
  absl::Duration round_timeout = absl::Minutes(10);
  // Set from outside (e.g. a signal handler thread) to abort the run.
  const std::atomic<bool>* stop = nullptr;
  // Push updates in this codec: each client encodes its delta once during
  // setup (compress::Encode; seed = the client's delta seed) and pushes that
  // payload every round through an EncodedClient, so that what is measured
  // is the server's ingest, not the client's encoder. The server must accept
  // the codec (compression.upload). Unset: dense float32 through the SDK.
  std::optional<compress::CodecSpec> codec;
};

// Latency of one kind of call over every client and measured round;
// nearest-rank percentiles, seconds.
struct LatencyStats {
  uint64_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, mean = 0, max = 0;
};

struct LoadResult {
  // Measured rounds only.
  uint64_t updates_accepted = 0;
  uint64_t updates_duplicate = 0;  // Acknowledged as already known: not counted.
  uint64_t bytes_accepted = 0;     // Payload bytes (as sent) of accepted updates.
  // 4 * params per accepted update: the float32 bytes the payloads stand for.
  uint64_t represented_bytes = 0;
  // From the start of the first measured call (PullModel with `pull`, else
  // PushUpdate) until the model containing the last measured round was
  // published (seen as the next round's TRAIN task).
  double wall_seconds = 0;
  // From the first measured PushUpdate's start to the last one's end.
  double push_wall_seconds = 0;
  bool final_round_observed = false;  // False: wall_seconds ends at the last push.
  double updates_per_second = 0;
  double mb_per_second = 0;              // bytes_accepted / 1e6 / wall_seconds.
  double represented_gb_per_second = 0;  // represented_bytes / 1e9 / wall_seconds.
  LatencyStats push;                     // Whole PushUpdate calls.
  // Per measured round: its first call's start to its last push's end.
  std::vector<double> round_seconds;
  // The sum over measured rounds of first push start to last push end, and
  // bytes_accepted / 1e6 over it: the upload phases alone.
  double upload_seconds = 0;
  double upload_mb_per_second = 0;
  // With `pull`: model bytes received by the measured PullModel calls, the
  // sum over rounds of first pull start to last pull end, the rate over it,
  // and each call's latency.
  uint64_t bytes_downloaded = 0;
  double download_seconds = 0;
  double download_mb_per_second = 0;
  LatencyStats pull;
  // (bytes_downloaded + bytes_accepted) / 1e6 / wall_seconds: whole rounds.
  double round_mb_per_second = 0;
  uint64_t push_attempts = 0;         // Including SDK retries.
  double setup_seconds = 0;           // Client creation, Join, delta generation, encoding.
  double total_seconds = 0;           // The whole RunLoad.
  // Admin GetStatus after the run; status_error says why it is missing.
  bool has_server_status = false;
  ServerStatusInfo server_status;
  std::string server_status_error;
};

// Checks the counts and sizes in `options` (not the target).
absl::Status ValidateLoadOptions(const LoadOptions& options);

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options);

// Nearest-rank percentile (0 < p <= 100) of an ascending vector; 0 if empty.
double Percentile(const std::vector<double>& sorted, double p);

}  // namespace tally::bench

#endif  // TALLY_BENCH_LOAD_GENERATOR_H_
