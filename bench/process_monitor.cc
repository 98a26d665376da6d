#include "bench/process_monitor.h"

#include <algorithm>
#include <utility>

namespace tally::bench {

ProcessMonitor::ProcessMonitor(std::string proc_dir, absl::Duration interval)
    : proc_dir_(std::move(proc_dir)), interval_(interval) {
  thread_ = std::thread(&ProcessMonitor::Run, this);
}

ProcessMonitor::~ProcessMonitor() {
  stop_.Notify();
  thread_.join();
}

ProcessSample ProcessMonitor::Max() const {
  tally::MutexLock lock(&mu_);
  return max_;
}

std::optional<ProcessSample> ProcessMonitor::Sample() { return Take(/*count_fds=*/true); }

std::optional<ProcessSample> ProcessMonitor::Take(bool count_fds) {
  absl::StatusOr<ProcessSample> sample = ReadProcessSample(proc_dir_, count_fds);
  if (!sample.ok()) return std::nullopt;
  tally::MutexLock lock(&mu_);
  max_.rss_bytes = std::max(max_.rss_bytes, sample->rss_bytes);
  max_.fds = std::max(max_.fds, sample->fds);
  max_.threads = std::max(max_.threads, sample->threads);
  return *sample;
}

void ProcessMonitor::Run() {
  while (!stop_.WaitForNotificationWithTimeout(interval_)) Take(/*count_fds=*/false);
}

}  // namespace tally::bench
