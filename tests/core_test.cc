// Unit tests of core/ and aggregators/ building blocks: layout hashing,
// vector kernels, the striped accumulator, the optimizer. No gRPC: part of
// tally_unit_tests (tests/CMakeLists.txt).
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "aggregators/optimizers/optimizer.h"
#include "aggregators/rules/striped_accumulator.h"
#include "core/buffer_pool.h"
#include "core/model_layout.h"
#include "core/model_store.h"
#include "core/vector_ops.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

TEST(ModelLayoutTest, OffsetsSizesAndCanonicalString) {
  TALLY_ASSERT_OK_AND_ASSIGN(
      ModelLayout layout,
      ModelLayout::Create({{"dense/kernel", {32, 10}}, {"dense/bias", {10}}, {"s", {}}}));
  EXPECT_EQ(layout.NumParams(), 331u);
  ASSERT_EQ(layout.tensors().size(), 3u);
  EXPECT_EQ(layout.tensors()[1].offset, 320u);
  EXPECT_EQ(layout.tensors()[2].size, 1u);
  EXPECT_EQ(layout.CanonicalString(), "dense/kernel:f32:32,10;dense/bias:f32:10;s:f32:;");
}

TEST(ModelLayoutTest, HashIsFnv1a64OfTheCanonicalString) {
  // FNV-1a 64 reference values: "" -> cbf29ce484222325, "a" -> af63dc4c8601ec8c
  // (published test vectors of the FNV authors).
  EXPECT_EQ(Fnv1a64("", 0), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout a, ModelLayout::Create({{"w", {2, 3}}}));
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout b, ModelLayout::Create({{"w", {3, 2}}}));
  const std::string canonical = "w:f32:2,3;";
  EXPECT_EQ(a.Hash(), Fnv1a64(canonical.data(), canonical.size()));
  EXPECT_NE(a.Hash(), b.Hash());
}

