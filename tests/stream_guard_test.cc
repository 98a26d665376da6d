// The stream guard without gRPC: ProgressMeter's idle and rate verdicts on
// explicit times, the pinned-version bound (PinsToCut), the guard's thread
// over fake streams, and the config fields that set them. Expected values
// are hand-computed.
#include "server/stream_guard.h"

#include <atomic>
#include <vector>

#include "core/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/progress_meter.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Verdict = ProgressMeter::Verdict;

const absl::Time kStart = absl::FromUnixSeconds(1000);

absl::Time At(int ms) { return kStart + absl::Milliseconds(ms); }

ProgressMeter::Limits Limits(int idle_ms, double rate, int window_ms) {
  ProgressMeter::Limits limits;
  limits.idle = absl::Milliseconds(idle_ms);
  limits.min_bytes_per_second = rate;
  limits.window = absl::Milliseconds(window_ms);
  return limits;
}

TEST(ProgressMeterTest, IdleCountsFromTheLastProgress) {
  ProgressMeter meter(Limits(300, 0, 1000), kStart);
  EXPECT_EQ(meter.Check(At(299)), Verdict::kOk);
  EXPECT_EQ(meter.Check(At(300)), Verdict::kIdle);  // Nothing since the start.
  meter.Progress(At(250), 0);                       // A message without payload counts.
  EXPECT_EQ(meter.Check(At(549)), Verdict::kOk);
  EXPECT_EQ(meter.Check(At(550)), Verdict::kIdle);
}

// 16 bytes every 100 ms (160 B/s) never trips a 300 ms idle timeout, but is
// below 1000 B/s over a 400 ms window once the stream is 400 ms old.
TEST(ProgressMeterTest, ATrickleIsTooSlowOverTheWindow) {
  ProgressMeter meter(Limits(300, 1000, 400), kStart);
  for (int t = 100; t <= 1000; t += 100) {
    meter.Progress(At(t), 16);
    const Verdict verdict = meter.Check(At(t));
    if (t < 400) {
      EXPECT_EQ(verdict, Verdict::kOk) << t;
    } else {
      EXPECT_EQ(verdict, Verdict::kTooSlow) << t;
      // Samples every 100 ms (window / 4): the average is over exactly 400 ms.
      EXPECT_DOUBLE_EQ(meter.measured_rate(), 4 * 16 / 0.4) << t;
    }
  }
}

// A fast start does not buy a slow tail: the window slides.
TEST(ProgressMeterTest, TheAverageIsOverTheLastWindowOnly) {
  ProgressMeter meter(Limits(10000, 1000, 400), kStart);
  meter.Progress(At(50), 1 << 20);  // 1 MiB at once.
  for (int t = 100; t <= 400; t += 100) EXPECT_EQ(meter.Check(At(t)), Verdict::kOk) << t;
  // Nothing more: at 500 ms the window [100, 500] holds 0 bytes.
  EXPECT_EQ(meter.Check(At(500)), Verdict::kTooSlow);
  EXPECT_EQ(meter.measured_rate(), 0);
}

TEST(ProgressMeterTest, SteadyChunksAboveTheRatePass) {
  // 64 KiB every 500 ms = 128 KiB/s, floor 4 KiB/s over 2 s, idle 1 s.
  ProgressMeter meter(Limits(1000, 4096, 2000), kStart);
  for (int t = 500; t <= 20000; t += 500) {
    meter.Progress(At(t), 64 << 10);
    EXPECT_EQ(meter.Check(At(t + 250)), Verdict::kOk) << t;
  }
}

PinnedModel Pin(uint64_t version, std::vector<std::pair<const void*, uint64_t>> segments) {
  return PinnedModel{version, std::move(segments)};
}

TEST(PinsToCutTest, CutsTheOldestVersionsUntilWithinBounds) {
  // Segments a..e of versions 1..5, 100 bytes each; current version 6.
  const int a = 0, b = 0, c = 0, d = 0, e = 0;
  const PinnedModel p1 = Pin(1, {{&a, 100}}), p1b = Pin(1, {{&a, 100}}), p2 = Pin(2, {{&b, 100}}),
                    p3 = Pin(3, {{&c, 100}}), p5 = Pin(5, {{&d, 100}, {&e, 7}}),
                    current = Pin(6, {{&e, 400}});
  const std::vector<const PinnedModel*> pins = {&p3, &p1, &current, &p5, &p2, &p1b};
  uint32_t versions = 0;
  uint64_t bytes = 0;
  // At most 2 old versions: 1 (both streams), then 2 go; 3 and 5 stay.
  EXPECT_THAT(PinsToCut(pins, 6, 2, 1000, &versions, &bytes), ElementsAre(1, 5, 4));
  EXPECT_EQ(versions, 2u);
  EXPECT_EQ(bytes, 100u + 107u);
  // At most 150 bytes: versions 1, 2 and 3 go; version 5's 107 bytes stay.
  EXPECT_THAT(PinsToCut(pins, 6, 10, 150, &versions, &bytes), ElementsAre(1, 5, 4, 0));
  EXPECT_EQ(versions, 1u);
  EXPECT_EQ(bytes, 107u);
  // Within bounds: nothing is cut; shared segments count once.
  EXPECT_THAT(PinsToCut(pins, 6, 4, 1000, &versions, &bytes), ElementsAre());
  EXPECT_EQ(versions, 4u);
  EXPECT_EQ(bytes, 407u);
}

