// PrivateSink: central differential privacy (docs/privacy.md, "The
// mechanism"), for privacy.mode "central" with the mean, in synchronous
// rounds or FedBuff. Each upload is received whole into a pooled buffer and
// validated as the BufferedSink does (compressed uploads decoded whole), and
// kept under its handle until its batch closes; an aborted upload never
// touches the sum, so Undo is exact by construction. Combine, on the worker:
//   each update  Delta_i <- ClipToNorm(Delta_i, C)   (b_i = not clipped)
//   S = sum_i Delta_i on the exact integer grid, weight 1 (never num_samples)
//   S += N_Z(0, sigma^2) per lane, sigma = NoiseSigmaLanes(z_Delta, C, d)
//   sync:    mean = S / m, m = privacy.expected_clients (the FIXED
//            denominator, however many arrived)
//   fedbuff: flush = c * S, c = alpha / N the schedule's equal coefficient
// then the optimizer runs on it (`block`). With adaptive clipping the next C
// comes from the noisy unclipped fraction (NoisyUnclippedFraction,
// NextClipNorm) and takes effect once the step is published
// (PrivacyState::StepPublished, called by the PrivacyDriver).
//
// Memory: the batch's updates are kept whole until it closes (as FedBuff's
// buffer does): up to clients_per_round model-sized buffers in a round.
// The UpdateSink contract: server/update_sink.h.
#ifndef TALLY_SERVER_PRIVATE_SINK_H_
#define TALLY_SERVER_PRIVATE_SINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/exact_sum.h"
#include "server/buffered_sink.h"
#include "server/privacy_state.h"

namespace tally::server {

class PrivateSink final : public UpdateSink {
 public:
  struct Options {
    size_t num_params = 0;
    float max_abs_value = 0;
    bool fedbuff = false;  // The batch is a FedBuff flush (else a sync round).
    std::shared_ptr<BufferPool> pool;
    std::shared_ptr<PrivacyState> privacy;
  };
  PrivateSink(Options options, RuleRunner rule);

  absl::StatusOr<std::unique_ptr<SinkSlot>> Open(const UpdateHeaderInfo& h,
                                                 RejectReason* reason) override {
    return store_.Open(h, reason);
  }
  absl::Status Take(SinkSlot& slot, uint64_t first, absl::Span<const absl::string_view> pieces,
                    RejectReason* reason) override {
    return store_.Take(slot, first, pieces, reason);
  }
  absl::Status TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                           absl::string_view payload, RejectReason* reason) override {
    return store_.TakeEncoded(slot, codec, payload, reason);
  }
  aggregators::UpdateHandle Commit(SinkSlot& slot, const UpdateHeaderInfo& h) override {
    return store_.Commit(slot, h);
  }
  bool Undo(SinkSlot& slot) override { return store_.Undo(slot); }
  std::string Drop(aggregators::UpdateHandle handle) override { return store_.Drop(handle); }
  absl::StatusOr<std::vector<float>> Combine(const SinkBatch& batch, const BlockFn& block) override;
  void Discard(const SinkBatch& batch) override { store_.Discard(batch); }

 private:
  // S (clipped, weight 1) into sum_; returns how many were not clipped.
  uint64_t SumClipped(std::vector<std::vector<float>>& deltas, double clip_norm);
  // What S is divided by: m (sync) or 1 / c (fedbuff).
  absl::StatusOr<double> Divisor(const SinkBatch& batch) const;
  // sum_ noised, divided, extracted into a pool buffer.
  absl::StatusOr<std::vector<float>> Noised(const SinkBatch& batch, double clip_norm,
                                            uint64_t unclipped, uint64_t arrived);
  // The clip norm of the next step (adaptive clipping), or `clip_norm`.
  absl::StatusOr<double> NextClip(double clip_norm, uint64_t unclipped, uint64_t arrived);

  const Options options_;
  BufferedSink store_;  // Receives, validates and keeps the updates.
  ExactSum sum_;        // Combine (worker thread) only.
};

}  // namespace tally::server

#endif  // TALLY_SERVER_PRIVATE_SINK_H_
