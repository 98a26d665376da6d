// client/pacer.h: the metered-link pacer, in virtual time (hand-computed
// start times), and its chunk sizes.
#include "client/pacer.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tally::client_internal {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(BandwidthPacerTest, UnlimitedNeverWaits) {
  BandwidthPacer pacer(0);
  EXPECT_FALSE(pacer.limited());
  EXPECT_EQ(pacer.Reserve(1 << 30, kT0), kT0);
  EXPECT_EQ(pacer.Reserve(1 << 30, kT0), kT0);
  EXPECT_EQ(pacer.ChunkBytes(1 << 20), size_t{1} << 20);
}

// 1000 B/s: each reservation starts when the bytes before it have had their
// airtime (500 B = 0.5 s).
TEST(BandwidthPacerTest, ChunksStartAfterTheAirtimeOfTheBytesBefore) {
  BandwidthPacer pacer(1000);
  EXPECT_EQ(pacer.Reserve(500, kT0), kT0);
  EXPECT_EQ(pacer.Reserve(500, kT0), kT0 + absl::Milliseconds(500));
  EXPECT_EQ(pacer.Reserve(1000, kT0 + absl::Milliseconds(200)), kT0 + absl::Seconds(1));
  // The link is busy until kT0 + 2 s.
  EXPECT_EQ(pacer.Reserve(1, kT0 + absl::Milliseconds(1900)), kT0 + absl::Seconds(2));
}

TEST(BandwidthPacerTest, AnIdleLinkBuildsNoCredit) {
  BandwidthPacer pacer(1000);
  EXPECT_EQ(pacer.Reserve(100, kT0), kT0);
  const absl::Time later = kT0 + absl::Seconds(60);
  EXPECT_EQ(pacer.Reserve(1000, later), later);
  // A minute idle does not let the next 1000 B go at once.
  EXPECT_EQ(pacer.Reserve(1000, later), later + absl::Seconds(1));
}

TEST(BandwidthPacerTest, ChunksAreATenthOfASecondOfBudgetInWholeFloats) {
  EXPECT_EQ(BandwidthPacer(1000000).ChunkBytes(1 << 20), 100000u);
  EXPECT_EQ(BandwidthPacer(1000003).ChunkBytes(1 << 20), 100000u);  // 100000.3 -> floats.
  EXPECT_EQ(BandwidthPacer(100).ChunkBytes(1 << 20), 4096u);        // At least 4 KiB.
  EXPECT_EQ(BandwidthPacer(1 << 30).ChunkBytes(65536), 65536u);     // Never above the agreed.
}

}  // namespace
}  // namespace tally::client_internal
