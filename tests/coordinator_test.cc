// Unit tests of the synchronous-round coordinator, without gRPC: rounds,
// weighted means, deduplication, rejection of bad updates, aborted uploads.
#include "server/coordinator.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "aggregators/rules/parallel.h"
#include "compress/codec.h"
#include "core/sync.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "tests/coordinator_harness.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(/*clients_per_round=*/3, /*min_clients=*/2); }

  void Start(uint32_t clients_per_round, uint32_t min_clients, uint64_t total_rounds = 0) {
    coordinator_.reset();
    tally::v1::ServerConfig config;
    auto* w = config.mutable_model()->add_tensors();
    w->set_name("w");
    w->add_shape(4);
    config.mutable_rounds()->set_clients_per_round(clients_per_round);
    config.mutable_rounds()->set_min_clients(min_clients);
    config.mutable_rounds()->set_total_rounds(total_rounds);
    config.mutable_rounds()->set_round_timeout_ms(1000);
    config.set_spool_dir(::testing::TempDir());
    config.mutable_limits()->set_undo_memory_bytes(undo_memory_bytes_);
    *config.mutable_optimizer() = optimizer_;
    *config.mutable_strategy() = strategy_;
    *config.mutable_compression() = compression_;
    *config.mutable_relay() = relay_;
    // A relay learns its model (and the limits derived from it) upstream.
    if (!relay_.upstream().empty()) config.mutable_limits()->set_max_update_bytes(16);
    coordinator_ = MakeTestCoordinator(config, &clock_, registry_, &metrics_, &layout_);
    ASSERT_NE(coordinator_, nullptr);
  }

  std::string JoinClient(const std::string& id) {
    auto session = coordinator_->Join(id);
    EXPECT_THAT(session, IsOk());
    tokens_[id] = session.ok() ? session->token : "";
    return tokens_[id];
  }

  UpdateHeaderInfo Header(const std::string& id, uint64_t samples, const std::string& update_id) {
    UpdateHeaderInfo h;
    h.client_id = id;
    h.session_token = tokens_[id];
    h.update_id = update_id;
    h.round = header_round_;
    h.base_version = header_base_;
    h.num_samples = samples;
    h.codec_known = true;  // float32.
    h.layout_hash = layout_.Hash();
    h.num_params = 4;
    h.payload_bytes = 16;
    return h;
  }

  // Sends `delta` in chunks of two floats and commits.
  absl::StatusOr<CommitInfo> Push(const std::string& id, uint64_t samples,
                                  const std::vector<float>& delta,
                                  const std::string& update_id = "") {
    auto upload =
        coordinator_->BeginUpload(Header(id, samples, update_id.empty() ? id + "-u" : update_id));
    if (!upload.ok()) return upload.status();
    const std::string bytes = Bytes(delta);
    for (size_t off = 0; off < bytes.size(); off += 8) {
      absl::Status s =
          coordinator_->AddChunk(**upload, off, absl::string_view(bytes).substr(off, 8));
      if (!s.ok()) return s;
    }
    return coordinator_->FinishUpload(**upload);
  }

  // Sends an encoded payload (codec `spec`) in chunks of 3 bytes and commits.
  absl::StatusOr<CommitInfo> PushEncoded(const std::string& id, uint64_t samples,
                                         const compress::CodecSpec& spec,
                                         const std::string& payload) {
    UpdateHeaderInfo h = Header(id, samples, id + "-u");
    h.codec = spec;
    h.payload_bytes = payload.size();
    auto upload = coordinator_->BeginUpload(h);
    if (!upload.ok()) return upload.status();
    for (size_t off = 0; off < payload.size(); off += 3) {
      absl::Status s =
          coordinator_->AddChunk(**upload, off, absl::string_view(payload).substr(off, 3));
      if (!s.ok()) return s;
    }
    return coordinator_->FinishUpload(**upload);
  }

  // Waits (event-driven, no sleeps) until the store publishes `version`.
  void AwaitVersion(uint64_t version) {
    auto reached = std::make_shared<tally::Notification>();
    const int id = coordinator_->mutable_store().Subscribe(
        [reached, version](const std::shared_ptr<const ModelSnapshot>& s) {
          if (s->version >= version && !reached->HasBeenNotified()) reached->Notify();
        });
    if (coordinator_->store().Current()->version < version) {
      ASSERT_TRUE(reached->WaitForNotificationWithTimeout(absl::Seconds(30)))
          << "version " << version << " was not published";
    }
    coordinator_->mutable_store().Unsubscribe(id);
  }

  double Rejected(const std::string& reason) {
    for (const auto& family : registry_.Collect()) {
      if (family.name != "tally_updates_rejected_total") continue;
      for (const auto& metric : family.metric) {
        if (metric.label[0].value == reason) return metric.counter.value;
      }
    }
    return -1;
  }

  uint64_t undo_memory_bytes_ = 0;        // 0 = the default budget.
  tally::v1::OptimizerConfig optimizer_;  // Default: sgd, lr 1.
  tally::v1::StrategyConfig strategy_;    // Default: the streaming mean.
  tally::v1::CompressionConfig compression_;  // Default: float32 only.
  tally::v1::RelayConfig relay_;              // Set: relay mode.
  uint64_t header_round_ = 1;                 // Of Header()'s updates.
  uint64_t header_base_ = 1;
  ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  ModelLayout layout_;
  std::unique_ptr<Coordinator> coordinator_;
  std::map<std::string, std::string> tokens_;
};

