// The update sink: where the bytes of accepted uploads go and how a closed
// batch (a round, or a schedule's flush) becomes one aggregate
// (docs/server.md, "Parts and seams"). Chosen once when the Coordinator is
// built (server/coordinator_parts.cc):
//   MeanSink      exact streaming weighted mean (server/mean_sink.h)
//   RowSink       robust rules: a row per upload, pre-steps + rule at close
//                 (server/row_sink.h)
//   BufferedSink  asynchronous schedules: whole deltas in pooled buffers,
//                 combined with the schedule's weights (server/buffered_sink.h)
//
// The Coordinator calls, for each upload: Open; Take for each chunk of a
// float32 upload then Complete, or TakeEncoded once for a compressed one;
// then Commit or Undo. For each batch the driver closes: Combine or Discard (exactly one).
// Thread contract: Open, Commit, Undo and Drop run under the Coordinator's
// lock; Take and TakeEncoded run without it, concurrently for different
// uploads (never for one upload at once); Combine and Discard run on the
// worker thread once no upload of the batch can still call Take (the round's
// gate is drained, or the updates are committed).
#ifndef TALLY_SERVER_UPDATE_SINK_H_
#define TALLY_SERVER_UPDATE_SINK_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "aggregators/schedules/schedule.h"
#include "compress/codec.h"
#include "server/coordinator_types.h"
#include "server/reject_reason.h"

namespace tally::server {

// The sink's state of one upload (its journal, row or buffer). Owned by the
// Upload; the sink it came from is the only one that reads it.
class SinkSlot {
 public:
  virtual ~SinkSlot() = default;
};

// What the driver closed: the step (round or schedule step) and the
// committed updates (the handles Commit returned) with their weights.
// Rounds: every update committed in the round, weight num_samples.
struct SinkBatch {
  uint64_t step = 0;
  std::vector<aggregators::WeightedUpdate> updates;
};

// Called by Combine as soon as [begin, begin + count) of the aggregate is
// final (`next` is the aggregate's buffer): the publisher's step runs the
// optimizer on the block while it is in cache (server/publisher.h). An
// error stops Combine, which returns it.
using BlockFn = std::function<absl::Status(float* next, size_t begin, size_t count)>;

class UpdateSink {
 public:
  virtual ~UpdateSink() = default;

  // Reserves what the upload needs (journal, row, buffer). On error *reason.
  virtual absl::StatusOr<std::unique_ptr<SinkSlot>> Open(const UpdateHeaderInfo& h,
                                                         RejectReason* reason) = 0;
  // float32 values [first, first + n) of the upload, in the received pieces
  // (a float may straddle two). Checks every value (max_abs) and takes the
  // chunk, all or nothing as far as the batch is concerned (what it took
  // before an error is removed by Undo).
  virtual absl::Status Take(SinkSlot& slot, uint64_t first,
                            absl::Span<const absl::string_view> pieces,
                            RejectReason* reason) = 0;
  // Every byte of a float32 upload is in (no lock; the epoch's gate is
  // held): a sink that needs the whole update before it joins the batch (a
  // clipped sum) acts here. An error aborts the upload (Undo follows).
  virtual absl::Status Complete(SinkSlot&, RejectReason*) { return absl::OkStatus(); }
  // A compressed upload, whole: decoded, checked, taken. Nothing is kept on
  // error.
  virtual absl::Status TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                                   absl::string_view payload, RejectReason* reason) = 0;
  // The upload is committed: returns the handle a batch names it by.
  virtual aggregators::UpdateHandle Commit(SinkSlot& slot, const UpdateHeaderInfo& h) = 0;
  // The upload is aborted: removes what it took. False if that failed (the
  // batch can no longer be trusted and must fail).
  virtual bool Undo(SinkSlot& slot) = 0;
  // Forgets a committed update the schedule dropped; returns its client id.
  virtual std::string Drop(aggregators::UpdateHandle handle) = 0;

  // The aggregate of the batch, calling `block` on each final block. On
  // error (the rule refused the batch, or `block` failed) the model stays as
  // it is; the sink logs a rule's refusal itself. Returns the buffer to
  // publish (the pool's) and leaves the sink ready for the next batch.
  virtual absl::StatusOr<std::vector<float>> Combine(const SinkBatch& batch,
                                                     const BlockFn& block) = 0;
  // The batch fails without an aggregate: forget its updates.
  virtual void Discard(const SinkBatch& batch) = 0;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_UPDATE_SINK_H_
