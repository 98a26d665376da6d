#include "server/stream_guard.h"

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace tally::server {
namespace {

// Versions (older than `current`) and bytes of their distinct segments held
// by the pins not marked in `cut`.
void Measure(const std::vector<const PinnedModel*>& pins, const std::vector<bool>& cut,
             uint64_t current, uint32_t* versions, uint64_t* bytes) {
  absl::flat_hash_set<uint64_t> held;
  absl::flat_hash_set<const void*> counted;
  *bytes = 0;
  for (size_t i = 0; i < pins.size(); ++i) {
    if (cut[i] || pins[i]->version >= current) continue;
    held.insert(pins[i]->version);
    for (const auto& [segment, size] : pins[i]->segments) {
      if (counted.insert(segment).second) *bytes += size;
    }
  }
  *versions = static_cast<uint32_t>(held.size());
}

}  // namespace

std::vector<size_t> PinsToCut(const std::vector<const PinnedModel*>& pins, uint64_t current,
                              uint32_t max_versions, uint64_t max_bytes, uint32_t* versions,
                              uint64_t* bytes) {
  std::vector<bool> cut(pins.size(), false);
  Measure(pins, cut, current, versions, bytes);
  // Old versions, oldest first, with the pins that hold each.
  std::map<uint64_t, std::vector<size_t>> by_version;
  for (size_t i = 0; i < pins.size(); ++i) {
    if (pins[i]->version < current) by_version[pins[i]->version].push_back(i);
  }
  std::vector<size_t> to_cut;
  for (const auto& [version, holders] : by_version) {
    if (*versions <= max_versions && *bytes <= max_bytes) break;
    for (size_t i : holders) {
      cut[i] = true;
      to_cut.push_back(i);
    }
    Measure(pins, cut, current, versions, bytes);
  }
  return to_cut;
}

StreamGuard::StreamGuard(Options options) : options_(std::move(options)) {
  thread_ = std::thread([this] { Loop(); });
}

StreamGuard::~StreamGuard() {
  {
    tally::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void StreamGuard::Add(GuardedStream* stream, const PinnedModel* pin) {
  tally::MutexLock lock(&mu_);
  streams_[stream] = Entry{pin};
}

void StreamGuard::Remove(GuardedStream* stream) {
  tally::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void StreamGuard::Loop() {
  tally::MutexLock lock(&mu_);
  while (true) {
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), options_.tick);
    if (stopping_) return;
    Tick();
  }
}

void StreamGuard::Tick() {
  const absl::Time now = options_.clock->Now();
  std::vector<GuardedStream*> holders;
  std::vector<const PinnedModel*> pins;
  for (auto& [stream, entry] : streams_) {
    if (stream->CheckProgress(now)) entry.ended = true;
    if (entry.pin == nullptr || entry.ended) continue;
    holders.push_back(stream);
    pins.push_back(entry.pin);
  }
  const uint64_t current = options_.current_version();
  uint32_t versions = 0;
  uint64_t bytes = 0;
  const std::vector<size_t> cut = PinsToCut(pins, current, options_.max_pinned_versions,
                                            options_.max_pinned_bytes, &versions, &bytes);
  options_.metrics->pinned_model_versions.Set(versions);
  options_.metrics->pinned_model_bytes.Set(static_cast<double>(bytes));
  for (size_t i : cut) {
    streams_[holders[i]].ended = true;
    options_.metrics->downloads_cut_pinned.Increment();
    holders[i]->Cut(absl::AbortedError(absl::StrCat(
        "model version ", pins[i]->version, " is no longer current (", current,
        ") and the server keeps at most limits.max_pinned_model_versions = ",
        options_.max_pinned_versions, " old versions / max_pinned_model_bytes = ",
        options_.max_pinned_bytes, " for downloads in progress; pull the current version")));
  }
}

}  // namespace tally::server