TEST_F(CoordinatorTest, ThreeClientRoundIsTheSampleWeightedMean) {
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  // Hand computation: (1*[1,2,3,4] + 2*[0,0,3,3] + 1*[4,0,-3,0]) / 4
  //                 = [5,2,6,10] / 4 = [1.25, 0.5, 1.5, 2.5]; lr 1 on a zero model.
  ASSERT_THAT(Push("a", 1, {1, 2, 3, 4}), IsOk());
  ASSERT_THAT(Push("b", 2, {0, 0, 3, 3}), IsOk());
  ASSERT_THAT(Push("c", 1, {4, 0, -3, 0}), IsOk());
  AwaitVersion(2);
  auto model = coordinator_->store().Current();
  EXPECT_EQ(model->version, 2u);
  EXPECT_EQ(model->round, 1u);
  EXPECT_THAT(model->params, Pointwise(FloatNear(1e-6), {1.25f, 0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(coordinator_->Status().round, 2u);
}

// Clients with different codecs in one round: float32, top-2 and int8, each
// decoded straight into the round's sum, give the weighted mean of what the
// codecs deliver; a top-k payload naming an index out of range is refused
// with INVALID_ARGUMENT and changes nothing.
TEST_F(CoordinatorTest, CompressedUploadsOfDifferentCodecsMakeTheWeightedMean) {
  for (const std::string robust : {"", "average"}) {
    SCOPED_TRACE(robust);
    strategy_ = tally::v1::StrategyConfig();
    if (!robust.empty()) strategy_.set_rule(robust);  // Decoded into arena rows.
    compression_ = tally::v1::CompressionConfig();
    auto* topk = compression_.add_upload();
    topk->set_codec("topk");
    topk->mutable_params()->set_k(2);
    compression_.add_upload()->set_codec("int8");
    Start(/*clients_per_round=*/3, /*min_clients=*/3);
    for (const char* id : {"a", "b", "c", "m"}) JoinClient(id);

    compress::CodecSpec topk_spec = compress::DefaultSpec(compress::CodecId::kTopK);
    topk_spec.k = 2;
    // count 1, index 9 (d = 4), value 1.0f.
    const std::string bad = std::string("\x01\x09") + Bytes({1.0f});
    const double malformed = Rejected("malformed");  // The registry outlives Start().
    EXPECT_THAT(PushEncoded("m", 5, topk_spec, bad), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(Rejected("malformed"), malformed + 1);

    ASSERT_THAT(Push("a", 1, {1, 2, 3, 4}), IsOk());
    // top-2 of (0.5, -8, 0.25, 6): indices 1 and 3 -> (0, -8, 0, 6).
    std::string payload;
    ASSERT_THAT(compress::Encode(topk_spec, std::vector<float>{0.5f, -8, 0.25f, 6}, &payload),
                IsOk());
    ASSERT_THAT(PushEncoded("b", 2, topk_spec, payload), IsOk());
    // int8, one block: scale 1.27/127 = 0.01, q = (127, -62, 0, 13).
    const compress::CodecSpec int8_spec = compress::DefaultSpec(compress::CodecId::kInt8);
    ASSERT_THAT(compress::Encode(int8_spec, std::vector<float>{1.27f, -0.62f, 0, 0.13f}, &payload),
                IsOk());
    // A compressed update whose decoded values exceed limits.max_abs_value
    // (default 1e6) is decoded and checked whole before any of it joins the
    // sum: refused, counted, nothing changed.
    const double out_of_range = Rejected("value_range");
    std::string huge;
    ASSERT_THAT(compress::Encode(int8_spec, std::vector<float>{5e6f, 1, 0, 0}, &huge), IsOk());
    EXPECT_THAT(PushEncoded("m", 1, int8_spec, huge),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(Rejected("value_range"), out_of_range + 1);
    ASSERT_THAT(PushEncoded("c", 1, int8_spec, payload), IsOk());
    AwaitVersion(2);
    // (1*(1,2,3,4) + 2*(0,-8,0,6) + 1*(1.27,-0.62,0,0.13)) / 4.
    EXPECT_THAT(coordinator_->store().Current()->params,
                Pointwise(FloatNear(1e-5), {0.5675f, -3.655f, 0.75f, 4.0325f}));
  }
}

TEST_F(CoordinatorTest, LaterRoundsStartFromAZeroSumOnTheNewModel) {
  Start(/*clients_per_round=*/2, /*min_clients=*/2);
  JoinClient("a");
  JoinClient("b");
  ASSERT_THAT(Push("a", 1, {1, 1, 1, 1}, "r1a"), IsOk());
  ASSERT_THAT(Push("b", 1, {3, 3, 3, 3}, "r1b"), IsOk());
  AwaitVersion(2);  // Model: 2.
  for (int round = 2; round <= 3; ++round) {
    for (const char* id : {"a", "b"}) {
      UpdateHeaderInfo h = Header(id, 1, absl::StrCat(id, "-", round));
      h.round = round;
      h.base_version = round;
      TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(h));
      ASSERT_THAT(coordinator_->AddChunk(*upload, 0, Bytes({-1, -1, 1, 1})), IsOk());
      ASSERT_THAT(coordinator_->FinishUpload(*upload), IsOk());
    }
    AwaitVersion(round + 1);
  }
  // Two more rounds of mean [-1,-1,1,1] on top of 2: [0, 0, 4, 4]. A sum
  // buffer recycled without zeroing would show the previous rounds.
  EXPECT_THAT(coordinator_->store().Current()->params, Pointwise(FloatNear(1e-6), {0, 0, 4, 4}));
}

TEST_F(CoordinatorTest, ChunkPiecesMaySplitFloats) {
  Start(/*clients_per_round=*/1, /*min_clients=*/1);
  JoinClient("a");
  // First a chunk whose last piece holds a NaN: its earlier pieces, already
  // added, must be taken back.
  {
    TALLY_ASSERT_OK_AND_ASSIGN(auto bad, coordinator_->BeginUpload(Header("a", 9, "bad")));
    const std::string poisoned = Bytes({100, 100, 100, std::nanf("")});
    const absl::string_view p(poisoned);
    const absl::string_view bad_pieces[] = {p.substr(0, 5), p.substr(5, 11)};
    EXPECT_THAT(coordinator_->AddChunk(*bad, 0, absl::MakeConstSpan(bad_pieces)),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 1, "split")));
  const std::string bytes = Bytes({1.5f, -2.25f, 3, 1e-3f});
  const absl::string_view all(bytes);
  // Pieces of 3, 6 and 7 bytes: floats 0, 1 and 2 straddle piece boundaries.
  const absl::string_view pieces[] = {all.substr(0, 3), all.substr(3, 6), all.substr(9, 7)};
  ASSERT_THAT(coordinator_->AddChunk(*upload, 0, absl::MakeConstSpan(pieces)), IsOk());
  ASSERT_THAT(coordinator_->FinishUpload(*upload), IsOk());
  AwaitVersion(2);
  EXPECT_THAT(coordinator_->store().Current()->params, ElementsAre(1.5f, -2.25f, 3.0f, 1e-3f));
}

TEST_F(CoordinatorTest, ServerOptimizerStateCarriesAcrossRounds) {
  optimizer_.set_name("fedavgm");
  optimizer_.set_momentum(0.9);
  Start(/*clients_per_round=*/1, /*min_clients=*/1);
  JoinClient("a");
  ASSERT_THAT(Push("a", 1, {0.5f, 0.5f, 0.5f, 0.5f}, "r1"), IsOk());
  AwaitVersion(2);
  UpdateHeaderInfo h = Header("a", 1, "r2");
  h.round = 2;
  h.base_version = 2;
  TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(h));
  ASSERT_THAT(coordinator_->AddChunk(*upload, 0, Bytes({-0.2f, -0.2f, -0.2f, -0.2f})), IsOk());
  ASSERT_THAT(coordinator_->FinishUpload(*upload), IsOk());
  AwaitVersion(3);
  // docs/algorithms.md#fedavgm example from w = 0: v = 0.5 -> 0.5, v = 0.25 -> 0.75.
  EXPECT_THAT(coordinator_->store().Current()->params,
              Pointwise(FloatNear(1e-6), {0.75f, 0.75f, 0.75f, 0.75f}));
}

TEST_F(CoordinatorTest, RobustRoundWithTooFewUpdatesForFFailsAndFailedUploadsFreeTheirRow) {
  strategy_.set_rule("median");
  Start(/*clients_per_round=*/3, /*min_clients=*/1);
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  // A failed upload frees its row; the median of what was committed is used.
  {
    TALLY_ASSERT_OK_AND_ASSIGN(auto broken, coordinator_->BeginUpload(Header("c", 1, "bad")));
    ASSERT_THAT(coordinator_->AddChunk(*broken, 0, Bytes({100, 100})), IsOk());
  }
  ASSERT_THAT(Push("a", 1, {1, 2, 3, 4}), IsOk());
  ASSERT_THAT(Push("b", 1, {3, 2, 1, 0}), IsOk());
  ASSERT_THAT(Push("c", 1, {2, 9, 9, 9}, "good"), IsOk());
  AwaitVersion(2);
  EXPECT_THAT(coordinator_->store().Current()->params, Pointwise(FloatNear(1e-6), {2, 2, 3, 4}));

  // Krum with f = 1 needs n > 2: a round closed by its deadline with two
  // updates fails and leaves the model alone.
  strategy_.set_rule("krum");
  strategy_.set_f(1);
  Start(/*clients_per_round=*/3, /*min_clients=*/1);
  for (const char* id : {"a", "b"}) JoinClient(id);
  ASSERT_THAT(coordinator_->GetTask("a", tokens_["a"]), IsOk());
  ASSERT_THAT(Push("a", 1, {1, 1, 1, 1}), IsOk());
  ASSERT_THAT(Push("b", 1, {1, 1, 1, 1}), IsOk());
  clock_.Advance(absl::Seconds(2));
  coordinator_->TickForTesting();
  EXPECT_EQ(coordinator_->Status().rounds_failed, 1u);
  EXPECT_THAT(coordinator_->store().Current()->params, ElementsAre(0, 0, 0, 0));
}

// MoNNA (f = 1) averages the n - f = 2 updates nearest to the trusted
// client's, whatever the arrival order: t = (1,1,1,1) with b = (0,0,0,0) at
// squared distance 4 (a = (10,...) is at 324) -> (0.5, ...). Trusting the
// first arrival, a, would give (5.5, ...). A third ordinary client waits for
// the slot kept for t; a round that closes at its deadline without t's
// update fails and leaves the model alone.
TEST_F(CoordinatorTest, MonnaAveragesAroundTheTrustedClientWhoAlwaysHasASlot) {
  strategy_.set_rule("monna");
  strategy_.set_f(1);
  strategy_.set_trusted_client("t");
  Start(/*clients_per_round=*/3, /*min_clients=*/1);
  for (const char* id : {"a", "b", "c", "t"}) JoinClient(id);
  TALLY_ASSERT_OK_AND_ASSIGN(TaskInfo task, coordinator_->GetTask("a", tokens_["a"]));
  EXPECT_EQ(task.kind, TaskInfo::Kind::kTrain);
  TALLY_ASSERT_OK_AND_ASSIGN(task, coordinator_->GetTask("b", tokens_["b"]));
  EXPECT_EQ(task.kind, TaskInfo::Kind::kTrain);
  TALLY_ASSERT_OK_AND_ASSIGN(task, coordinator_->GetTask("c", tokens_["c"]));
  EXPECT_EQ(task.kind, TaskInfo::Kind::kWait);  // The last slot is t's.
  EXPECT_THAT(Push("c", 1, {0, 0, 0, 0}), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(Push("a", 1, {10, 10, 10, 10}), IsOk());
  ASSERT_THAT(Push("b", 1, {0, 0, 0, 0}), IsOk());
  ASSERT_THAT(Push("t", 1, {1, 1, 1, 1}), IsOk());
  AwaitVersion(2);
  EXPECT_THAT(coordinator_->store().Current()->params,
              Pointwise(FloatNear(1e-6), {0.5f, 0.5f, 0.5f, 0.5f}));

  header_round_ = 2;
  header_base_ = 2;
  ASSERT_THAT(coordinator_->GetTask("a", tokens_["a"]), IsOk());  // Starts the deadline.
  ASSERT_THAT(Push("a", 1, {1, 1, 1, 1}, "a-2"), IsOk());
  ASSERT_THAT(Push("b", 1, {1, 1, 1, 1}, "b-2"), IsOk());
  clock_.Advance(absl::Seconds(2));
  coordinator_->TickForTesting();
  EXPECT_EQ(coordinator_->Status().rounds_failed, 1u);
  EXPECT_THAT(coordinator_->store().Current()->params,
              Pointwise(FloatNear(1e-6), {0.5f, 0.5f, 0.5f, 0.5f}));
}

// Krum with its default nnm_mixing runs NNM first (docs/strategies.md#nearest-neighbour-mixing):
// on example R-1 of docs/algorithms.md (padded with zeros to the model's four
// coordinates) NNM(1) turns the four honest rows into their mean (1.025, 1.05)
// and Krum selects one of them; the reference Krum (nnm_mixing: false)
// selects the single update (1, 1).
TEST_F(CoordinatorTest, KrumMixesNeighboursByDefaultAndTheReferenceKrumIsAnOption) {
  auto round = [&](std::optional<bool> mixing) {
    strategy_ = tally::v1::StrategyConfig();
    strategy_.set_rule("krum");
    strategy_.set_f(1);
    if (mixing.has_value()) strategy_.set_nnm_mixing(*mixing);
    Start(/*clients_per_round=*/5, /*min_clients=*/5);
    const std::vector<std::vector<float>> rows = {
        {1, 1, 0, 0}, {1.2f, 0.8f, 0, 0}, {0.8f, 1.1f, 0, 0}, {1.1f, 1.3f, 0, 0}, {10, -10, 0, 0}};
    for (size_t i = 0; i < rows.size(); ++i) {
      const std::string id = absl::StrCat("c", i);
      JoinClient(id);
      EXPECT_THAT(Push(id, 1, rows[i]), IsOk());
    }
    AwaitVersion(2);
    return coordinator_->store().Current()->params;
  };
  EXPECT_THAT(round(std::nullopt), Pointwise(FloatNear(1e-6), {1.025f, 1.05f, 0.f, 0.f}));
  EXPECT_THAT(round(true), Pointwise(FloatNear(1e-6), {1.025f, 1.05f, 0.f, 0.f}));
  EXPECT_THAT(round(false), Pointwise(FloatNear(1e-6), {1.f, 1.f, 0.f, 0.f}));
}

// Model listeners (WatchModel streams) run after the coordinator released
// its mutex: one that asks the coordinator for its status sees the new
// version instead of deadlocking on a lock its publisher holds.
TEST_F(CoordinatorTest, ModelListenersRunOutsideTheCoordinatorsLock) {
  Start(/*clients_per_round=*/1, /*min_clients=*/1);
  std::atomic<uint64_t> seen_completed{0};
  coordinator_->mutable_store().Subscribe([&](const auto&) {
    seen_completed = coordinator_->Status().rounds_completed;
  });
  JoinClient("a");
  ASSERT_THAT(Push("a", 1, {1, 2, 3, 4}), IsOk());
  AwaitVersion(2);
  for (int i = 0; i < 1000 && seen_completed == 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(seen_completed, 1u);
}

TEST_F(CoordinatorTest, RobustAverageIsWeightedByNumSamplesUnlessAPreStepMergesRows) {
  // Hand computations over the rows of ThreeClientRoundIsTheSampleWeightedMean.
  auto round = [&](const char* rule, const std::vector<std::string>& pre) {
    strategy_ = tally::v1::StrategyConfig();
    strategy_.set_rule(rule);
    for (const std::string& name : pre) strategy_.add_pre(name);
    strategy_.set_clip_norm(1000);  // Clipping leaves these rows alone.
    Start(/*clients_per_round=*/3, /*min_clients=*/3);
    for (const char* id : {"a", "b", "c"}) JoinClient(id);
    EXPECT_THAT(Push("a", 1, {1, 2, 3, 4}), IsOk());
    EXPECT_THAT(Push("b", 2, {0, 0, 3, 3}), IsOk());
    EXPECT_THAT(Push("c", 1, {4, 0, -3, 0}), IsOk());
    AwaitVersion(2);
    return coordinator_->store().Current()->params;
  };
  // (1·a + 2·b + 1·c) / 4, as the streaming mean.
  const std::vector<float> weighted = {1.25f, 0.5f, 1.5f, 2.5f};
  EXPECT_THAT(round("average", {}), Pointwise(FloatNear(1e-6), weighted));
  EXPECT_THAT(round("average", {"clipping"}), Pointwise(FloatNear(1e-6), weighted));
  // Bucketing (s = 1 only permutes the rows): weights are dropped, so the
  // plain mean (a + b + c) / 3.
  EXPECT_THAT(round("average", {"bucketing"}),
              Pointwise(FloatNear(1e-6), {5 / 3.0f, 2 / 3.0f, 1.0f, 7 / 3.0f}));
}

TEST_F(CoordinatorTest, DuplicateUpdateIdIsAcknowledgedNotCounted) {
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  ASSERT_THAT(Push("a", 1, {4, 4, 4, 4}, "same"), IsOk());
  EXPECT_THAT(Push("a", 1, {4, 4, 4, 4}, "same"), StatusIs(absl::StatusCode::kAlreadyExists));
  // A different id from the same client in the same round is refused too.
  EXPECT_THAT(Push("a", 1, {4, 4, 4, 4}, "other"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(coordinator_->Status().updates_in_round, 1u);
  ASSERT_THAT(Push("b", 1, {0, 0, 0, 0}), IsOk());
  ASSERT_THAT(Push("c", 2, {0, 0, 0, 0}), IsOk());
  AwaitVersion(2);
  // Counted once: 1*4 / (1+1+2) = 1.
  EXPECT_THAT(coordinator_->store().Current()->params, Pointwise(FloatNear(1e-6), {1, 1, 1, 1}));
  // Still a duplicate after the round closed.
  EXPECT_THAT(Push("a", 1, {4, 4, 4, 4}, "same"), StatusIs(absl::StatusCode::kAlreadyExists));
}

// The number of lines of `log` that contain `needle`.
int LinesWith(const std::string& log, const std::string& needle) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) n += absl::StrContains(line, needle);
  return n;
}

TEST_F(CoordinatorTest, BadHeadersAreRejectedWithPreciseCodes) {
  JoinClient("a");
  ::testing::internal::CaptureStderr();
  UpdateHeaderInfo h = Header("a", 1, "u1");
  h.layout_hash ^= 1;
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 1, "u1");
  h.num_params = 5;
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 1, "u1");
  h.payload_bytes = 12;
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 0, "u1");
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 1, "bad id with spaces");
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 1, "u1");
  h.codec_known = false;  // An id this build does not know.
  h.codec_id = 42;
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 1, "u1");
  h.codec = compress::DefaultSpec(compress::CodecId::kTopK);  // Not in compression.upload.
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kInvalidArgument));
  h = Header("a", 1, "u1");
  h.round = 7;
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kAborted));
  h = Header("a", 1, "u1");
  h.session_token = "forged";
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(Rejected("layout_mismatch"), 2);
  EXPECT_EQ(Rejected("length"), 1);
  EXPECT_EQ(Rejected("malformed"), 4);
  EXPECT_EQ(Rejected("stale"), 1);
  EXPECT_EQ(Rejected("unauthenticated"), 1);
  // Every rejection is logged with the client id and the reason.
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(LinesWith(log, "rejected update from client 'a' ("), 9) << log;
  EXPECT_EQ(LinesWith(log, "client 'a' (layout_mismatch): model layout mismatch"), 2) << log;
  EXPECT_EQ(LinesWith(log, "client 'a' (unauthenticated)"), 1) << log;
}

