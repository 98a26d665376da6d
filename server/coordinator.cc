// The Coordinator's calls from the RPC edge: sessions, tasks and uploads
// (the worker side is server/coordinator_worker.cc, the parts'
// construction server/coordinator_parts.cc).
#include "server/coordinator.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/client_text.h"
#include "server/coordinator_epoch.h"
#include "server/grpc_status.h"
#include "server/log.h"

namespace tally::server {

Upload::~Upload() {
  if (coordinator_ != nullptr) coordinator_->AbortUpload(*this, RejectReason::kCancelled);
}

// ---------------------------------------------------------------------------
// Sessions.

absl::StatusOr<SessionInfo> Coordinator::Join(absl::string_view client_id,
                                              const JoinCaller& caller) {
  tally::MutexLock lock(&mu_);
  TALLY_ASSIGN_OR_RETURN(std::string token, sessions_.Join(client_id, caller, clock_->Now()));
  return SessionInfo{std::move(token), store_.Current()->version};
}

absl::Status Coordinator::CheckSessionLocked(absl::string_view client_id, absl::string_view token) {
  return sessions_.Check(client_id, token, clock_->Now());
}

absl::Status Coordinator::CheckSession(absl::string_view client_id, absl::string_view token) {
  tally::MutexLock lock(&mu_);
  return CheckSessionLocked(client_id, token);
}

void Coordinator::NotePulled(absl::string_view client_id, uint64_t version) {
  tally::MutexLock lock(&mu_);
  driver_->NotePulled(std::string(client_id), version);
}

absl::Status Coordinator::Leave(absl::string_view client_id, absl::string_view token) {
  tally::MutexLock lock(&mu_);
  TALLY_RETURN_IF_ERROR(CheckSessionLocked(client_id, token));
  DropSessionLocked(std::string(client_id));
  return absl::OkStatus();
}

void Coordinator::DropSessionLocked(const std::string& client_id) {
  sessions_.Erase(client_id);
  driver_->SessionDropped(client_id);
}

// ---------------------------------------------------------------------------
// Tasks.

absl::StatusOr<TaskInfo> Coordinator::GetTask(absl::string_view client_id,
                                              absl::string_view token) {
  tally::MutexLock lock(&mu_);
  TALLY_RETURN_IF_ERROR(CheckSessionLocked(client_id, token));
  return driver_->TaskFor(std::string(client_id), clock_->Now());
}

uint64_t Coordinator::AwaitTask(absl::string_view client_id, absl::string_view token,
                                absl::Duration wait, TaskCallback done) {
  absl::StatusOr<TaskInfo> answer;
  {
    tally::MutexLock lock(&mu_);
    absl::Status status = CheckSessionLocked(client_id, token);
    if (!status.ok()) {
      answer = status;
    } else {
      const absl::Time now = clock_->Now();
      answer = driver_->TaskFor(std::string(client_id), now);
      if (answer->kind == TaskInfo::Kind::kWait && wait > absl::ZeroDuration() && !stopping_ &&
          !admission_.draining()) {
        return waiters_.Add({std::string(client_id), std::string(token), now + wait,
                             std::move(done)});
      }
    }
  }
  done(std::move(answer));
  return 0;
}

bool Coordinator::CancelWait(uint64_t waiter_id) {
  tally::MutexLock lock(&mu_);
  return waiters_.Cancel(waiter_id);
}

void Coordinator::ReleaseWaiters(bool all) {
  TaskWaiters::Ready ready;
  {
    tally::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    ready = waiters_.TakeReady(
        now, all, [&](const TaskWaiters::Waiter& w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          absl::Status status = CheckSessionLocked(w.client_id, w.token);
          if (!status.ok()) return absl::StatusOr<TaskInfo>(status);
          return absl::StatusOr<TaskInfo>(driver_->TaskFor(w.client_id, now));
        });
  }
  for (auto& [done, answer] : ready) done(std::move(answer));
}

// ---------------------------------------------------------------------------
// Uploads.

absl::Status Coordinator::RejectLocked(const std::string& client_id, RejectReason reason,
                                       absl::Status status) {
  metrics_->RejectedUpdate(reason, client_id, status.message());
  return status;
}

absl::StatusOr<std::unique_ptr<Upload>> Coordinator::BeginUpload(const UpdateHeaderInfo& h) {
  tally::MutexLock lock(&mu_);
  metrics_->updates_received.Increment();
  TALLY_RETURN_IF_ERROR(CheckHeaderLocked(h));
  return AdmitLocked(h);
}

absl::Status Coordinator::CheckHeaderLocked(const UpdateHeaderInfo& h) {
  absl::Status status = CheckSessionLocked(h.client_id, h.session_token);
  if (!status.ok()) {
    const bool bad_id = status.code() == absl::StatusCode::kInvalidArgument;
    return RejectLocked(h.client_id,
                        bad_id ? RejectReason::kMalformed : RejectReason::kUnauthenticated, status);
  }
  if (absl::Status id = ValidateId("update_id", h.update_id); !id.ok()) {
    return RejectLocked(h.client_id, RejectReason::kMalformed, id);
  }
  if (ledger_.IsDuplicate(h.client_id, h.update_id)) {
    metrics_->updates_duplicate.Increment();
    return absl::AlreadyExistsError(
        absl::StrCat("update '", h.update_id, "' was already accepted"));
  }
  RejectReason reason = RejectReason::kMalformed;
  if (absl::Status header = CheckUpdateHeader(h, store_.layout(), limits_, &reason);
      !header.ok()) {
    return RejectLocked(h.client_id, reason, header);
  }
  if (driver_->done()) {
    return RejectLocked(h.client_id, RejectReason::kFinished,
                        absl::FailedPreconditionError("the federation has finished"));
  }
  if (absl::Status open = admission_.CheckOpen(&reason); !open.ok()) {
    return RejectLocked(h.client_id, reason, open);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Upload>> Coordinator::AdmitLocked(const UpdateHeaderInfo& h) {
  RejectReason reason = RejectReason::kInternal;
  if (absl::Status allowed = driver_->CheckUpload(h, &reason); !allowed.ok()) {
    return RejectLocked(h.client_id, reason, allowed);
  }
  const absl::Time now = clock_->Now();
  absl::Duration retry = absl::ZeroDuration();
  if (absl::Status admitted = admission_.Admit(h.client_id, now, &reason, &retry);
      !admitted.ok()) {
    return RejectLocked(h.client_id, reason, WithRetryAfter(admitted, retry));
  }
  if (absl::Status entered = driver_->Enter(h, now, &reason); !entered.ok()) {
    admission_.Release(h.client_id);
    return RejectLocked(h.client_id, reason, entered);
  }
  absl::StatusOr<std::unique_ptr<SinkSlot>> slot = sink_->Open(h, &reason);
  if (!slot.ok()) {
    admission_.Release(h.client_id);
    driver_->Aborted(h.client_id);
    return RejectLocked(h.client_id, reason, slot.status());
  }
  auto upload = std::unique_ptr<Upload>(new Upload());
  upload->coordinator_ = this;
  upload->epoch_ = epoch_;
  upload->header_ = h;
  upload->slot_ = std::move(slot).value();
  if (!upload->streamed()) upload->payload_.reserve(h.payload_bytes);
  upload->started_ = now;
  epoch_->uploads[h.client_id] = upload.get();
  metrics_->uploads_in_flight.Increment();
  return upload;
}

absl::Status Coordinator::AddChunk(Upload& upload, uint64_t byte_offset,
                                   absl::Span<const absl::string_view> pieces) {
  tally::ReaderMutexLock gate(&upload.epoch_->gate);
  if (upload.state_ != Upload::State::kActive) {
    tally::MutexLock lock(&mu_);
    return driver_->EndedDuringUpload(upload.header_, upload.abort_reason_);
  }
  size_t size = 0;
  for (absl::string_view piece : pieces) size += piece.size();
  RejectReason reason = RejectReason::kInternal;
  absl::Status status =
      CheckChunkShape(upload.received_, upload.header_.payload_bytes, upload.streamed(),
                      byte_offset, size, limits_.max_chunk_bytes, &reason);
  if (status.ok() && !upload.streamed()) {
    for (absl::string_view piece : pieces) upload.payload_.append(piece.data(), piece.size());
  } else if (status.ok()) {
    status = sink_->Take(*upload.slot_, byte_offset / 4, pieces, &reason);
  }
  if (!status.ok()) {
    tally::MutexLock lock(&mu_);
    UndoLocked(upload, reason);
    return status;
  }
  CountReceived(upload, size);
  return absl::OkStatus();
}

void Coordinator::CountReceived(Upload& upload, size_t size) {
  upload.received_ += size;
  bytes_received_.fetch_add(size, std::memory_order_relaxed);
  metrics_->update_bytes_received.Increment(static_cast<double>(size));
}

absl::StatusOr<CommitInfo> Coordinator::FinishUpload(Upload& upload) {
  absl::StatusOr<CommitInfo> info;
  {
    tally::ReaderMutexLock gate(&upload.epoch_->gate);
    // The whole update, outside mu_: the gate keeps the epoch open, and the
    // sink takes it (a compressed one decoded here) without disturbing other
    // uploads.
    if (upload.state_ == Upload::State::kActive &&
        upload.received_ == upload.header_.payload_bytes) {
      RejectReason reason = RejectReason::kMalformed;
      absl::Status taken =
          upload.streamed()
              ? sink_->Complete(*upload.slot_, &reason)
              : sink_->TakeEncoded(*upload.slot_, upload.header_.codec, upload.payload_, &reason);
      upload.payload_ = std::string();
      if (!taken.ok()) {
        tally::MutexLock lock(&mu_);
        UndoLocked(upload, reason);
        return taken;
      }
    }
    tally::MutexLock lock(&mu_);
    info = CommitLocked(upload);
  }
  if (info.ok()) upload.coordinator_ = nullptr;  // Nothing left to abort.
  return info;
}

absl::StatusOr<CommitInfo> Coordinator::CommitLocked(Upload& upload) {
  const UpdateHeaderInfo& h = upload.header_;
  if (upload.state_ != Upload::State::kActive) {
    return driver_->EndedDuringUpload(h, upload.abort_reason_);
  }
  if (upload.received_ != h.payload_bytes) {
    UndoLocked(upload, RejectReason::kLength);
    return absl::InvalidArgumentError(absl::StrCat("truncated update: received ",
                                                   upload.received_, " of ", h.payload_bytes,
                                                   " bytes"));
  }
  RejectReason reason = RejectReason::kStale;
  if (absl::Status fresh = driver_->CheckCommit(h, &reason); !fresh.ok()) {
    UndoLocked(upload, reason);
    return fresh;
  }
  const aggregators::UpdateHandle handle = sink_->Commit(*upload.slot_, h);
  absl::StatusOr<CommitInfo> info = driver_->Accept(h, handle, clock_->Now());
  if (!info.ok()) {
    sink_->Drop(handle);
    UndoLocked(upload, RejectReason::kNotSelected, /*undo_sink=*/false);
    return info.status();
  }
  upload.state_ = Upload::State::kCommitted;
  upload.epoch_->uploads.erase(h.client_id);
  admission_.Release(h.client_id);
  ledger_.Accepted(h.client_id, h.update_id);
  ++updates_accepted_;
  metrics_->updates_accepted.Increment();
  metrics_->uploads_in_flight.Decrement();
  metrics_->push_duration.Observe(absl::ToDoubleSeconds(clock_->Now() - upload.started_));
  metrics_->UpdateCodecBytes(h.codec.id, h.payload_bytes, 4 * h.num_params);
  return info;
}

void Coordinator::AbortUpload(Upload& upload, RejectReason reason) {
  if (upload.coordinator_ == nullptr) return;
  tally::ReaderMutexLock gate(&upload.epoch_->gate);
  tally::MutexLock lock(&mu_);
  UndoLocked(upload, reason);
  upload.coordinator_ = nullptr;
}

void Coordinator::UndoLocked(Upload& upload, RejectReason reason, bool undo_sink) {
  if (upload.state_ != Upload::State::kActive) return;
  upload.state_ = Upload::State::kAborted;
  upload.abort_reason_ = reason;
  const UpdateHeaderInfo& h = upload.header_;
  upload.epoch_->uploads.erase(h.client_id);
  admission_.Release(h.client_id);
  driver_->Aborted(h.client_id);
  metrics_->uploads_in_flight.Decrement();
  metrics_->RejectedUpdate(reason, h.client_id,
                           absl::StrCat("update '", h.update_id, "' aborted after ",
                                        upload.received_, " bytes"));
  if (undo_sink && !sink_->Undo(*upload.slot_)) driver_->Poison();
}

}  // namespace tally::server
