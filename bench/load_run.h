// What one tally-bench run records, shared by its two drivers (the thread
// driver in bench/load_generator.cc and bench/callback_driver.h): the timed
// calls of every client, the run's first error and start barrier, and the
// summary of the samples into a LoadResult. Internal to bench/.
#ifndef TALLY_BENCH_LOAD_RUN_H_
#define TALLY_BENCH_LOAD_RUN_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/load_generator.h"
#include "core/sync.h"

namespace tally::bench {

// One timed PullModel or PushUpdate call.
struct CallSample {
  int round_index = 0;        // Among the measured rounds.
  double start = 0, end = 0;  // Seconds since the run's epoch.
  uint64_t bytes = 0;         // Payload bytes; 0 for a duplicate push.
  bool duplicate = false;     // Pushes: the server already had the update.
  uint32_t attempts = 0;      // Pushes: including retries.
};

// One client's measured calls. Written by whoever drives that client only.
struct ClientReport {
  std::vector<CallSample> pushes;
  std::vector<CallSample> pulls;  // With LoadOptions::pull.
  // When this client saw a task past its last measured round (the model with
  // that round applied is published); < 0 if it did not.
  double final_seen = -1;
};

// Shared state of one run: the first error, the stop flag, the start barrier
// and the clock. Thread-safe.
class RunState {
 public:
  RunState(int clients, const std::atomic<bool>* external_stop)
      : clients_(clients), external_stop_(external_stop), epoch_(Clock::now()) {}

  // Records the first error and stops every client.
  void Fail(absl::Status status);
  absl::Status first_error() const;
  bool stopped() const {
    return failed_.load() || (external_stop_ != nullptr && external_stop_->load());
  }

  // Every client calls this exactly once; true for the last one, which
  // must then call Release().
  bool Arrive();
  // Opens the barrier.
  void Release();
  // Returns when the barrier is open.
  void WaitForRelease() const;

  // When the last client arrived at the start barrier.
  double setup_seconds() const;

  double Now() const { return std::chrono::duration<double>(Clock::now() - epoch_).count(); }

 private:
  using Clock = std::chrono::steady_clock;

  bool Released() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return released_; }

  const int clients_;
  const std::atomic<bool>* const external_stop_;
  const Clock::time_point epoch_;
  std::atomic<bool> failed_{false};
  mutable tally::Mutex mu_;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  double setup_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

// Client `index`'s id (options.id_prefix + index) and the seed of its delta.
std::string ClientId(int index, const LoadOptions& options);
uint64_t DeltaSeed(int index, const LoadOptions& options);
// Where client `index` connects (options.client_targets round-robin, or
// options.target).
const std::string& TargetOf(int index, const LoadOptions& options);

// n floats uniform in [-1e-3, 1e-3), from a splitmix64 stream (fast enough to
// fill gigabytes of deltas in a second or two).
std::vector<float> RandomDelta(size_t n, uint64_t seed);

// FAILED_PRECONDITION unless the joined model has options.params parameters.
absl::Status CheckParams(uint64_t server_params, const LoadOptions& options);

// The measured numbers of `reports` (see LoadResult); INTERNAL if no push
// was measured.
absl::StatusOr<LoadResult> Summarize(const LoadOptions& options,
                                     const std::vector<ClientReport>& reports);

}  // namespace tally::bench

#endif  // TALLY_BENCH_LOAD_RUN_H_
