// Exact aggregation through the Coordinator (no gRPC, so ThreadSanitizer sees
// it): whatever hostile uploads are aborted, at whatever chunk, however the
// accepted ones interleave and on however many threads, a round publishes the
// same bits as a fresh round over the accepted updates alone. Robust rules
// see their rows in a canonical order and compute the same bits on any
// number of threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/parallel.h"
#include "aggregators/rules/rule.h"
#include "core/clock.h"
#include "core/exact_sum.h"
#include "core/sync.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/coordinator.h"
#include "tests/coordinator_harness.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;

// One upload of a trial: its client, weight, values and what it does.
struct Plan {
  enum class Kind { kHonest, kNaNLater, kCancel, kTruncate, kStall, kOutOfRange };
  std::string client;
  uint64_t samples = 1;
  std::vector<float> values;
  Kind kind = Kind::kHonest;
  size_t bad_chunk = 0;  // Chunk at which a hostile upload misbehaves.
  std::vector<size_t> cuts;  // Chunk boundaries in floats, ending with d.
};

class ExactRound {
 public:
  ExactRound(size_t d, uint32_t slots, const std::string& rule, uint64_t max_samples,
             float max_abs) : d_(d) {
    tally::v1::ServerConfig config;
    auto* w = config.mutable_model()->add_tensors();
    w->set_name("w");
    w->add_shape(static_cast<int64_t>(d));
    config.mutable_rounds()->set_clients_per_round(slots);
    config.mutable_rounds()->set_min_clients(1);
    config.mutable_rounds()->set_round_timeout_ms(1000);
    config.mutable_limits()->set_max_num_samples(max_samples);
    config.mutable_limits()->set_max_abs_value(max_abs);
    config.mutable_limits()->set_max_concurrent_uploads(slots);
    // Small journal budget: most journals go to files, as with big models.
    config.mutable_limits()->set_undo_memory_bytes(4 * d + 1);
    config.set_spool_dir(::testing::TempDir());
    if (!rule.empty()) {
      config.mutable_strategy()->set_rule(rule);
      config.mutable_strategy()->set_f(1);
    }
    coordinator_ = MakeTestCoordinator(config, &clock_, registry_, &metrics_, &layout_);
  }

  Coordinator& coordinator() { return *coordinator_; }

  // Joins every client and hands each a TRAIN task (which starts the
  // round's deadline).
  void Prepare(const std::vector<Plan>& plans) {
    for (const Plan& p : plans) {
      auto session = coordinator_->Join(p.client);
      ASSERT_THAT(session, IsOk());
      tokens_.push_back(session->token);
      auto task = coordinator_->GetTask(p.client, session->token);
      ASSERT_THAT(task, IsOk());
      ASSERT_EQ(task->kind, TaskInfo::Kind::kTrain) << p.client;
    }
  }

