// MeanSink: the exact streaming weighted mean of a round's updates
// (docs/aggregation.md). float32 chunks join an integer sum as they arrive
// (aggregators::StripedAccumulator: the sum does not depend on arrival
// order; O(model) memory for any number of uploads) and are journaled
// (server/undo_journal.h) so that an aborted upload is subtracted exactly;
// compressed uploads are decoded whole and checked before they join.
// Combine: sum / sum of weights. The UpdateSink contract: server/update_sink.h.
#ifndef TALLY_SERVER_MEAN_SINK_H_
#define TALLY_SERVER_MEAN_SINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aggregators/rules/striped_accumulator.h"
#include "core/buffer_pool.h"
#include "core/clock.h"
#include "server/journal_pool.h"
#include "server/update_sink.h"

namespace tally::server {

class MeanSink final : public UpdateSink {
 public:
  struct Options {
    size_t num_params = 0;
    float max_abs_value = 0;
    // limits.undo_memory_bytes and spool_dir: the journals' budget and where
    // they spill; journal files kept idle for reuse.
    uint64_t undo_memory_bytes = 0;
    std::string spool_dir;
    size_t max_idle_journal_files = 0;
    Clock* clock = nullptr;
    std::shared_ptr<BufferPool> pool;  // Model-sized: the aggregates.
  };
  explicit MeanSink(Options options);

  absl::StatusOr<std::unique_ptr<SinkSlot>> Open(const UpdateHeaderInfo& h,
                                                 RejectReason* reason) override;
  absl::Status Take(SinkSlot& slot, uint64_t first, absl::Span<const absl::string_view> pieces,
                    RejectReason* reason) override;
  absl::Status TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                           absl::string_view payload, RejectReason* reason) override;
  aggregators::UpdateHandle Commit(SinkSlot& slot, const UpdateHeaderInfo& h) override;
  bool Undo(SinkSlot& slot) override;
  std::string Drop(aggregators::UpdateHandle) override { return std::string(); }
  absl::StatusOr<std::vector<float>> Combine(const SinkBatch& batch, const BlockFn& block) override;
  void Discard(const SinkBatch& batch) override;

 private:
  void Release(SinkSlot& slot);

  const Options options_;
  JournalPool journals_;  // Under the Coordinator's lock (Open, Commit, Undo).
  // Created by the first upload, reset and reused by the next batch (its
  // lanes, 8 bytes a parameter, are allocated once).
  std::unique_ptr<aggregators::StripedAccumulator> sum_;
  uint64_t weight_sum_ = 0;  // Of the committed updates.
  aggregators::UpdateHandle committed_ = 0;
  BufferPool decode_pool_;  // Scratch for compressed uploads.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_MEAN_SINK_H_