// A stream that counts the guard's calls; `ended` is what CheckProgress says.
class FakeStream : public GuardedStream {
 public:
  explicit FakeStream(uint64_t version) { pin.version = version; }
  bool CheckProgress(absl::Time) override {
    checks++;
    return cuts > 0;
  }
  void Cut(const absl::Status& status) override {
    cuts++;
    last = status;
  }
  PinnedModel pin;
  std::atomic<int> checks{0};
  std::atomic<int> cuts{0};
  absl::Status last;
};

// The guard's thread: it checks every stream, cuts the holders of the oldest
// versions beyond the bound once each, and exports what stays pinned.
TEST(StreamGuardTest, TicksCheckStreamsAndCutTheOldestPins) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry);
  ManualClock clock;
  StreamGuard::Options options;
  options.clock = &clock;
  options.tick = absl::Milliseconds(5);
  options.max_pinned_versions = 1;
  options.current_version = [] { return uint64_t{4}; };
  options.metrics = &metrics;
  StreamGuard guard(std::move(options));
  const int segment = 0;
  FakeStream v1(1), v2(2), v3(3), current(4), plain(0);
  for (FakeStream* s : {&v1, &v2, &v3, &current}) s->pin.segments = {{s, 100}};
  v3.pin.segments.emplace_back(&segment, 50);
  for (FakeStream* s : {&v1, &v2, &v3, &current}) guard.Add(s, &s->pin);
  guard.Add(&plain);
  auto settled = [&] { return v1.cuts == 1 && v2.cuts == 1 && plain.checks > 3; };
  for (int i = 0; i < 2000 && !settled(); ++i) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_TRUE(settled());
  absl::SleepFor(absl::Milliseconds(30));  // More ticks: nobody is cut twice.
  for (FakeStream* s : {&v1, &v2, &v3, &current, &plain}) guard.Remove(s);
  EXPECT_EQ(v1.cuts, 1);
  EXPECT_EQ(v2.cuts, 1);
  EXPECT_EQ(v3.cuts, 0);
  EXPECT_EQ(current.cuts, 0);
  EXPECT_EQ(v1.last.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(metrics.pinned_model_versions.Value(), 1);
  EXPECT_EQ(metrics.pinned_model_bytes.Value(), 150);
  EXPECT_EQ(metrics.downloads_cut_pinned.Value(), 2);
  const int checks = plain.checks;
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(plain.checks, checks);  // Removed: never called again.
}

TEST(StallConfigTest, DefaultsAndValidation) {
  tally::v1::ServerConfig config = DefaultConfig();
  EXPECT_EQ(config.rounds().task_lease_ms(), 300000u);  // round_timeout_ms / 2.
  EXPECT_EQ(config.rounds().over_selection(), 0);
  EXPECT_EQ(config.limits().upload_idle_timeout_ms(), 60000u);
  EXPECT_EQ(config.limits().min_upload_bytes_per_second(), 4096u);
  EXPECT_EQ(config.limits().upload_rate_window_ms(), 120000u);
  EXPECT_EQ(config.limits().download_stall_timeout_ms(), 60000u);
  EXPECT_EQ(config.limits().max_pinned_model_versions(), 4u);
  EXPECT_EQ(config.limits().max_pinned_model_bytes(), uint64_t{1} << 30);
  EXPECT_EQ(config.limits().max_watch_streams(), 10000u);
  EXPECT_THAT(ValidateConfig(config), IsOk());

  config.mutable_rounds()->set_clients_per_round(10);
  config.mutable_rounds()->set_over_selection(0.3);
  EXPECT_EQ(SelectedPerRound(config.rounds()), 13u);  // Not 14 from 10 x 1.3 rounded up.
  config.mutable_rounds()->set_over_selection(0.25);
  EXPECT_EQ(SelectedPerRound(config.rounds()), 13u);  // 12.5, rounded up.
  config.mutable_rounds()->set_over_selection(11);
  EXPECT_THAT(ValidateConfig(config), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("rounds.over_selection"));
  config.mutable_rounds()->set_over_selection(0);
  config.mutable_limits()->set_upload_rate_window_ms(10);
  EXPECT_THAT(std::string(ValidateConfig(config).message()),
              HasSubstr("limits.upload_rate_window_ms"));
}

}  // namespace
}  // namespace tally::server
