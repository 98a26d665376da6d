// What every Coordinator test needs to build one: the config with defaults
// applied and validated, its layout, metrics on the test's registry and a
// zero model.
#ifndef TALLY_TESTS_COORDINATOR_HARNESS_H_
#define TALLY_TESTS_COORDINATOR_HARNESS_H_

#include <memory>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/coordinator.h"
#include "server/metrics.h"
#include "server/plan.h"

namespace tally::server {

// Null (and a test failure) if `config` is invalid. Sets *layout and
// *metrics, which must outlive the coordinator.
inline std::unique_ptr<Coordinator> MakeTestCoordinator(tally::v1::ServerConfig config,
                                                        Clock* clock,
                                                        prometheus::Registry& registry,
                                                        std::unique_ptr<ServerMetrics>* metrics,
                                                        ModelLayout* layout) {
  ApplyDefaults(&config);
  absl::StatusOr<ServerPlan> plan = MakePlan(config);
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (!plan.ok()) return nullptr;
  *layout = plan->layout;
  *metrics = std::make_unique<ServerMetrics>(registry);
  Coordinator::Options options;
  options.plan = *std::move(plan);
  options.initial_params = std::vector<float>(layout->NumParams(), 0.0f);
  options.clock = clock;
  options.metrics = metrics->get();
  absl::StatusOr<std::unique_ptr<Coordinator>> made = Coordinator::Create(std::move(options));
  EXPECT_TRUE(made.ok()) << made.status();
  return made.ok() ? *std::move(made) : nullptr;
}

}  // namespace tally::server

#endif  // TALLY_TESTS_COORDINATOR_HARNESS_H_
