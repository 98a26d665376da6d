// Robust-over-secure bucketing (secagg/buckets.h): the assignment is a
// partition into buckets of s or s + 1, reproducible from the logged seed,
// and f is checked against the number of buckets (B >= 2f + 1, worked out
// by hand below).
#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "secagg/buckets.h"
#include "tests/status_matchers.h"

namespace tally::secagg {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

TEST(SecAggBuckets, PartitionOfSizesSOrSPlusOne) {
  TALLY_ASSERT_OK_AND_ASSIGN(Key seed, BucketSeed(Key{}, 17));
  // 23 clients in buckets of 5: B = 4, 3 left over -> sizes 6, 6, 6, 5.
  TALLY_ASSERT_OK_AND_ASSIGN(auto buckets, AssignBuckets(seed, 23, 5));
  ASSERT_EQ(buckets.size(), 4u);
  std::vector<size_t> sizes;
  std::vector<uint32_t> all;
  for (const auto& b : buckets) {
    sizes.push_back(b.size());
    EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
    all.insert(all.end(), b.begin(), b.end());
  }
  EXPECT_THAT(sizes, ::testing::ElementsAre(6, 6, 6, 5));
  std::sort(all.begin(), all.end());
  for (uint32_t i = 0; i < 23; ++i) EXPECT_EQ(all[i], i);
  // The logged seed reproduces the assignment; another round's differs.
  EXPECT_EQ(AssignBuckets(BucketSeed(Key{}, 17).value(), 23, 5).value(), buckets);
  EXPECT_NE(AssignBuckets(BucketSeed(Key{}, 18).value(), 23, 5).value(), buckets);
  EXPECT_THAT(AssignBuckets(seed, 4, 5), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SecAggBuckets, ByzantineClientsAgainstBucketCount) {
  // 30 clients, buckets of 5: B = 6 >= 2f + 1 holds for f <= 2.
  EXPECT_THAT(ValidateBucketing(30, 5, 2), IsOk());
  EXPECT_THAT(ValidateBucketing(30, 5, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("strategy.f")));
  // 29 clients: B = 5, so f = 2 is the limit.
  EXPECT_THAT(ValidateBucketing(29, 5, 2), IsOk());
  EXPECT_THAT(ValidateBucketing(30, 2, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bucket_size")));
}

}  // namespace
}  // namespace tally::secagg