TEST_F(CoordinatorTest, BadChunksAbortTheUploadAndLeaveTheSumUntouched) {
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  ::testing::internal::CaptureStderr();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  {  // NaN in the second chunk, after the first was already added.
    TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 5, "n1")));
    const std::string bytes = Bytes({100, 100, 1, nan});
    ASSERT_THAT(coordinator_->AddChunk(*upload, 0, absl::string_view(bytes).substr(0, 8)), IsOk());
    EXPECT_THAT(coordinator_->AddChunk(*upload, 8, absl::string_view(bytes).substr(8, 8)),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {  // Out-of-order chunk.
    TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 5, "n2")));
    const std::string bytes = Bytes({100, 100, 100, 100});
    ASSERT_THAT(coordinator_->AddChunk(*upload, 0, absl::string_view(bytes).substr(0, 8)), IsOk());
    EXPECT_THAT(coordinator_->AddChunk(*upload, 0, absl::string_view(bytes).substr(8, 8)),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {  // Longer than declared.
    TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 5, "n3")));
    const std::string bytes = Bytes({100, 100, 100, 100, 100});
    EXPECT_THAT(coordinator_->AddChunk(*upload, 0, bytes),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {  // Not a whole number of floats.
    TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 5, "n4")));
    EXPECT_THAT(coordinator_->AddChunk(*upload, 0, "abc"),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {  // Truncated: the stream ends early.
    TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 5, "n5")));
    const std::string bytes = Bytes({100, 100, 100, 100});
    ASSERT_THAT(coordinator_->AddChunk(*upload, 0, absl::string_view(bytes).substr(0, 8)), IsOk());
    EXPECT_THAT(coordinator_->FinishUpload(*upload), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  {  // Inf; and a client that just disappears (the Upload is dropped).
    TALLY_ASSERT_OK_AND_ASSIGN(auto upload, coordinator_->BeginUpload(Header("a", 5, "n6")));
    EXPECT_THAT(coordinator_->AddChunk(*upload, 0, Bytes({inf, 0})),
                StatusIs(absl::StatusCode::kInvalidArgument));
    TALLY_ASSERT_OK_AND_ASSIGN(auto vanished, coordinator_->BeginUpload(Header("a", 5, "n7")));
    ASSERT_THAT(coordinator_->AddChunk(*vanished, 0, Bytes({100, 100})), IsOk());
  }
  EXPECT_EQ(Rejected("non_finite"), 2);
  EXPECT_EQ(Rejected("chunk_order"), 1);
  EXPECT_EQ(Rejected("length"), 2);
  EXPECT_EQ(Rejected("malformed"), 1);
  EXPECT_EQ(Rejected("cancelled"), 1);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(LinesWith(log, "rejected update from client 'a' ("), 7) << log;
  EXPECT_EQ(LinesWith(log, "(chunk_order): update 'n2' aborted after 8 bytes"), 1) << log;
  // The client may still contribute properly afterwards.
  ASSERT_THAT(Push("a", 1, {1, 2, 3, 4}), IsOk());
  ASSERT_THAT(Push("b", 1, {3, 2, 1, 0}), IsOk());
  ASSERT_THAT(Push("c", 2, {0, 0, 0, 0}), IsOk());
  AwaitVersion(2);
  // (1*[1,2,3,4] + 1*[3,2,1,0]) / 4 = [1,1,1,1]: nothing of the aborted uploads.
  EXPECT_THAT(coordinator_->store().Current()->params, Pointwise(FloatNear(1e-5), {1, 1, 1, 1}));
}

