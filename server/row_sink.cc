#include "server/row_sink.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/float_runs.h"
#include "server/log.h"
#include "server/update_checks.h"

namespace tally::server {
namespace {

struct RowSlot final : SinkSlot {
  size_t row = 0;
};

size_t RowOf(SinkSlot& slot) { return static_cast<RowSlot&>(slot).row; }

// Rearranges the rows (of d floats) of `arena` so that row i holds what row
// order[i] held, for i < order.size() (order: distinct row indices). One
// row of scratch; each row is copied at most twice.
void PermuteRows(absl::Span<float> arena, size_t d, const std::vector<size_t>& order) {
  // where[r]: the row now holding the original row r's data.
  std::vector<size_t> where(arena.size() / d), holds(arena.size() / d);
  for (size_t r = 0; r < where.size(); ++r) where[r] = holds[r] = r;
  std::vector<float> scratch(d);
  for (size_t i = 0; i < order.size(); ++i) {
    const size_t from = where[order[i]];
    if (from == i) continue;
    // Swap rows i and `from`.
    float* a = arena.data() + i * d;
    float* b = arena.data() + from * d;
    std::memcpy(scratch.data(), a, d * sizeof(float));
    std::memcpy(a, b, d * sizeof(float));
    std::memcpy(b, scratch.data(), d * sizeof(float));
    const size_t displaced = holds[i];
    holds[from] = displaced;
    where[displaced] = from;
    holds[i] = order[i];
    where[order[i]] = i;
  }
}

// Moves the row of `client` (a committed row of the compacted n x d batch)
// to the front, shifting the rows before it down by one, so that rule monna
// (trusted row 0) averages around it. FAILED_PRECONDITION if the client sent
// no update this round.
absl::Status TrustedRowFirst(const std::string& client, size_t d, std::vector<float>& arena,
                             std::vector<double>& weights, std::vector<std::string>& clients) {
  const auto it = std::find(clients.begin(), clients.end(), client);
  if (it == clients.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("monna: the trusted client '", client, "' sent no update this round (",
                     clients.size(), " other update(s)); the round is skipped, model unchanged"));
  }
  const size_t t = static_cast<size_t>(it - clients.begin());
  std::rotate(arena.begin(), arena.begin() + t * d, arena.begin() + (t + 1) * d);
  std::rotate(weights.begin(), weights.begin() + t, weights.begin() + t + 1);
  std::rotate(clients.begin(), clients.begin() + t, clients.begin() + t + 1);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SinkSlot>> RowSink::Open(const UpdateHeaderInfo& h,
                                                        RejectReason* reason) {
  if (arena_.empty()) {
    arena_.resize(options_.rows * options_.num_params);
    row_state_.assign(options_.rows, kFree);
    row_weight_.assign(options_.rows, 0.0);
    row_client_.assign(options_.rows, std::string());
  }
  const auto free = std::find(row_state_.begin(), row_state_.end(), kFree);
  if (free == row_state_.end()) {
    *reason = RejectReason::kNotSelected;
    return absl::FailedPreconditionError(
        absl::StrCat("round ", h.round, " has no free update slot"));
  }
  *free = kUploading;
  auto slot = std::make_unique<RowSlot>();
  slot->row = static_cast<size_t>(free - row_state_.begin());
  return slot;
}

absl::Status RowSink::Take(SinkSlot& slot, uint64_t first,
                           absl::Span<const absl::string_view> pieces, RejectReason* reason) {
  // Validate, then copy into the upload's row.
  absl::Status status;
  ForEachFloatRun(pieces, [&](size_t index, const char* bytes, size_t count) {
    if (status.ok()) status = CheckValues(bytes, count, first + index, options_.max_abs_value, reason);
  });
  if (!status.ok()) return status;
  char* dst = reinterpret_cast<char*>(Row(RowOf(slot)) + first);
  for (absl::string_view piece : pieces) {
    std::memcpy(dst, piece.data(), piece.size());
    dst += piece.size();
  }
  return absl::OkStatus();
}

absl::Status RowSink::TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                                  absl::string_view payload, RejectReason* reason) {
  return DecodeChecked(codec, payload, options_.max_abs_value,
                       absl::MakeSpan(Row(RowOf(slot)), options_.num_params), reason);
}

aggregators::UpdateHandle RowSink::Commit(SinkSlot& slot, const UpdateHeaderInfo& h) {
  const size_t row = RowOf(slot);
  row_state_[row] = kCommitted;
  row_weight_[row] = static_cast<double>(h.num_samples);
  row_client_[row] = h.client_id;
  return row + 1;
}

bool RowSink::Undo(SinkSlot& slot) {
  row_state_[RowOf(slot)] = kFree;  // Its row is simply free again.
  return true;
}

size_t RowSink::Compact(std::vector<double>* weights, std::vector<std::string>* clients) {
  // The committed rows, in a canonical order (by client id, unique in a
  // round), so that the rule sees the same batch whatever the arrival order:
  // floating-point rules are not associative.
  std::vector<size_t> rows;
  for (size_t r = 0; r < row_state_.size(); ++r) {
    if (row_state_[r] == kCommitted) rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end(),
            [&](size_t a, size_t b) { return row_client_[a] < row_client_[b]; });
  PermuteRows(absl::MakeSpan(arena_), options_.num_params, rows);
  for (size_t r : rows) {
    weights->push_back(row_weight_[r]);
    clients->push_back(row_client_[r]);
  }
  return rows.size();
}

absl::StatusOr<std::vector<float>> RowSink::Combine(const SinkBatch& batch, const BlockFn& block) {
  const size_t d = options_.num_params;
  std::vector<double> weights;
  std::vector<std::string> clients;
  const size_t n = Compact(&weights, &clients);
  absl::Status status;
  if (!options_.trusted_client.empty()) {
    status = TrustedRowFirst(options_.trusted_client, d, arena_, weights, clients);
  }
  std::vector<float> next = options_.pool->Take();
  if (status.ok()) {
    status = rule_.Run(absl::MakeSpan(arena_.data(), n * d), n, std::move(weights), clients,
                       batch.step, absl::MakeSpan(next));
    if (!status.ok()) rule_.CountFailure();
  } else {
    rule_.CountFailure();
  }
  if (!status.ok()) LogWarning(absl::StrCat("round ", batch.step, ": ", status.message()));
  Discard(batch);
  if (status.ok()) status = block(next.data(), 0, d);
  if (!status.ok()) {
    options_.pool->Give(std::move(next));
    return status;
  }
  return next;
}

void RowSink::Discard(const SinkBatch&) {
  arena_ = std::vector<float>();
  row_state_.clear();
  row_weight_.clear();
  row_client_.clear();
}

}  // namespace tally::server
