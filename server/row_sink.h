// RowSink: robust rules over a round's updates (docs/aggregation.md). Each
// upload gets a private row of an arena (clients_per_round plus
// over-selection rows), validated values copied in as they arrive
// (compressed uploads decoded into the row at the end); an aborted upload
// just frees its row. Combine puts the committed rows in a canonical order
// (by client id, so the rule sees the same batch whatever the arrival
// order), the trusted client's row first for monna, and runs the pre-steps
// and the rule (server/rule_runner.h). The contract: server/update_sink.h.
#ifndef TALLY_SERVER_ROW_SINK_H_
#define TALLY_SERVER_ROW_SINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer_pool.h"
#include "server/rule_runner.h"
#include "server/update_sink.h"

namespace tally::server {

class RowSink final : public UpdateSink {
 public:
  struct Options {
    size_t num_params = 0;
    size_t rows = 0;  // Uploads a round admits (rounds.clients_per_round + over-selection).
    float max_abs_value = 0;
    std::string trusted_client;  // monna: its row goes first. Empty: none.
    std::shared_ptr<BufferPool> pool;  // Model-sized: the aggregates.
  };
  RowSink(Options options, RuleRunner rule) : options_(std::move(options)), rule_(rule) {}

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
  enum RowState : uint8_t { kFree, kUploading, kCommitted };
  float* Row(size_t row) { return arena_.data() + row * options_.num_params; }
  // The committed rows compacted to the front of the arena in canonical
  // order, with their weights and clients.
  size_t Compact(std::vector<double>* weights, std::vector<std::string>* clients);

  const Options options_;
  RuleRunner rule_;
  // One row per upload, allocated by the round's first upload and freed
  // when the round closes. row_state_, row_weight_, row_client_: under the
  // Coordinator's lock.
  std::vector<float> arena_;
  std::vector<uint8_t> row_state_;
  std::vector<double> row_weight_;
  std::vector<std::string> row_client_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_ROW_SINK_H_
