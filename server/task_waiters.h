// Task waiters: the long-polls of GetTask (docs/server.md, "Parts and
// seams"). A waiter holds a client's callback until its answer is no longer
// WAIT, its time is up, or the server drains. Not thread-safe: the
// Coordinator calls it under its lock and runs the callbacks TakeReady
// returns after releasing it.
#ifndef TALLY_SERVER_TASK_WAITERS_H_
#define TALLY_SERVER_TASK_WAITERS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/coordinator_types.h"

namespace tally::server {

class TaskWaiters {
 public:
  struct Waiter {
    std::string client_id;
    std::string token;
    absl::Time deadline;
    TaskCallback done;
  };
  using Ready = std::vector<std::pair<TaskCallback, absl::StatusOr<TaskInfo>>>;

  // Adds a waiter; returns its id (never 0).
  uint64_t Add(Waiter waiter);
  // Removes the waiter; true if it was there (its callback will never run).
  bool Cancel(uint64_t id) { return waiters_.erase(id) > 0; }
  size_t size() const { return waiters_.size(); }

  // Removes the waiters that are answered and returns their callbacks with
  // the answers, in the order they were added. `answer` gives a waiter's
  // answer now; a WAIT answer keeps it waiting unless `all` or its deadline
  // is past (at `now`), when WAIT is its answer.
  Ready TakeReady(absl::Time now, bool all,
                  absl::FunctionRef<absl::StatusOr<TaskInfo>(const Waiter&)> answer);

 private:
  uint64_t next_id_ = 1;
  std::map<uint64_t, Waiter> waiters_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_TASK_WAITERS_H_
