#include "server/update_ledger.h"

#include <algorithm>

namespace tally::server {
namespace {

// Appends `id`, forgetting the oldest beyond kRememberedIdsPerClient.
void RememberBounded(std::deque<std::string>& ids, const std::string& id) {
  ids.push_back(id);
  if (ids.size() > UpdateLedger::kRememberedIdsPerClient) ids.pop_front();
}

}  // namespace

bool UpdateLedger::IsDuplicate(const std::string& client_id, const std::string& update_id) const {
  auto it = accepted_.find(client_id);
  if (it == accepted_.end()) return false;
  return std::find(it->second.begin(), it->second.end(), update_id) != it->second.end();
}

void UpdateLedger::Accepted(const std::string& client_id, const std::string& update_id) {
  RememberBounded(accepted_[client_id], update_id);
}

void UpdateLedger::Applied(const std::string& client_id, const std::string& update_id) {
  RememberBounded(applied_[client_id], update_id);
}

UpdateLedger::IdList UpdateLedger::AppliedIds() const {
  IdList ids;
  for (const auto& [client, list] : applied_) {
    ids.emplace_back(client, std::vector<std::string>(list.begin(), list.end()));
  }
  return ids;
}

void UpdateLedger::Restore(const IdList& applied) {
  for (const auto& [client, ids] : applied) {
    for (const std::string& id : ids) {
      Accepted(client, id);
      Applied(client, id);
    }
  }
}

}  // namespace tally::server
