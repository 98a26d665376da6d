// UpdateLedger: which update ids each client has had accepted, so that a
// retry of an acknowledged update is answered as a duplicate instead of
// counted twice, and which of them are in a published model version (what a
// checkpoint records, so that a restarted server still knows them).
//
// Bounded per client: the newest kRememberedIdsPerClient ids of each kind.
// Thread-compatible: the coordinator keeps it under its mutex.
#ifndef TALLY_SERVER_UPDATE_LEDGER_H_
#define TALLY_SERVER_UPDATE_LEDGER_H_

#include <cstddef>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace tally::server {

class UpdateLedger {
 public:
  static constexpr size_t kRememberedIdsPerClient = 64;
  // Per client, its ids oldest first (checkpoint contents).
  using IdList = std::vector<std::pair<std::string, std::vector<std::string>>>;

  // Whether `update_id` of `client_id` was accepted (and not forgotten).
  bool IsDuplicate(const std::string& client_id, const std::string& update_id) const;
  // The update was acknowledged to the client.
  void Accepted(const std::string& client_id, const std::string& update_id);
  // The update is in a published model version.
  void Applied(const std::string& client_id, const std::string& update_id);

  // The applied ids, for a checkpoint.
  IdList AppliedIds() const;
  // A checkpoint's ids: accepted and applied.
  void Restore(const IdList& applied);

 private:
  absl::flat_hash_map<std::string, std::deque<std::string>> accepted_;
  absl::flat_hash_map<std::string, std::deque<std::string>> applied_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_UPDATE_LEDGER_H_
