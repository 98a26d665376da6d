// The Coordinator's calls into the workflow (docs/workflow.md): which task a
// client gets, and what a published version records.
#include <utility>

#include "server/coordinator.h"

namespace tally::server {

TaskInfo Coordinator::TaskForLocked(const std::string& client_id, absl::Time now) {
  if (workflow_ == nullptr) return driver_->TaskFor(client_id, now);
  CoordinatorStatus progress;
  driver_->FillStatus(&progress);
  TaskInfo evaluate;
  if (workflow_->EvaluationTask(client_id, progress.round, &evaluate)) return evaluate;
  TaskInfo task = driver_->TaskFor(client_id, now);
  if (task.kind == TaskInfo::Kind::kDone && workflow_->HoldsEnd()) {
    // DONE only once the last evaluation has closed: a client told DONE
    // leaves, and could not be asked any more.
    task.kind = TaskInfo::Kind::kWait;
    task.retry_after = absl::Milliseconds(200);
  }
  return task;
}

void Coordinator::NoteRoundLocked(DriverBatch& batch, uint64_t version) {
  if (workflow_ == nullptr) return;
  RoundOutcome outcome;
  outcome.round = batch.round;
  outcome.model_version = version;
  outcome.participants = batch.updates;
  outcome.num_examples = batch.weight;
  outcome.bytes_received = std::exchange(committed_bytes_, 0);
  batch.metrics = workflow_->RoundCompleted(outcome);
}

}  // namespace tally::server
