// ProcessMonitor: samples a process (/proc/<pid>: resident set and threads)
// on a thread of its own, every `interval` until it is destroyed, and keeps
// the largest value of each seen, and of the open file descriptors counted
// by Sample(). tally-bench watches the server it started, and itself,
// during the load.
//
// Thread-safe.
#ifndef TALLY_BENCH_PROCESS_MONITOR_H_
#define TALLY_BENCH_PROCESS_MONITOR_H_

#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "bench/server_process.h"
#include "core/sync.h"

namespace tally::bench {

class ProcessMonitor {
 public:
  // `proc_dir`: e.g. "/proc/self" or "/proc/1234". Samples once at once.
  ProcessMonitor(std::string proc_dir, absl::Duration interval);
  ~ProcessMonitor();

  ProcessMonitor(const ProcessMonitor&) = delete;
  ProcessMonitor& operator=(const ProcessMonitor&) = delete;

  // Samples now, file descriptors too (counted in Max()); nullopt if /proc
  // could not be read.
  std::optional<ProcessSample> Sample() ABSL_LOCKS_EXCLUDED(mu_);

  // The largest rss_bytes, threads (every sample) and fds (Sample()'s) so
  // far, each on its own; zeros if none could be read.
  ProcessSample Max() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::optional<ProcessSample> Take(bool count_fds) ABSL_LOCKS_EXCLUDED(mu_);
  void Run();

  const std::string proc_dir_;
  const absl::Duration interval_;
  mutable tally::Mutex mu_;
  ProcessSample max_ ABSL_GUARDED_BY(mu_);
  tally::Notification stop_;
  std::thread thread_;
};

}  // namespace tally::bench

#endif  // TALLY_BENCH_PROCESS_MONITOR_H_