TEST(ModelLayoutTest, RejectsBadTensors) {
  EXPECT_THAT(ModelLayout::Create({}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ModelLayout::Create({{"", {1}}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ModelLayout::Create({{"a;b", {1}}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ModelLayout::Create({{"w", {1}}, {"w", {2}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ModelLayout::Create({{"w", {0}}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ModelLayout::Create({{"w", {1 << 20, 1 << 20}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // 2^34 x 2^30 is 2^64: a product that wraps to 0 in 64 bits.
  EXPECT_THAT(ModelLayout::Create({{"w", {int64_t{1} << 34, int64_t{1} << 30}}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(VectorOpsTest, AllFiniteFindsNanAndInfAnywhere) {
  std::vector<float> v(5000, 1.0f);
  EXPECT_TRUE(AllFinite(v.data(), v.size()));
  v[4321] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(AllFinite(v.data(), v.size()));
  v[4321] = -std::numeric_limits<float>::infinity();
  EXPECT_FALSE(AllFinite(v.data(), v.size()));
  v[4321] = std::numeric_limits<float>::max();
  EXPECT_TRUE(AllFinite(v.data(), v.size()));
  v[4321] = std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(AllFinite(v.data(), v.size()));
}

TEST(VectorOpsTest, AxpyBytesReadsUnalignedLittleEndianFloats) {
  const float x[3] = {1.5f, -2.0f, 4.0f};
  std::string bytes(1 + sizeof(x), '\0');
  std::memcpy(&bytes[1], x, sizeof(x));  // Deliberately misaligned.
  std::vector<float> y = {1, 1, 1};
  AxpyBytes(2.0f, bytes.data() + 1, y.data(), 3);
  EXPECT_THAT(y, ElementsAre(4.0f, -3.0f, 9.0f));
}

TEST(VectorOpsTest, CopyAllFiniteBytesCopiesAndFindsNonFinite) {
  std::vector<float> x(3000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i) - 100;
  std::string bytes(1 + 4 * x.size(), '\0');
  std::memcpy(&bytes[1], x.data(), 4 * x.size());  // Misaligned, as off the wire.
  std::vector<float> out(x.size(), -1.0f);
  EXPECT_TRUE(CopyAllFiniteBytes(bytes.data() + 1, out.data(), x.size()));
  EXPECT_EQ(out, x);
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(&bytes[1 + 4 * 2500], &inf, 4);
  EXPECT_FALSE(CopyAllFiniteBytes(bytes.data() + 1, out.data(), x.size()));
}

TEST(BufferPoolTest, RecyclesUpToMaxIdleAndModelStoreReturnsRetiredSnapshots) {
  auto pool = std::make_shared<BufferPool>(/*size=*/8, /*max_idle=*/2);
  std::vector<float> a = pool->Take(), b = pool->Take(), c = pool->Take();
  EXPECT_EQ(pool->allocations(), 3u);
  EXPECT_EQ(a.size(), 8u);
  const float* a_data = a.data();
  pool->Give(std::move(a));
  pool->Give(std::move(b));
  pool->Give(std::move(c));           // Beyond max_idle: freed.
  pool->Give(std::vector<float>(7));  // Not the pool's size: dropped.
  EXPECT_EQ(pool->idle(), 2u);
  std::vector<float> again = pool->Take();
  std::vector<float> again2 = pool->Take();
  EXPECT_TRUE(again.data() == a_data || again2.data() == a_data);
  EXPECT_EQ(pool->allocations(), 3u);

  // A published snapshot's buffer comes back when its last reader lets go.
  ModelStore store(*ModelLayout::Create({{"w", {8}}}), std::vector<float>(8, 0.0f),
                   absl::UnixEpoch());
  store.set_recycler(pool);
  const float* published = again.data();
  store.Publish(std::move(again), 1, absl::UnixEpoch());
  std::shared_ptr<const ModelSnapshot> reader = store.Current();
  store.Publish(std::move(again2), 2, absl::UnixEpoch());  // Version 2 retired...
  EXPECT_EQ(pool->idle(), 0u);                             // ...but still read.
  reader.reset();
  EXPECT_EQ(pool->idle(), 1u);
  EXPECT_EQ(pool->Take().data(), published);
}

TEST(StripedAccumulatorTest, ConcurrentAddsAcrossStripesSumExactly) {
  // One-block stripes so every add spans several locks.
  aggregators::StripedAccumulator acc(10000, /*stripe_lanes=*/kExactBlockLanes);
  std::vector<float> ones(10000, 1.0f);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep) acc.Add(0, ones.data(), 10000, t + 1);
    });
  }
  for (auto& th : threads) th.join();
  // Each element: 50 * (1+2+3+4) = 500, i.e. 500 * 2^40 in the lanes.
  std::vector<float> out(10000);
  acc.Extract(1.0, absl::MakeSpan(out));
  for (float v : out) ASSERT_EQ(v, 500.0f);
  acc.Add(990, ones.data(), 10, -500);  // Crosses no stripe: 990..999.
  acc.Extract(1.0, absl::MakeSpan(out));
  EXPECT_EQ(out[989], 500.0f);
  EXPECT_EQ(out[990], 0.0f);
  // Reset: every lane reads 0 again, including stripes no later Add touches.
  acc.Reset();
  acc.Add(0, ones.data(), 10, 2);
  acc.Extract(4.0, absl::MakeSpan(out));
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[500], 0.0f);
  EXPECT_EQ(out[9000], 0.0f);  // A stripe no Add touched since the Reset.
  const std::vector<ExactLane> lanes = acc.Lanes();
  for (size_t j = 10; j < lanes.size(); ++j) ASSERT_EQ(lanes[j], ExactLane{0}) << j;
}

TEST(OptimizerTest, SgdAppliesTheServerLearningRate) {
  TALLY_ASSERT_OK_AND_ASSIGN(auto sgd, aggregators::CreateOptimizer({"sgd", 0.5, -1, -1, -1, -1}));
  std::vector<float> params = {1, 2, 3};
  std::vector<float> delta = {2, -2, 0};
  sgd->Apply(params, absl::MakeSpan(delta));
  EXPECT_THAT(delta, ElementsAre(2.0f, 1.0f, 3.0f));  // w + 0.5 * delta.
  EXPECT_THAT(aggregators::CreateOptimizer({"adamw", 1.0, -1, -1, -1, -1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(aggregators::CreateOptimizer({"sgd", -1.0, -1, -1, -1, -1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelStoreTest, PublishBumpsVersionAndNotifiesListeners) {
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  ModelStore store(layout, {0, 0}, absl::UnixEpoch());
  auto v1 = store.Current();
  std::vector<uint64_t> seen;
  const int id = store.Subscribe([&](const auto& snapshot) { seen.push_back(snapshot->version); });
  store.Publish({1, 2}, 1, absl::UnixEpoch());
  store.Unsubscribe(id);
  store.Publish({3, 4}, 2, absl::UnixEpoch());
  EXPECT_EQ(v1->version, 1u);
  EXPECT_THAT(v1->params, ElementsAre(0, 0));  // Old snapshots never change.
  EXPECT_EQ(store.Current()->version, 3u);
  EXPECT_THAT(seen, ElementsAre(2u));
}

// A quiet publish is visible at once; its listeners hear of it only when
// the publisher says so (after releasing its own locks).
TEST(ModelStoreTest, QuietPublishNotifiesOnlyWhenAsked) {
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {1}}}));
  ModelStore store(layout, {0}, absl::UnixEpoch());
  std::vector<uint64_t> seen;
  store.Subscribe([&](const auto& snapshot) { seen.push_back(snapshot->version); });
  auto v5 = store.PublishQuietly(5, {1}, 1, absl::UnixEpoch());
  EXPECT_EQ(store.Current()->version, 5u);
  EXPECT_TRUE(seen.empty());
  store.NotifyListeners(v5);
  EXPECT_THAT(seen, ElementsAre(5u));
}

}  // namespace
}  // namespace tally
