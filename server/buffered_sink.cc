#include "server/buffered_sink.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregators/step/aggregation_step.h"
#include "core/vector_ops.h"
#include "server/float_runs.h"
#include "server/log.h"
#include "server/update_checks.h"

namespace tally::server {
namespace {

// Coordinates per block: the aggregate of a block is formed, then turned
// into the new model by the optimizer while it is in cache (64 KiB of each
// float operand, 128 KiB of 64-bit exact lanes).
constexpr size_t kFlushBlock = 16384;

struct BufferSlot final : SinkSlot {
  std::vector<float> buffer;
};

std::vector<float>& BufferOf(SinkSlot& slot) { return static_cast<BufferSlot&>(slot).buffer; }

// Runs `combine(begin, count)` then `block` over [0, d) in kFlushBlock
// blocks; stops at the first error.
absl::Status ForEachBlock(size_t d, float* next, const std::function<void(size_t, size_t)>& combine,
                          const BlockFn& block) {
  for (size_t begin = 0; begin < d; begin += kFlushBlock) {
    const size_t count = std::min(kFlushBlock, d - begin);
    combine(begin, count);
    if (absl::Status applied = block(next, begin, count); !applied.ok()) return applied;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SinkSlot>> BufferedSink::Open(const UpdateHeaderInfo&,
                                                             RejectReason*) {
  auto slot = std::make_unique<BufferSlot>();
  slot->buffer = options_.pool->Take();
  return slot;
}

absl::Status BufferedSink::Take(SinkSlot& slot, uint64_t first,
                                absl::Span<const absl::string_view> pieces, RejectReason* reason) {
  // Copy and check in one pass per piece, while it is in cache.
  float* dst = BufferOf(slot).data() + first;
  absl::Status status;
  ForEachFloatRun(pieces, [&](size_t index, const char* bytes, size_t count) {
    if (!status.ok() || CopyAllWithinBytes(bytes, dst + index, count, options_.max_abs_value)) {
      return;
    }
    status = CheckValues(bytes, count, first + index, options_.max_abs_value, reason);
  });
  return status;
}

absl::Status BufferedSink::TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                                       absl::string_view payload, RejectReason* reason) {
  return DecodeChecked(codec, payload, options_.max_abs_value, absl::MakeSpan(BufferOf(slot)),
                       reason);
}

aggregators::UpdateHandle BufferedSink::Commit(SinkSlot& slot, const UpdateHeaderInfo& h) {
  tally::MutexLock lock(&mu_);
  const aggregators::UpdateHandle handle = next_handle_++;
  stored_[handle] = Stored{std::move(BufferOf(slot)), h.client_id, h.update_id};
  return handle;
}

bool BufferedSink::Undo(SinkSlot& slot) {
  options_.pool->Give(std::move(BufferOf(slot)));
  return true;
}

std::string BufferedSink::Drop(aggregators::UpdateHandle handle) {
  tally::MutexLock lock(&mu_);
  auto it = stored_.find(handle);
  if (it == stored_.end()) return std::string();
  std::string client = std::move(it->second.client_id);
  options_.pool->Give(std::move(it->second.delta));
  stored_.erase(it);
  return client;
}

size_t BufferedSink::stored() const {
  tally::MutexLock lock(&mu_);
  return stored_.size();
}

std::vector<BufferedSink::Stored> BufferedSink::TakeBatch(const SinkBatch& batch) {
  std::vector<Stored> updates;
  tally::MutexLock lock(&mu_);
  for (const aggregators::WeightedUpdate& u : batch.updates) {
    auto it = stored_.find(u.handle);
    if (it == stored_.end()) std::abort();  // A schedule names only live handles.
    updates.push_back(std::move(it->second));
    stored_.erase(it);
  }
  return updates;
}

std::vector<std::vector<float>> BufferedSink::TakeDeltas(const SinkBatch& batch) {
  std::vector<std::vector<float>> deltas;
  for (Stored& u : TakeBatch(batch)) deltas.push_back(std::move(u.delta));
  return deltas;
}

void BufferedSink::Discard(const SinkBatch& batch) {
  for (Stored& u : TakeBatch(batch)) options_.pool->Give(std::move(u.delta));
}

absl::StatusOr<std::vector<float>> BufferedSink::Combine(const SinkBatch& batch,
                                                         const BlockFn& block) {
  std::vector<Stored> updates = TakeBatch(batch);
  // The linear path builds the new model in the first update's buffer
  // (scaled in place): no cold output buffer to fill.
  absl::StatusOr<std::vector<float>> next = !options_.robust || updates.size() < 2
                                                ? CombineLinear(batch, updates, block)
                                                : CombineRobust(batch, updates, block);
  for (Stored& u : updates) {
    if (!u.delta.empty()) options_.pool->Give(std::move(u.delta));
  }
  return next;
}

absl::StatusOr<std::vector<float>> BufferedSink::CombineLinear(const SinkBatch& batch,
                                                               std::vector<Stored>& updates,
                                                               const BlockFn& block) {
  // g = sum_i weight_i * delta_i, exactly: independent of the order of
  // the updates (aggregators/step/aggregation_step.h ExactCombination).
  const size_t n = updates.size();
  std::vector<double> coefficients;
  for (const aggregators::WeightedUpdate& u : batch.updates) coefficients.push_back(u.weight);
  absl::StatusOr<aggregators::ExactCombination> combination =
      aggregators::ExactCombination::Create(coefficients);
  if (!combination.ok()) {
    LogError(absl::StrCat("schedule step: ", combination.status().message(),
                          "; model left unchanged"));
    return combination.status();
  }
  std::vector<float> next = std::move(updates[0].delta);
  std::vector<const float*> rows(n);
  absl::Status status = ForEachBlock(
      next.size(), next.data(),
      [&](size_t begin, size_t count) {
        // Update 0's delta is `next` itself: the combination reads every row
        // of the block before it writes the block.
        rows[0] = next.data() + begin;
        for (size_t i = 1; i < n; ++i) rows[i] = updates[i].delta.data() + begin;
        combination->Combine(rows, count, next.data() + begin);
      },
      block);
  if (!status.ok()) {
    options_.pool->Give(std::move(next));
    return status;
  }
  return next;
}

absl::StatusOr<std::vector<float>> BufferedSink::CombineRobust(const SinkBatch& batch,
                                                               std::vector<Stored>& updates,
                                                               const BlockFn& block) {
  // The rule over the flush's updates, scaled by the sum of their
  // coefficients (for "average", weighted by them, this is exactly sum of
  // weight * delta). Rows in a canonical order (client id, update id), as in
  // synchronous rounds.
  const size_t n = updates.size();
  const size_t d = options_.num_params;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(updates[a].client_id, updates[a].update_id) <
           std::tie(updates[b].client_id, updates[b].update_id);
  });
  arena_.resize(n * d);
  std::vector<double> weights;
  std::vector<std::string> clients;
  for (size_t row = 0; row < n; ++row) {
    const size_t i = order[row];
    std::memcpy(arena_.data() + row * d, updates[i].delta.data(), d * sizeof(float));
    weights.push_back(batch.updates[i].weight);
    clients.push_back(updates[i].client_id);
  }
  std::vector<float> next = options_.pool->Take();
  absl::Status status = rule_.Run(absl::MakeSpan(arena_), n, std::move(weights), clients,
                                  batch.step, absl::MakeSpan(next));
  if (!status.ok()) {
    LogWarning(absl::StrCat("schedule step of ", n, " update(s): ", status.message(),
                            "; model unchanged, the updates are dropped"));
    rule_.CountFailure();
  } else {
    double weight_sum = 0;
    for (const aggregators::WeightedUpdate& u : batch.updates) weight_sum += u.weight;
    const float scale = static_cast<float>(weight_sum);
    status = ForEachBlock(
        d, next.data(),
        [&](size_t begin, size_t count) {
          for (float& v : absl::MakeSpan(next).subspan(begin, count)) v *= scale;
        },
        block);
  }
  if (!status.ok()) {
    options_.pool->Give(std::move(next));
    return status;
  }
  return next;
}

}  // namespace tally::server