TEST_F(CoordinatorTest, UploadsBeyondTheMemoryBudgetJournalToFilesAndUndoExactly) {
  undo_memory_bytes_ = 16;  // Room for one 16-byte update in memory.
  Start(/*clients_per_round=*/2, /*min_clients=*/2);
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  TALLY_ASSERT_OK_AND_ASSIGN(auto in_memory, coordinator_->BeginUpload(Header("a", 1, "m")));
  TALLY_ASSERT_OK_AND_ASSIGN(auto on_file, coordinator_->BeginUpload(Header("b", 1, "f")));
  ASSERT_THAT(coordinator_->AddChunk(*in_memory, 0, Bytes({500, 500})), IsOk());
  ASSERT_THAT(coordinator_->AddChunk(*on_file, 0, Bytes({700, 700})), IsOk());
  // Both fail: one is dropped, one sends NaN; both halves must vanish.
  in_memory.reset();
  EXPECT_THAT(coordinator_->AddChunk(*on_file, 8, Bytes({std::nanf(""), 1})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(Push("c", 1, {2, 2, 2, 2}), IsOk());
  ASSERT_THAT(Push("a", 1, {4, 4, 4, 4}, "a2"), IsOk());
  AwaitVersion(2);
  EXPECT_THAT(coordinator_->store().Current()->params, Pointwise(FloatNear(1e-4), {3, 3, 3, 3}));
}

TEST_F(CoordinatorTest, DeadlineClosesTheRoundWithWhatArrivedAndAbortsInFlight) {
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  for (const char* id : {"a", "b", "c"}) {
    auto task = coordinator_->GetTask(id, tokens_[id]);
    ASSERT_THAT(task, IsOk());
    EXPECT_EQ(task->kind, TaskInfo::Kind::kTrain);
  }
  ASSERT_THAT(Push("a", 1, {2, 2, 2, 2}), IsOk());
  ASSERT_THAT(Push("b", 3, {6, 6, 6, 6}), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto slow, coordinator_->BeginUpload(Header("c", 1, "slow")));
  ASSERT_THAT(coordinator_->AddChunk(*slow, 0, Bytes({1000, 1000})), IsOk());
  clock_.Advance(absl::Seconds(2));  // Past the 1 s deadline.
  coordinator_->TickForTesting();
  AwaitVersion(2);
  // (1*2 + 3*6) / 4 = 5; the slow upload's half is not in it.
  EXPECT_THAT(coordinator_->store().Current()->params, Pointwise(FloatNear(1e-5), {5, 5, 5, 5}));
  EXPECT_THAT(coordinator_->AddChunk(*slow, 8, Bytes({1000, 1000})),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Rejected("stale"), 1);
}

TEST_F(CoordinatorTest, RoundWithTooFewUpdatesFailsAndKeepsTheModel) {
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  ASSERT_THAT(coordinator_->GetTask("a", tokens_["a"]), IsOk());
  ASSERT_THAT(Push("a", 1, {2, 2, 2, 2}), IsOk());
  clock_.Advance(absl::Seconds(2));
  coordinator_->TickForTesting();
  const CoordinatorStatus status = coordinator_->Status();
  EXPECT_EQ(status.rounds_failed, 1u);
  EXPECT_EQ(status.round, 2u);
  EXPECT_EQ(status.model_version, 1u);
  EXPECT_THAT(coordinator_->store().Current()->params, ElementsAre(0, 0, 0, 0));
  // An update for the failed round is now stale.
  EXPECT_THAT(Push("b", 1, {1, 1, 1, 1}), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(CoordinatorTest, TasksAreCappedPerRoundAndLongPollsWakeOnTheNextRound) {
  Start(/*clients_per_round=*/2, /*min_clients=*/1);
  for (const char* id : {"a", "b", "c"}) JoinClient(id);
  auto a = coordinator_->GetTask("a", tokens_["a"]);
  auto b = coordinator_->GetTask("b", tokens_["b"]);
  auto c = coordinator_->GetTask("c", tokens_["c"]);
  EXPECT_EQ(a->kind, TaskInfo::Kind::kTrain);
  EXPECT_EQ(b->kind, TaskInfo::Kind::kTrain);
  EXPECT_EQ(c->kind, TaskInfo::Kind::kWait);
  // c long-polls; it is answered with a TRAIN task for round 2.
  tally::Notification answered;
  absl::StatusOr<TaskInfo> later;
  coordinator_->AwaitTask("c", tokens_["c"], absl::Hours(1), [&](absl::StatusOr<TaskInfo> t) {
    later = std::move(t);
    answered.Notify();
  });
  EXPECT_FALSE(answered.HasBeenNotified());
  ASSERT_THAT(Push("a", 1, {1, 1, 1, 1}), IsOk());
  ASSERT_THAT(Push("b", 1, {1, 1, 1, 1}), IsOk());
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_THAT(later, IsOk());
  EXPECT_EQ(later->kind, TaskInfo::Kind::kTrain);
  EXPECT_EQ(later->round, 2u);
  EXPECT_EQ(later->model_version, 2u);
}

TEST_F(CoordinatorTest, LeavingFreesTheTaskSlot) {
  Start(/*clients_per_round=*/1, /*min_clients=*/1);
  JoinClient("a");
  JoinClient("b");
  EXPECT_EQ(coordinator_->GetTask("a", tokens_["a"])->kind, TaskInfo::Kind::kTrain);
  EXPECT_EQ(coordinator_->GetTask("b", tokens_["b"])->kind, TaskInfo::Kind::kWait);
  ASSERT_THAT(coordinator_->Leave("a", tokens_["a"]), IsOk());
  EXPECT_EQ(coordinator_->GetTask("b", tokens_["b"])->kind, TaskInfo::Kind::kTrain);
  EXPECT_THAT(coordinator_->GetTask("a", tokens_["a"]),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(CoordinatorTest, IdleSessionsExpire) {
  Start(/*clients_per_round=*/1, /*min_clients=*/1);
  JoinClient("a");
  JoinClient("b");
  EXPECT_EQ(coordinator_->GetTask("a", tokens_["a"])->kind, TaskInfo::Kind::kTrain);
  clock_.Advance(absl::Seconds(200));
  EXPECT_EQ(coordinator_->GetTask("b", tokens_["b"])->kind, TaskInfo::Kind::kWait);  // b is seen.
  clock_.Advance(absl::Seconds(200));  // a idle 400 s > 300 s; b idle 200 s.
  coordinator_->TickForTesting();
  EXPECT_THAT(coordinator_->GetTask("a", tokens_["a"]),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(coordinator_->GetTask("b", tokens_["b"])->kind, TaskInfo::Kind::kTrain);
  EXPECT_EQ(coordinator_->Status().connected_clients, 1u);
}

TEST_F(CoordinatorTest, TotalRoundsEndsTheFederation) {
  Start(/*clients_per_round=*/1, /*min_clients=*/1, /*total_rounds=*/1);
  JoinClient("a");
  ASSERT_THAT(Push("a", 1, {1, 1, 1, 1}), IsOk());
  AwaitVersion(2);
  // The worker finishes the round bookkeeping right after publishing.
  tally::Notification done;
  coordinator_->AwaitTask("a", tokens_["a"], absl::Hours(1), [&](absl::StatusOr<TaskInfo> t) {
    EXPECT_EQ(t->kind, TaskInfo::Kind::kDone);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  UpdateHeaderInfo h = Header("a", 1, "late");
  h.round = 2;
  h.base_version = 2;
  EXPECT_THAT(coordinator_->BeginUpload(h), StatusIs(absl::StatusCode::kFailedPrecondition));
}


// strategy.threads limits the rules' thread count (process-wide).
// Relay mode without gRPC: no round until the upstream's task opens one on
// the upstream's version; the closed round is a batch, not a new version:
// (10·(1,2,3,4) + 30·(0,0,3,3)) / 40 = (0.25, 0.5, 3, 3.25), weight 40.
TEST_F(CoordinatorTest, RelayRoundsFollowTheUpstreamAndCloseIntoABatch) {
  relay_.set_upstream("root.example:50051");
  Start(/*clients_per_round=*/2, /*min_clients=*/1);
  JoinClient("a");
  JoinClient("b");
  TALLY_ASSERT_OK_AND_ASSIGN(TaskInfo idle, coordinator_->GetTask("a", tokens_["a"]));
  EXPECT_EQ(idle.kind, TaskInfo::Kind::kWait);
  coordinator_->PublishUpstream(7, 6, {1, 1, 1, 1});
  coordinator_->OpenRelayRound(6);
  TALLY_ASSERT_OK_AND_ASSIGN(TaskInfo task, coordinator_->GetTask("a", tokens_["a"]));
  EXPECT_EQ(task.kind, TaskInfo::Kind::kTrain);
  EXPECT_EQ(task.round, 6u);
  EXPECT_EQ(task.model_version, 7u);
  header_round_ = 6;
  header_base_ = 7;
  ASSERT_THAT(Push("a", 10, {1, 2, 3, 4}), IsOk());
  ASSERT_THAT(Push("b", 30, {0, 0, 3, 3}), IsOk());
  std::optional<Coordinator::RelayBatch> batch = coordinator_->AwaitRelayBatch();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->round, 6u);
  EXPECT_EQ(batch->base_version, 7u);
  EXPECT_EQ(batch->weight, 40u);
  EXPECT_EQ(batch->updates, 2u);
  EXPECT_THAT(batch->mean, Pointwise(FloatNear(1e-6), {0.25f, 0.5f, 3.0f, 3.25f}));
  EXPECT_EQ(coordinator_->store().Current()->version, 7u);  // Nothing published.
  EXPECT_THAT(coordinator_->store().Current()->params, ElementsAre(1, 1, 1, 1));
  TALLY_ASSERT_OK_AND_ASSIGN(TaskInfo after, coordinator_->GetTask("a", tokens_["a"]));
  EXPECT_EQ(after.kind, TaskInfo::Kind::kWait);
  EXPECT_THAT(Push("a", 10, {1, 2, 3, 4}, "late"), StatusIs(absl::StatusCode::kAborted));
  coordinator_->FinishRelay();
  TALLY_ASSERT_OK_AND_ASSIGN(TaskInfo done, coordinator_->GetTask("a", tokens_["a"]));
  EXPECT_EQ(done.kind, TaskInfo::Kind::kDone);
}

TEST_F(CoordinatorTest, StrategyThreadsLimitTheRules) {
  strategy_.set_rule("median");
  strategy_.set_threads(1);
  Start(/*clients_per_round=*/2, /*min_clients=*/2);
  EXPECT_EQ(aggregators::RuleThreads(), 1);
  aggregators::SetRuleThreads(0);  // Back to one per core for other tests.
  EXPECT_GE(aggregators::RuleThreads(), 1);
}

}  // namespace
}  // namespace tally::server
