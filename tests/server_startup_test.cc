// Start-up against real servers on loopback: a busy gRPC port fails the
// second server (no SO_REUSEPORT sharing), and the build (version, commit,
// build type) is reported by Admin.GetStatus and the tally_build_info
// metric. tests/server_startup_test.sh covers the same through the binary.
#include <map>
#include <string>

#include "core/build_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_harness.h"

namespace tally {
namespace {

using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ServerStartupTest, ASecondServerOnABusyPortFailsNamingTheAddress) {
  auto first = Harness::Start({4}, 1, 1);
  ASSERT_NE(first, nullptr);
  tally::v1::ServerConfig config = Harness::Config({4}, 1, 1);
  config.set_listen_address(first->target);
  server::ServerOptions options;
  options.config = config;
  auto second = server::Server::Create(std::move(options));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("'" + first->target + "'"));
  // The first server still serves, alone.
  auto client = first->NewClient("c");
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->Join(), ::tally::testing::IsOk());
}

TEST(ServerStartupTest, GetStatusAndMetricsCarryTheBuild) {
  auto h = Harness::Start({4}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto client = h->NewClient("c");
  ASSERT_NE(client, nullptr);
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, client->GetServerStatus());
  // TALLY_EXPECTED_*: what CMake configured (tests/CMakeLists.txt).
  EXPECT_EQ(status.server_version, TALLY_EXPECTED_VERSION);
  EXPECT_EQ(status.server_commit, TALLY_EXPECTED_COMMIT);
  EXPECT_EQ(status.server_build_type, TALLY_EXPECTED_BUILD_TYPE);
  EXPECT_NE(status.server_commit, "");
  EXPECT_NE(status.server_build_type, "");
  EXPECT_EQ(VersionString("tally-server"),
            "tally-server " TALLY_EXPECTED_VERSION " (commit " TALLY_EXPECTED_COMMIT
            ", " TALLY_EXPECTED_BUILD_TYPE " build)");

  int series = 0;
  for (const auto& family : h->registry->Collect()) {
    if (family.name != "tally_build_info") continue;
    for (const auto& metric : family.metric) {
      ++series;
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      EXPECT_EQ(labels["version"], TALLY_EXPECTED_VERSION);
      EXPECT_EQ(labels["commit"], TALLY_EXPECTED_COMMIT);
      EXPECT_EQ(labels["build_type"], TALLY_EXPECTED_BUILD_TYPE);
      EXPECT_EQ(metric.gauge.value, 1);
    }
  }
  EXPECT_EQ(series, 1);
}

}  // namespace
}  // namespace tally
