#include "server/mean_sink.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/float_runs.h"
#include "server/log.h"
#include "server/update_checks.h"

namespace tally::server {
namespace {

struct MeanSlot final : SinkSlot {
  int64_t weight = 0;  // num_samples: the integer weight of the exact sum.
  uint64_t payload_bytes = 0;
  std::unique_ptr<UndoJournal> journal;  // float32 uploads only.
};

MeanSlot& Mine(SinkSlot& slot) { return static_cast<MeanSlot&>(slot); }

}  // namespace

MeanSink::MeanSink(Options options)
    : options_(std::move(options)),
      journals_(options_.undo_memory_bytes, options_.spool_dir, options_.max_idle_journal_files,
                /*max_file_age=*/absl::Seconds(20)),
      decode_pool_(options_.num_params, /*max_idle=*/2) {}

absl::StatusOr<std::unique_ptr<SinkSlot>> MeanSink::Open(const UpdateHeaderInfo& h,
                                                         RejectReason* reason) {
  auto slot = std::make_unique<MeanSlot>();
  slot->weight = static_cast<int64_t>(h.num_samples);  // <= 2^40 (MakePlan).
  slot->payload_bytes = h.payload_bytes;
  if (compress::IsPlainFloat32(h.codec)) {
    auto opened = journals_.Open(h.payload_bytes, options_.clock->Now());
    if (!opened.ok()) {
      *reason = RejectReason::kInternal;
      return opened.status();
    }
    slot->journal = std::move(opened).value();
  }
  if (sum_ == nullptr) {
    sum_ = std::make_unique<aggregators::StripedAccumulator>(options_.num_params);
  }
  return slot;
}

absl::Status MeanSink::Take(SinkSlot& slot, uint64_t first,
                            absl::Span<const absl::string_view> pieces, RejectReason* reason) {
  MeanSlot& s = Mine(slot);
  absl::Status status;
  auto check = [&](size_t index, const char* bytes, size_t count) {
    if (status.ok()) status = CheckValues(bytes, count, first + index, options_.max_abs_value, reason);
  };
  auto add = [&](size_t index, const char* bytes, size_t count) {
    sum_->AddBytes(first + index, bytes, count, s.weight);
  };
  if (s.journal->in_memory()) {
    // One pass per received piece while it is in L1: check, journal, add. A
    // bad value later in the chunk undoes the pieces already added (they are
    // in the journal), so the chunk is still all-or-nothing.
    ForEachFloatRun(pieces, [&](size_t index, const char* bytes, size_t count) {
      check(index, bytes, count);
      if (!status.ok()) return;
      status = s.journal->Append(bytes, 4 * count);
      if (status.ok()) add(index, bytes, count);
    });
  } else {
    // A file journal: check everything, then one writev, then add.
    ForEachFloatRun(pieces, check);
    if (status.ok()) status = s.journal->AppendPieces(pieces);
    if (status.ok()) ForEachFloatRun(pieces, add);
  }
  return status;
}

absl::Status MeanSink::TakeEncoded(SinkSlot& slot, const compress::CodecSpec& codec,
                                   absl::string_view payload, RejectReason* reason) {
  // Decoded and checked whole before any of it joins the sum.
  std::vector<float> scratch = decode_pool_.Take();
  absl::Status decoded =
      DecodeChecked(codec, payload, options_.max_abs_value, absl::MakeSpan(scratch), reason);
  if (decoded.ok()) sum_->Add(0, scratch.data(), scratch.size(), Mine(slot).weight);
  decode_pool_.Give(std::move(scratch));
  return decoded;
}

aggregators::UpdateHandle MeanSink::Commit(SinkSlot& slot, const UpdateHeaderInfo& h) {
  Release(slot);
  weight_sum_ += h.num_samples;
  return ++committed_;
}

bool MeanSink::Undo(SinkSlot& slot) {
  MeanSlot& s = Mine(slot);
  bool undone = true;
  if (s.journal != nullptr && s.journal->size() > 0) {
    // Subtract exactly what was added: the exact sum is an integer sum, so
    // S + w q(x) - w q(x) = S bit for bit.
    absl::Status replayed = s.journal->Replay([&](uint64_t offset, const char* data, size_t size) {
      sum_->AddBytes(offset / 4, data, size / 4, -s.weight);
    });
    if (!replayed.ok()) {
      LogError(absl::StrCat("cannot undo an aborted upload (", replayed.message(),
                            "); the round will fail"));
      undone = false;
    }
  }
  Release(slot);
  return undone;
}

void MeanSink::Release(SinkSlot& slot) {
  MeanSlot& s = Mine(slot);
  journals_.Release(std::move(s.journal), s.payload_bytes, options_.clock->Now());
}

absl::StatusOr<std::vector<float>> MeanSink::Combine(const SinkBatch& batch,
                                                     const BlockFn& block) {
  std::vector<float> next = options_.pool->Take();
  sum_->Extract(static_cast<double>(weight_sum_), absl::MakeSpan(next));
  Discard(batch);
  absl::Status applied = block(next.data(), 0, next.size());
  if (!applied.ok()) {
    options_.pool->Give(std::move(next));
    return applied;
  }
  return next;
}

void MeanSink::Discard(const SinkBatch&) {
  if (sum_ != nullptr) sum_->Reset();
  weight_sum_ = 0;
}

}  // namespace tally::server
