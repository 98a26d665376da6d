#include "bench/load_run.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::bench {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// The earliest start and the latest end of some calls.
struct Interval {
  double start = kInfinity;
  double end = 0;

  void Add(const CallSample& s) {
    start = std::min(start, s.start);
    end = std::max(end, s.end);
  }
  bool empty() const { return start == kInfinity; }
  double seconds() const { return empty() ? 0 : end - start; }
};

LatencyStats Latencies(std::vector<double> seconds) {
  LatencyStats stats;
  if (seconds.empty()) return stats;
  std::sort(seconds.begin(), seconds.end());
  stats.count = seconds.size();
  stats.p50 = Percentile(seconds, 50);
  stats.p90 = Percentile(seconds, 90);
  stats.p99 = Percentile(seconds, 99);
  stats.max = seconds.back();
  double sum = 0;
  for (double s : seconds) sum += s;
  stats.mean = sum / seconds.size();
  return stats;
}

}  // namespace

void RunState::Fail(absl::Status status) {
  tally::MutexLock lock(&mu_);
  if (first_error_.ok()) first_error_ = std::move(status);
  failed_.store(true);
}

absl::Status RunState::first_error() const {
  tally::MutexLock lock(&mu_);
  return first_error_;
}

bool RunState::Arrive() {
  tally::MutexLock lock(&mu_);
  if (++arrived_ != clients_) return false;
  setup_seconds_ = Now();
  return true;
}

void RunState::Release() {
  tally::MutexLock lock(&mu_);
  released_ = true;
}

void RunState::WaitForRelease() const {
  tally::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &RunState::Released));
}

double RunState::setup_seconds() const {
  tally::MutexLock lock(&mu_);
  return setup_seconds_;
}

std::string ClientId(int index, const LoadOptions& options) {
  return absl::StrCat(options.id_prefix, index);
}

uint64_t DeltaSeed(int index, const LoadOptions& options) {
  return options.seed * 1000003 + static_cast<uint64_t>(index) + 1;
}

const std::string& TargetOf(int index, const LoadOptions& options) {
  if (options.client_targets.empty()) return options.target;
  return options.client_targets[static_cast<size_t>(index) % options.client_targets.size()];
}

std::vector<float> RandomDelta(size_t n, uint64_t seed) {
  std::vector<float> delta(n);
  uint64_t state = seed;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    delta[i] = (static_cast<float>(z >> 40) * 0x1p-24f - 0.5f) * 2e-3f;
  }
  return delta;
}

absl::Status CheckParams(uint64_t server_params, const LoadOptions& options) {
  if (server_params == options.params) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("the server's model has ", server_params,
                                                    " parameters but --params=", options.params));
}

absl::StatusOr<LoadResult> Summarize(const LoadOptions& options,
                                     const std::vector<ClientReport>& reports) {
  LoadResult result;
  std::vector<double> push_latencies, pull_latencies;
  Interval all, pushes;
  double first_final = kInfinity;
  bool all_final = true;
  // Per measured round: every call, the pushes, the pulls.
  std::vector<Interval> rounds(options.rounds), push_rounds(options.rounds),
      pull_rounds(options.rounds);
  for (const ClientReport& report : reports) {
    all_final = all_final && report.final_seen >= 0;
    if (report.final_seen >= 0) first_final = std::min(first_final, report.final_seen);
    for (const CallSample& s : report.pushes) {
      push_latencies.push_back(s.end - s.start);
      all.Add(s);
      pushes.Add(s);
      rounds[s.round_index].Add(s);
      push_rounds[s.round_index].Add(s);
      result.bytes_accepted += s.bytes;
      result.push_attempts += s.attempts;
      (s.duplicate ? result.updates_duplicate : result.updates_accepted) += 1;
    }
    for (const CallSample& s : report.pulls) {
      pull_latencies.push_back(s.end - s.start);
      all.Add(s);
      rounds[s.round_index].Add(s);
      pull_rounds[s.round_index].Add(s);
      result.bytes_downloaded += s.bytes;
    }
  }
  if (push_latencies.empty()) return absl::InternalError("no measured PushUpdate calls");
  result.push_wall_seconds = pushes.seconds();
  result.final_round_observed = all_final;
  const double end = all_final ? std::max(all.end, first_final) : all.end;
  result.wall_seconds = end - all.start;
  result.updates_per_second = result.updates_accepted / result.wall_seconds;
  result.mb_per_second = result.bytes_accepted / 1e6 / result.wall_seconds;
  result.represented_bytes = result.updates_accepted * options.params * sizeof(float);
  result.represented_gb_per_second = result.represented_bytes / 1e9 / result.wall_seconds;
  result.round_mb_per_second =
      (result.bytes_accepted + result.bytes_downloaded) / 1e6 / result.wall_seconds;
  for (int r = 0; r < options.rounds; ++r) {
    // A round's time runs to its last push: pulls end before their pushes.
    result.round_seconds.push_back(rounds[r].empty() ? 0
                                                     : push_rounds[r].end - rounds[r].start);
    result.upload_seconds += push_rounds[r].seconds();
    result.download_seconds += pull_rounds[r].seconds();
  }
  if (result.upload_seconds > 0) {
    result.upload_mb_per_second = result.bytes_accepted / 1e6 / result.upload_seconds;
  }
  if (result.download_seconds > 0) {
    result.download_mb_per_second = result.bytes_downloaded / 1e6 / result.download_seconds;
  }
  result.push = Latencies(std::move(push_latencies));
  result.pull = Latencies(std::move(pull_latencies));
  return result;
}

}  // namespace tally::bench
