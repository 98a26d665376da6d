// ClientOptions::max_bandwidth_bytes_per_s against a real server on
// loopback: a push or pull of N bytes at B bytes/s takes at least about
// N / B. Only a generous lower bound is asserted (timing upper bounds would
// be flaky on a loaded machine); the pacer's exact schedule is in
// tests/pacer_test.cc.
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tally/client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;

constexpr int64_t kParams = 500000;              // 2 MB as float32.
constexpr uint64_t kBytesPerSecond = 2000000;    // 2 MB/s: about 1 s a transfer.

std::unique_ptr<Client> MeteredClient(const Harness& h, const std::string& id) {
  ClientOptions options;
  options.target = h.target;
  options.client_id = id;
  options.download_codecs = {"float32"};
  options.max_bandwidth_bytes_per_s = kBytesPerSecond;
  auto client = Client::Create(options);
  EXPECT_THAT(client, IsOk());
  return client.ok() ? *std::move(client) : nullptr;
}

TEST(ClientMeteredTest, PushAndPullTakeAtLeastBytesOverRate) {
  auto h = Harness::Start({kParams}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto client = MeteredClient(*h, "metered");
  ASSERT_NE(client, nullptr);
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult join, client->Join());
  const double ideal_seconds = kParams * 4.0 / kBytesPerSecond;

  absl::Time start = absl::Now();
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, client->PullModel());
  EXPECT_GE(absl::ToDoubleSeconds(absl::Now() - start), 0.7 * ideal_seconds);

  const std::vector<float> delta(kParams, 0.5f);
  Update update;
  update.round = 1;
  update.base_version = model.version;
  update.delta = delta;
  start = absl::Now();
  TALLY_ASSERT_OK_AND_ASSIGN(PushResult pushed, client->PushUpdate(update));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(pushed.payload_bytes, kParams * 4u);
  EXPECT_GE(seconds, 0.7 * ideal_seconds);
  // The update arrived whole.
  ASSERT_THAT(client->WaitForVersion(model.version, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model after, client->PullModel());
  EXPECT_EQ(after.params[kParams - 1], 0.5f);
}

}  // namespace
}  // namespace tally
