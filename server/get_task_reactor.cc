#include "server/get_task_reactor.h"

#include <algorithm>
#include <utility>

namespace tally::server {
namespace {

int64_t UnixMillisOrZero(absl::Time t) {
  return t == absl::InfiniteFuture() ? 0 : absl::ToUnixMillis(t);
}

void FillTask(const TaskInfo& info, tally::v1::Task* task, const Workflow* workflow) {
  if (info.kind == TaskInfo::Kind::kEvaluate && info.evaluate != nullptr) {
    *task = *info.evaluate;
    return;
  }
  switch (info.kind) {
    case TaskInfo::Kind::kTrain:
      task->set_kind(tally::v1::Task::TRAIN);
      break;
    case TaskInfo::Kind::kWait:
      task->set_kind(tally::v1::Task::WAIT);
      break;
    case TaskInfo::Kind::kDone:
      task->set_kind(tally::v1::Task::DONE);
      break;
    case TaskInfo::Kind::kEvaluate:  // Always with its task (above).
      task->set_kind(tally::v1::Task::WAIT);
      break;
  }
  task->set_round(info.round);
  task->set_model_version(info.model_version);
  task->set_local_steps(info.local_steps);
  task->set_deadline_unix_ms(UnixMillisOrZero(info.deadline));
  task->set_retry_after_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(info.retry_after)));
  // The round's client_config settings (docs/workflow.md).
  if (info.kind == TaskInfo::Kind::kTrain && workflow != nullptr) {
    workflow->SetTrainConfig(info.round, task);
  }
}

}  // namespace

GetTaskReactor::GetTaskReactor(Coordinator* coordinator, const tally::v1::GetTaskRequest* request,
                               tally::v1::Task* response, absl::Duration max_wait)
    : coordinator_(coordinator), response_(response) {
  const absl::Duration wait = std::min(absl::Milliseconds(request->wait_ms()), max_wait);
  const uint64_t id =
      coordinator_->AwaitTask(request->client_id(), request->session_token(), wait,
                              [this](absl::StatusOr<TaskInfo> task) { Complete(std::move(task)); });
  tally::MutexLock lock(&mu_);
  waiter_id_ = id;
}

void GetTaskReactor::OnCancel() {
  uint64_t id;
  {
    tally::MutexLock lock(&mu_);
    id = waiter_id_;
  }
  if (id != 0 && coordinator_->CancelWait(id)) Finish(grpc::Status::CANCELLED);
}

void GetTaskReactor::Complete(absl::StatusOr<TaskInfo> task) {
  if (!task.ok()) {
    FinishWith(task.status());
    return;
  }
  const WorkflowRun* run = coordinator_->workflow();
  FillTask(*task, response_, run != nullptr ? &run->workflow() : nullptr);
  Finish(grpc::Status::OK);
}

}  // namespace tally::server
