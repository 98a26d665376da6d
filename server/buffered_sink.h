// BufferedSink: asynchronous schedules (aggregators/schedules/schedule.h).
// Each upload is received whole into a pooled model-sized buffer (validated
// as it arrives; compressed uploads decoded into it at the end) and kept
// under its handle until the schedule flushes or drops it. Combine: with
// the schedule's weights, g = sum of weight * delta computed exactly
// (aggregators::ExactCombination), or a robust rule over the flush's updates
// scaled by the sum of the weights; block by block so that the optimizer
// runs on each block while it is in cache. The contract:
// server/update_sink.h.
#ifndef TALLY_SERVER_BUFFERED_SINK_H_
#define TALLY_SERVER_BUFFERED_SINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "core/buffer_pool.h"
#include "core/sync.h"
#include "server/rule_runner.h"
#include "server/update_sink.h"

namespace tally::server {

class BufferedSink final : public UpdateSink {
 public:
  struct Options {
    size_t num_params = 0;
    float max_abs_value = 0;
    bool robust = false;  // The step has a robust rule.
    std::shared_ptr<BufferPool> pool;  // Model-sized: uploads and aggregates.
  };
  BufferedSink(Options options, RuleRunner rule) : options_(std::move(options)), rule_(rule) {}

  absl::StatusOr<std::unique_ptr<SinkSlot>> Open(const UpdateHeaderInfo& h,
                                                 RejectReason* reason) override;
  absl::Status Take(SinkSlot& slot, uint64_t first, absl::Span<const absl::string_view> pieces,
                    RejectReason* reason) override;
  absl::Status TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                           absl::string_view payload, RejectReason* reason) override;
  aggregators::UpdateHandle Commit(SinkSlot& slot, const UpdateHeaderInfo& h) override;
  bool Undo(SinkSlot& slot) override;
  std::string Drop(aggregators::UpdateHandle handle) override;
  absl::StatusOr<std::vector<float>> Combine(const SinkBatch& batch, const BlockFn& block) override;
  void Discard(const SinkBatch& batch) override;
  size_t stored() const;
  // Takes the batch's deltas out of the store, in the batch's order (the
  // caller gives the buffers back to the pool): the PrivateSink's Combine.
  std::vector<std::vector<float>> TakeDeltas(const SinkBatch& batch);

 private:
  struct Stored {
    std::vector<float> delta;
    std::string client_id;
    std::string update_id;
  };
  // Takes the batch's updates out of the store (a schedule names only live
  // handles).
  std::vector<Stored> TakeBatch(const SinkBatch& batch);
  // The exact weighted sum, built in the first update's buffer.
  absl::StatusOr<std::vector<float>> CombineLinear(const SinkBatch& batch,
                                                   std::vector<Stored>& updates,
                                                   const BlockFn& block);
  // The rule over the updates (canonical order), scaled by the weights' sum.
  absl::StatusOr<std::vector<float>> CombineRobust(const SinkBatch& batch,
                                                   std::vector<Stored>& updates,
                                                   const BlockFn& block);

  const Options options_;
  RuleRunner rule_;
  std::vector<float> arena_;  // Robust rules; Combine (worker thread) only.
  mutable tally::Mutex mu_;
  aggregators::UpdateHandle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<aggregators::UpdateHandle, Stored> stored_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::server

#endif  // TALLY_SERVER_BUFFERED_SINK_H_