  // Runs every plan, chunk by chunk, on `threads` threads that each take a
  // random next step of a random upload of theirs; returns which committed.
  std::vector<bool> Run(const std::vector<Plan>& plans, int threads, uint32_t seed) {
    uploads_.clear();
    uploads_.resize(plans.size());
    std::vector<std::unique_ptr<Upload>>& uploads = uploads_;
    committed_.assign(plans.size(), 0);
    for (size_t i = 0; i < plans.size(); ++i) {
      UpdateHeaderInfo h;
      h.client_id = plans[i].client;
      h.session_token = tokens_[i];
      h.update_id = plans[i].client + "-u";
      h.round = 1;
      h.base_version = 1;
      h.num_samples = plans[i].samples;
      h.codec_known = true;
      h.layout_hash = layout_.Hash();
      h.num_params = d_;
      h.payload_bytes = 4 * d_;
      auto upload = coordinator_->BeginUpload(h);
      EXPECT_THAT(upload, IsOk()) << plans[i].client;
      if (upload.ok()) uploads[i] = std::move(upload).value();
    }
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        std::mt19937 rng(seed + t);
        std::vector<size_t> mine, next_chunk;
        for (size_t i = t; i < plans.size(); i += threads) mine.push_back(i);
        next_chunk.assign(plans.size(), 0);
        while (!mine.empty()) {
          const size_t pick = rng() % mine.size();
          const size_t i = mine[pick];
          if (Step(plans[i], uploads[i], next_chunk[i]++, &committed_[i])) {
            mine.erase(mine.begin() + static_cast<long>(pick));
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    return std::vector<bool>(committed_.begin(), committed_.end());
  }

  // Closes the round at its deadline (stalled uploads are cut) and returns
  // the published model.
  // Stalled uploads are still open (their objects alive) until then.
  std::vector<float> Close() {
    clock_.Advance(absl::Seconds(2));
    coordinator_->TickForTesting();
    // The worker thread may be the one closing it: wait for version 2.
    auto published = std::make_shared<tally::Notification>();
    const int id = coordinator_->mutable_store().Subscribe(
        [published](const std::shared_ptr<const ModelSnapshot>& s) {
          if (s->version >= 2 && !published->HasBeenNotified()) published->Notify();
        });
    if (coordinator_->store().Current()->version < 2) {
      EXPECT_TRUE(published->WaitForNotificationWithTimeout(absl::Seconds(30)));
    }
    coordinator_->mutable_store().Unsubscribe(id);
    uploads_.clear();
    return coordinator_->store().Current()->params;
  }

 private:
  // One step of upload `u`: chunk `chunk` (or the finish). True when the
  // upload is over for its thread; `upload` is null once committed.
  bool Step(const Plan& p, std::unique_ptr<Upload>& upload, size_t chunk, char* committed) {
    if (upload == nullptr) return true;
    const size_t chunks = p.cuts.size();
    const bool hostile = p.kind != Plan::Kind::kHonest;
    if (hostile && chunk == p.bad_chunk) {
      switch (p.kind) {
        case Plan::Kind::kNaNLater: {
          std::vector<float> bad(p.cuts[chunk] - Begin(p, chunk), 1.0f);
          bad.back() = std::numeric_limits<float>::quiet_NaN();
          EXPECT_FALSE(Send(p, upload, chunk, bad.data()).ok());
          return true;
        }
        case Plan::Kind::kOutOfRange: {
          std::vector<float> bad(p.cuts[chunk] - Begin(p, chunk), 0.5f);
          bad.back() = 2 * kMaxExactAbsValue;
          EXPECT_FALSE(Send(p, upload, chunk, bad.data()).ok());
          return true;
        }
        case Plan::Kind::kCancel:
          upload.reset();  // The stream went away: aborted as cancelled.
          return true;
        case Plan::Kind::kTruncate:
          EXPECT_FALSE(coordinator_->FinishUpload(*upload).ok());
          return true;
        case Plan::Kind::kStall:
          return true;  // Never heard of again: cut when the round closes.
        case Plan::Kind::kHonest:
          break;
      }
    }
    if (chunk == chunks) {
      const bool ok = coordinator_->FinishUpload(*upload).ok();
      EXPECT_TRUE(ok || hostile) << p.client;
      *committed = ok;
      return true;
    }
    const absl::Status sent =
        Send(p, upload, chunk, p.values.data() + Begin(p, chunk));
    EXPECT_TRUE(sent.ok()) << p.client << ": " << sent;
    return !sent.ok();
  }

  static size_t Begin(const Plan& p, size_t chunk) { return chunk == 0 ? 0 : p.cuts[chunk - 1]; }

  absl::Status Send(const Plan& p, std::unique_ptr<Upload>& upload, size_t chunk,
                    const float* values) {
    const size_t begin = Begin(p, chunk);
    return coordinator_->AddChunk(
        *upload, 4 * begin,
        absl::string_view(reinterpret_cast<const char*>(values), 4 * (p.cuts[chunk] - begin)));
  }

  const size_t d_;
  ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  ModelLayout layout_;
  std::unique_ptr<Coordinator> coordinator_;
  std::vector<std::string> tokens_;
  std::vector<std::unique_ptr<Upload>> uploads_;
  std::vector<char> committed_;  // Not vector<bool>: written by several threads.
};

std::vector<size_t> RandomCuts(size_t d, std::mt19937& rng) {
  std::vector<size_t> cuts;
  for (size_t at = 0; at < d;) {
    at = std::min(d, at + 1 + rng() % (d / 3));
    cuts.push_back(at);
  }
  return cuts;
}

std::vector<Plan> RandomTrial(size_t d, float max_abs, uint64_t max_samples, std::mt19937& rng) {
  const size_t honest = 2 + rng() % 4, hostile = 1 + rng() % 4;
  std::vector<Plan> plans;
  std::uniform_real_distribution<float> exponent(-20.0f, 3.0f);
  for (size_t i = 0; i < honest + hostile; ++i) {
    Plan p;
    p.client = absl::StrCat(i < honest ? "honest-" : "mallory-", i);
    p.samples = 1 + rng() % (i % 2 ? max_samples : 1000);
    p.values.resize(d);
    p.cuts = RandomCuts(d, rng);
    if (i < honest) {
      for (float& v : p.values) v = (rng() % 2 ? 1 : -1) * std::exp2(exponent(rng));
    } else {
      p.samples = max_samples;  // The heaviest weight the server admits.
      for (float& v : p.values) v = (rng() % 2 ? 1 : -1) * max_abs;
      p.kind = static_cast<Plan::Kind>(1 + rng() % 5);
      p.bad_chunk = rng() % p.cuts.size();
      if (p.kind == Plan::Kind::kCancel || p.kind == Plan::Kind::kStall) {
        p.bad_chunk = 1 + rng() % p.cuts.size();  // After >= 1 chunk was folded in.
      } else if (p.kind == Plan::Kind::kTruncate) {
        p.bad_chunk = std::min(1 + rng() % p.cuts.size(), p.cuts.size() - 1);  // Some missing.
      }
    }
    plans.push_back(std::move(p));
  }
  std::shuffle(plans.begin(), plans.end(), rng);
  return plans;
}

// The property of the exact-aggregation issue: 30 random trials (2-5 honest
// uploads, 1-4 hostile ones at the largest admitted values and weights that
// send NaN or out-of-range values mid-stream, are cancelled, truncated or
// stall past the deadline; random chunking, random interleaving on 1-4
// threads). The published model equals, bit for bit, a fresh round that only
// ever saw the accepted updates, each in one chunk, in another order.
TEST(ExactAggregationTest, AbortedUploadsLeaveTheRoundBitIdentical) {
  std::mt19937 rng(2026);
  const size_t d = 3000;
  for (int trial = 0; trial < 30; ++trial) {
    const bool extreme = trial % 2 == 1;
    const float max_abs = extreme ? kMaxExactAbsValue : 1e6f;
    const uint64_t max_samples = extreme ? kMaxExactWeight : 1000000000;
    const std::vector<Plan> plans = RandomTrial(d, max_abs, max_samples, rng);
    ExactRound attacked(d, static_cast<uint32_t>(plans.size()), "", max_samples, max_abs);
    attacked.Prepare(plans);
    const std::vector<bool> committed =
        attacked.Run(plans, 1 + trial % 4, static_cast<uint32_t>(rng()));
    const std::vector<float> model = attacked.Close();

    std::vector<Plan> accepted;
    for (size_t i = 0; i < plans.size(); ++i) {
      EXPECT_EQ(committed[i], plans[i].kind == Plan::Kind::kHonest) << plans[i].client;
      if (!committed[i]) continue;
      Plan p = plans[i];
      p.cuts = {d};
      accepted.push_back(std::move(p));
    }
    std::reverse(accepted.begin(), accepted.end());
    ExactRound fresh(d, static_cast<uint32_t>(accepted.size()), "", max_samples, max_abs);
    fresh.Prepare(accepted);
    fresh.Run(accepted, 1, 1);
    const std::vector<float> expected = fresh.Close();
    ASSERT_EQ(attacked.coordinator().store().Current()->version, 2u) << "trial " << trial;
    ASSERT_EQ(std::memcmp(model.data(), expected.data(), 4 * d), 0) << "trial " << trial;

    // And both are the weighted mean within the documented bound (an
    // independent long double computation; docs/aggregation.md).
    long double total = 0;
    for (const Plan& p : accepted) total += p.samples;
    for (size_t j = 0; j < d; j += 7) {
      long double s = 0;
      for (const Plan& p : accepted) s += static_cast<long double>(p.samples) * p.values[j];
      const long double ref = s / total;
      ASSERT_NEAR(static_cast<double>(model[j]), static_cast<double>(ref),
                  std::ldexp(1.0, -40) + std::fabs(static_cast<double>(ref)) * 1.2e-7)
          << "trial " << trial << " j " << j;
    }
  }
}

// Robust rules get the committed rows sorted by client id, so arrival order
// cannot change the bits (geometric median sums rows in row order).
TEST(ExactAggregationTest, RobustRoundsDoNotDependOnArrivalOrder) {
  const size_t d = 2000;
  std::mt19937 rng(5);
  std::vector<Plan> plans;
  for (int i = 0; i < 5; ++i) {
    Plan p;
    p.client = absl::StrCat("c", i);
    p.values.resize(d);
    for (float& v : p.values) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    p.cuts = RandomCuts(d, rng);
    plans.push_back(std::move(p));
  }
  std::vector<float> first;
  for (int run = 0; run < 4; ++run) {
    std::shuffle(plans.begin(), plans.end(), rng);
    ExactRound round(d, 5, "geometric_median", 1000000000, 1e6f);
    round.Prepare(plans);
    round.Run(plans, 1 + run % 3, static_cast<uint32_t>(rng()));
    const std::vector<float> model = round.Close();
    ASSERT_EQ(round.coordinator().store().Current()->version, 2u);
    if (run == 0) {
      first = model;
    } else {
      ASSERT_EQ(std::memcmp(model.data(), first.data(), 4 * d), 0) << "run " << run;
    }
  }
}

// Rules reduce over d in fixed blocks, so 1, 2 or 3 threads give the same
// bits (d spans several blocks of 32768 columns).
TEST(ExactAggregationTest, RulesGiveTheSameBitsOnAnyThreadCount) {
  const size_t n = 7, d = 140000;
  std::mt19937 rng(9);
  std::vector<float> batch(n * d);
  for (float& v : batch) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (const char* name : {"krum", "geometric_median", "centered_clipping", "flag", "trimmed_mean"}) {
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      aggregators::SetRuleThreads(threads);
      aggregators::RuleOptions options;
      options.name = name;
      options.f = 1;
      auto rule = aggregators::CreateRule(options);
      ASSERT_THAT(rule, IsOk()) << name;
      std::vector<float> rows = batch, out(d, 0.0f);
      ASSERT_THAT((*rule)->Aggregate(absl::MakeSpan(rows), n, d, absl::MakeSpan(out), {}), IsOk())
          << name;
      if (threads == 1) {
        first = out;
      } else {
        ASSERT_EQ(std::memcmp(out.data(), first.data(), 4 * d), 0) << name << " " << threads;
      }
    }
  }
  aggregators::SetRuleThreads(0);
}

}  // namespace
}  // namespace tally::server
