// ServerMetrics: the per-client series of the robust rules stay bounded;
// rejected updates are counted and logged.
#include <algorithm>
#include <string>

#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/metrics.h"

namespace tally::server {
namespace {

// The counter `name`{client=`client`}, or -1 if there is no such series.
double ClientCounter(prometheus::Registry& registry, const std::string& name,
                     const std::string& client) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      if (metric.label.size() == 1 && metric.label[0].value == client) return metric.counter.value;
    }
  }
  return -1;
}

TEST(ServerMetricsTest, RuleInfluenceCountsByClient) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry);
  metrics.RuleInfluence("a", 1.0);
  metrics.RuleInfluence("a", 0.25);  // Below one half: a rejection.
  metrics.RuleInfluence("b", 0.5);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_updates_total", "a"), 2);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_influence_total", "a"), 1.25);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_rejections_total", "a"), 1);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_rejections_total", "b"), 0);
}

TEST(ServerMetricsTest, ClientsBeyondTheLimitShareOneSeries) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry);
  for (size_t i = 0; i < ServerMetrics::kMaxLabelledClients; ++i) {
    metrics.RuleInfluence("client-" + std::to_string(i), 1.0);
  }
  metrics.RuleInfluence("late-1", 0.0);
  metrics.RuleInfluence("late-2", 1.0);
  metrics.RuleInfluence("client-0", 1.0);  // Known clients keep their series.
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_updates_total", "late-1"), -1);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_updates_total", "_other"), 2);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_rejections_total", "_other"), 1);
  EXPECT_EQ(ClientCounter(registry, "tally_rule_client_updates_total", "client-0"), 2);
}

}  // namespace
}  // namespace tally::server

namespace tally::server {
namespace {

TEST(ServerMetricsTest, RejectedUpdateCountsAndLogsOneEscapedLine) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry);
  ::testing::internal::CaptureStderr();
  // A hostile id: a newline that would forge a second log line, a backslash, a high byte.
  metrics.RejectedUpdate(RejectReason::kForbidden, "evil\n2026 I round 9 aggregated\\\xff",
                         "caller is 'x'");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find(" I rejected update from client "
                     "'evil\\x0a2026 I round 9 aggregated\\x5c\\xff' (forbidden): caller is 'x'\n"),
            std::string::npos)
      << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1);
  EXPECT_EQ(ClientCounter(registry, "tally_updates_rejected_total", "forbidden"), 1);
}

}  // namespace
}  // namespace tally::server
