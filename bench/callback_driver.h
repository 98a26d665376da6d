// The callback driver of tally-bench: every simulated client is a state
// machine of gRPC callback calls (Join, GetTask long-polls, PullModel,
// PushUpdate, Leave) instead of a thread, so that one process holds
// thousands of clients, each with its connection and its long-poll open at
// the server at once, with a few threads of its own (`threads` workers that
// run the clients' next steps and timers) beside gRPC's.
//
// Same protocol and measurements as the thread driver (bench/load_generator.h):
// Join, barrier, warmup_rounds + rounds of GetTask → (PullModel) →
// PushUpdate, a final GetTask. Pushes are hand-framed chunk messages
// (proto/chunk_wire.h) whose data slices point into the client's payload
// without copying it; pulls parse each ModelChunk and count its data bytes.
// The payloads: each client's delta (RandomDelta, its DeltaSeed) as float32,
// or encoded in options.codec; beyond kMaxDistinctPayloads clients, client i
// reuses payload i % kMaxDistinctPayloads (memory: 10,000 clients of a 1M-
// parameter model would otherwise hold 40 GB of deltas). Joins are started
// at most kJoinWindow at a time.
//
// Thread safety: RunCallbackClients() blocks until every client finished;
// one run at a time.
#ifndef TALLY_BENCH_CALLBACK_DRIVER_H_
#define TALLY_BENCH_CALLBACK_DRIVER_H_

#include <vector>

#include "absl/status/status.h"
#include "bench/load_generator.h"
#include "bench/load_run.h"

namespace tally::bench {

inline constexpr int kMaxDistinctPayloads = 64;
inline constexpr int kJoinWindow = 256;

// Runs options.clients clients and fills reports[i] with client i's calls
// (reports has options.clients entries); the first error is in `state`.
void RunCallbackClients(const LoadOptions& options, RunState& state,
                        std::vector<ClientReport>& reports);

}  // namespace tally::bench

#endif  // TALLY_BENCH_CALLBACK_DRIVER_H_
