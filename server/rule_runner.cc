#include "server/rule_runner.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/log.h"

namespace tally::server {

absl::Status RuleRunner::Run(absl::Span<float> batch, size_t n, std::vector<double> weights,
                             const std::vector<std::string>& clients, uint64_t step,
                             absl::Span<float> out) {
  const absl::Time start = absl::Now();
  std::vector<double> influence;
  absl::Status status = step_->CombineRows(batch, n, std::move(weights), out, &influence);
  metrics_->rule_duration.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (status.ok()) ReportInfluence(step, clients, influence);
  return status;
}

void RuleRunner::ReportInfluence(uint64_t round, const std::vector<std::string>& clients,
                                 const std::vector<double>& influence) {
  if (influence.empty() || influence.size() != clients.size()) return;
  std::vector<std::string> rejected;
  for (size_t i = 0; i < clients.size(); ++i) {
    metrics_->RuleInfluence(clients[i], influence[i]);
    if (influence[i] < ServerMetrics::kRejectedInfluence) rejected.push_back(clients[i]);
  }
  if (rejected.empty()) return;
  constexpr size_t kNamed = 10;
  const size_t count = rejected.size();
  if (count > kNamed) rejected.resize(kNamed);
  LogInfo(absl::StrCat("round ", round, ": ", step_->rule_name(), " rejected or down-weighted ",
                       count, " of ", clients.size(), " update(s): ", absl::StrJoin(rejected, ", "),
                       count > kNamed ? ", ..." : ""));
}

}  // namespace tally::server
