#include "server/task_waiters.h"

namespace tally::server {

uint64_t TaskWaiters::Add(Waiter waiter) {
  const uint64_t id = next_id_++;
  waiters_.emplace(id, std::move(waiter));
  return id;
}

TaskWaiters::Ready TaskWaiters::TakeReady(
    absl::Time now, bool all, absl::FunctionRef<absl::StatusOr<TaskInfo>(const Waiter&)> answer) {
  Ready ready;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    Waiter& w = it->second;
    absl::StatusOr<TaskInfo> task = answer(w);
    if (task.ok() && task->kind == TaskInfo::Kind::kWait && !all && now < w.deadline) {
      ++it;
      continue;
    }
    ready.emplace_back(std::move(w.done), std::move(task));
    it = waiters_.erase(it);
  }
  return ready;
}

}  // namespace tally::server
