// An epoch of uploads (server/coordinator.h): the uploads that began while
// one batch of the driver was open. Sealing it (a round's close) takes its
// gate as writer, which waits for running chunk adds and commits, and
// aborts the uploads still in it. Asynchronous schedules never seal theirs.
#ifndef TALLY_SERVER_COORDINATOR_EPOCH_H_
#define TALLY_SERVER_COORDINATOR_EPOCH_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "core/sync.h"

namespace tally::server {

class Upload;

struct Epoch {
  // Readers: chunk adds, commits and aborts of the epoch's uploads. Writer:
  // sealing it. Acquired before Coordinator::mu_.
  tally::Mutex gate;
  // Active uploads by client (under Coordinator::mu_).
  absl::flat_hash_map<std::string, Upload*> uploads;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_COORDINATOR_EPOCH_H_
