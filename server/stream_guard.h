// StreamGuard: the watchdog of the server's long streams (docs/availability.md).
// On its own thread, every tick, it asks each registered stream to check
// its progress (a stream that made none within its limit cuts itself: an
// upload is aborted and its slot freed, a download releases the model it
// holds), then bounds the old model versions that PullModel streams keep
// alive: beyond limits.max_pinned_model_versions versions or
// limits.max_pinned_model_bytes bytes, the streams holding the oldest
// versions are cut. Independent of gRPC: streams implement GuardedStream.
//
// Thread-safe. A stream's methods run on the guard's thread, one call at a
// time, and never once Remove(stream) has returned; lock order: the guard's
// lock, then the stream's own, then the coordinator's. Streams must not call
// Add or Remove while holding a lock their methods take.
#ifndef TALLY_SERVER_STREAM_GUARD_H_
#define TALLY_SERVER_STREAM_GUARD_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/sync.h"
#include "server/metrics.h"

namespace tally::server {

class GuardedStream {
 public:
  virtual ~GuardedStream() = default;
  // Every tick: the stream cuts itself if it is past its progress limits.
  // Returns true once the stream has ended (finished, cut or not): what it
  // holds is being released and no longer counts as pinned.
  virtual bool CheckProgress(absl::Time now) = 0;
  // Cut by the pinned-version bound: end the stream with `status` and
  // release what it holds.
  virtual void Cut(const absl::Status& status) = 0;
};

// The end of a guarded stream, for its implementation: finished once, then
// reset if the client has not taken the end (the status, queued behind
// messages it does not read) within a grace time, so that the stream's
// buffers are dropped. Not thread-safe (the stream's lock guards it).
class StreamEnd {
 public:
  bool finished() const { return finished_; }
  void Finished(absl::Time now) {
    finished_ = true;
    finished_at_ = now;
  }
  void Reset() { reset_ = true; }
  // Whether the stream is to be reset now (true once).
  bool ResetDue(absl::Time now, absl::Duration grace) {
    if (!finished_ || reset_ || now - finished_at_ < grace) return false;
    reset_ = true;
    return true;
  }

 private:
  bool finished_ = false;
  bool reset_ = false;
  absl::Time finished_at_;
};

// What a PullModel stream keeps alive: the version it serves and its
// segments (identity and bytes; segments are shared between streams).
struct PinnedModel {
  uint64_t version = 0;
  std::vector<std::pair<const void*, uint64_t>> segments;
};

// The pinned-version bound on its own (pure; for StreamGuard and tests).
// `pins` are the streams' pins, `current` the current version (never counted
// as pinned). Returns the indices of the pins to cut, all the pins of the
// oldest version first, until at most `max_versions` versions and
// `max_bytes` bytes (distinct segments older than `current`) remain; *versions
// and *bytes receive what remains pinned once they are cut.
std::vector<size_t> PinsToCut(const std::vector<const PinnedModel*>& pins, uint64_t current,
                              uint32_t max_versions, uint64_t max_bytes, uint32_t* versions,
                              uint64_t* bytes);

class StreamGuard {
 public:
  struct Options {
    Clock* clock = nullptr;
    absl::Duration tick = absl::Milliseconds(100);
    uint32_t max_pinned_versions = 4;
    uint64_t max_pinned_bytes = uint64_t{1} << 30;
    std::function<uint64_t()> current_version;  // The model version served now.
    ServerMetrics* metrics = nullptr;
  };

  explicit StreamGuard(Options options);
  ~StreamGuard();  // Stops the thread; every stream must have been removed.
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

  // `pin`: a PullModel stream's model (null: none). Not owned.
  void Add(GuardedStream* stream, const PinnedModel* pin = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for a running call into `stream` to return.
  void Remove(GuardedStream* stream) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();
  void Tick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  tally::Mutex mu_;
  struct Entry {
    const PinnedModel* pin = nullptr;
    bool ended = false;  // Finished or cut: releasing, no longer counted.
  };
  absl::flat_hash_map<GuardedStream*, Entry> streams_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_STREAM_GUARD_H_
