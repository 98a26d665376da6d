// compress/error_feedback.h, compress/dgc.h and EncodeSparse: the worked
// examples of docs/algorithms.md#dgc (d = 8) and #sign (EF-signSGD), the
// warm-up schedule of docs/compression.md#deep-gradient-compression, the EF
// telescoping property Σ sent = Σ true − e_T over many top-k 1 % updates,
// and hand-computed cases (Nesterov, masking, 1-D tensors, ties, float16
// residuals, errors). Expected numbers come from docs/algorithms.md or from
// the hand computations written next to them (binary fractions where
// possible, so they are exact in float32).
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "compress/dgc.h"
#include "compress/error_feedback.h"
#include "core/model_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/compress_corpus.h"
#include "tests/status_matchers.h"

namespace tally::compress {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using testing::Bytes;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using testing::F32;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

std::vector<float> ToVector(absl::Span<const float> s) { return {s.begin(), s.end()}; }

// One compressed tensor (ndim 2) of d entries.
DgcCompressor MakeDgc(uint64_t d, DgcOptions options) {
  absl::StatusOr<DgcCompressor> dgc = DgcCompressor::Create({{0, d, 2}}, std::move(options));
  EXPECT_THAT(dgc, IsOk());
  return *std::move(dgc);
}

DgcOptions NoWarmup(double ratio, float momentum) {
  DgcOptions options;
  options.compress_ratio = ratio;
  options.momentum = momentum;
  return options;
}

// One Compress call of a hand trace: the update, the payload it must give,
// and u, v after it (exact: the traces use binary fractions).
struct TraceStep {
  std::vector<float> g;
  std::string payload;
  std::vector<float> u;
  std::vector<float> v;
};

void ExpectTrace(const DgcOptions& options, const std::vector<TraceStep>& steps) {
  DgcCompressor dgc = MakeDgc(steps[0].g.size(), options);
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "step " << i);
    std::string payload;
    CodecSpec spec;
    ASSERT_THAT(dgc.Compress(steps[i].g, &payload, &spec), IsOk());
    EXPECT_EQ(payload, steps[i].payload);
    EXPECT_EQ(ToVector(dgc.momentum()), steps[i].u);
    EXPECT_EQ(ToVector(dgc.velocity()), steps[i].v);
  }
}

// --- EncodeSparse ------------------------------------------------------------

TEST(EncodeSparseTest, WritesTheTopKWireFormat) {
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  spec.k = 2;
  std::string payload;
  const std::vector<uint64_t> indices = {1, 5};
  const std::vector<float> values = {-0.5f, 0.3f};
  ASSERT_THAT(EncodeSparse(spec, indices, values, 8, &payload), IsOk());
  EXPECT_EQ(payload, Bytes({2, 1, 3}) + F32({-0.5f, 0.3f}));  // codec.h's example.
  // Fewer than k entries, zero values and a two-byte gap (300 − 1 = 0xac 0x02).
  spec.k = 5;
  ASSERT_THAT(EncodeSparse(spec, std::vector<uint64_t>{0, 301}, std::vector<float>{0.0f, 2.0f}, 400,
                           &payload),
              IsOk());
  EXPECT_EQ(payload, Bytes({2, 0, 0xac, 0x02}) + F32({0.0f, 2.0f}));
  std::vector<float> out(400, 7.0f);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out[301], 2.0f);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.0f);

  spec.zstd = true;
  ASSERT_THAT(EncodeSparse(spec, indices, values, 8, &payload), IsOk());
  std::vector<float> eight(8);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(eight)), IsOk());
  EXPECT_THAT(eight, ElementsAre(0, -0.5f, 0, 0, 0, 0.3f, 0, 0));
}

TEST(EncodeSparseTest, RejectsWhatTheDecoderWould) {
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  spec.k = 2;
  std::string payload;
  const auto encode = [&](std::vector<uint64_t> indices, std::vector<float> values, size_t d) {
    return EncodeSparse(spec, indices, values, d, &payload);
  };
  EXPECT_THAT(encode({1, 1}, {1, 2}, 8), StatusIs(kInvalid, HasSubstr("index 1 = 1")));
  EXPECT_THAT(encode({3, 2}, {1, 2}, 8), StatusIs(kInvalid, HasSubstr("index 1 = 2")));
  EXPECT_THAT(encode({8}, {1}, 8), StatusIs(kInvalid, HasSubstr("d = 8")));
  EXPECT_THAT(encode({0, 1, 2}, {1, 2, 3}, 8), StatusIs(kInvalid, HasSubstr("exceed k = 2")));
  EXPECT_THAT(encode({0}, {1, 2}, 8), StatusIs(kInvalid, HasSubstr("1 indices but 2 values")));
  EXPECT_THAT(encode({0}, {NAN}, 8), StatusIs(kInvalid, HasSubstr("not finite")));
  spec.half_values = true;
  EXPECT_THAT(encode({0}, {70000.0f}, 8), StatusIs(kInvalid, HasSubstr("float16")));
  spec = DefaultSpec(CodecId::kRandK);
  EXPECT_THAT(encode({0}, {1}, 8), StatusIs(kInvalid, HasSubstr("topk")));
}

// --- DGC ---------------------------------------------------------------------

// docs/algorithms.md#dgc's example: d = 8, ratio 0.25 (k = 2), m = 0.9, plain
// momentum, masking on.
TEST(DgcTest, Section51WorkedExample) {
  DgcCompressor dgc = MakeDgc(8, NoWarmup(0.25, 0.9f));
  std::string payload;
  CodecSpec spec;
  ASSERT_THAT(dgc.Compress({0.1f, -0.5f, 0.05f, 0.2f, -0.05f, 0.3f, 0.0f, -0.1f}, &payload, &spec),
              IsOk());
  EXPECT_EQ(spec.id, CodecId::kTopK);
  EXPECT_EQ(spec.k, 2u);
  EXPECT_FALSE(spec.half_values);
  // Indices (1, 5), values (−0.5, 0.3).
  EXPECT_EQ(payload, Bytes({2, 1, 3}) + F32({-0.5f, 0.3f}));
  const std::vector<float> masked1 = {0.1f, 0.0f, 0.05f, 0.2f, -0.05f, 0.0f, 0.0f, -0.1f};
  EXPECT_EQ(ToVector(dgc.momentum()), masked1);  // u = v = g, exactly.
  EXPECT_EQ(ToVector(dgc.velocity()), masked1);

  ASSERT_THAT(dgc.Compress({0.2f, 0.1f, 0.05f, 0.2f, -0.05f, -0.4f, 0.0f, -0.1f}, &payload, &spec),
              IsOk());
  // u = (0.29, 0.1, 0.095, 0.38, −0.095, −0.4, 0, −0.19), v = (0.39, 0.1,
  // 0.145, 0.58, −0.145, −0.4, 0, −0.29) → indices (3, 5), values (0.58, −0.4).
  EXPECT_EQ(spec.k, 2u);
  ASSERT_EQ(payload.size(), 3u + 8u);
  EXPECT_EQ(payload.substr(0, 3), Bytes({2, 3, 1}));
  std::vector<float> decoded(8);
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(decoded)), IsOk());
  EXPECT_THAT(decoded,
              Pointwise(FloatNear(1e-6), std::vector<float>{0, 0, 0, 0.58f, 0, -0.4f, 0, 0}));
  EXPECT_THAT(ToVector(dgc.momentum()),
              Pointwise(FloatNear(1e-6),
                        std::vector<float>{0.29f, 0.1f, 0.095f, 0, -0.095f, 0, 0, -0.19f}));
  EXPECT_THAT(ToVector(dgc.velocity()),
              Pointwise(FloatNear(1e-6),
                        std::vector<float>{0.39f, 0.1f, 0.145f, 0, -0.145f, 0, 0, -0.29f}));
  EXPECT_EQ(dgc.velocity()[3], 0.0f);  // Sent entries are zeroed exactly.
  EXPECT_EQ(dgc.momentum()[5], 0.0f);
  EXPECT_EQ(dgc.step(), 2u);
}

// By hand, m = 0.5, d = 4, k = 1. Nesterov: u ← m(u + g), v ← v + u + g.
// g1 = (1, −2, 0.5, 0.25): u = (0.5, −1, 0.25, 0.125), v = (1.5, −3, 0.75,
// 0.375) → send index 1 value −3; masked u = (0.5, 0, 0.25, 0.125),
// v = (1.5, 0, 0.75, 0.375). g2 = (0, 4, 0, 0): u = (0.25, 2, 0.125,
// 0.0625), v = (1.75, 6, 0.875, 0.4375) → send index 1 value 6.
TEST(DgcTest, NesterovMomentumCorrection) {
  DgcOptions options = NoWarmup(0.25, 0.5f);
  options.nesterov = true;
  ExpectTrace(options, {{{1.0f, -2.0f, 0.5f, 0.25f},
                         Bytes({1, 1}) + F32({-3.0f}),
                         {0.5f, 0.0f, 0.25f, 0.125f},
                         {1.5f, 0.0f, 0.75f, 0.375f}},
                        {{0.0f, 4.0f, 0.0f, 0.0f},
                         Bytes({1, 1}) + F32({6.0f}),
                         {0.25f, 0.0f, 0.125f, 0.0625f},
                         {1.75f, 0.0f, 0.875f, 0.4375f}}});
}

// By hand, plain momentum m = 0.5, k = 1, g1 = (1, −2, 0.5, 0.25): u = v = g1,
// send index 1 (−2). Without masking u keeps −2 there and v = (1, 0, 0.5,
// 0.25). g2 = 0: u = (0.5, −1, 0.25, 0.125), v = (1.5, −1, 0.75, 0.375) →
// send index 0 (1.5); with masking u[1] would be 0 and v[1] stay 0.
TEST(DgcTest, WithoutMomentumMasking) {
  DgcOptions options = NoWarmup(0.25, 0.5f);
  options.momentum_masking = false;
  ExpectTrace(options, {{{1.0f, -2.0f, 0.5f, 0.25f},
                         Bytes({1, 1}) + F32({-2.0f}),
                         {1.0f, -2.0f, 0.5f, 0.25f},
                         {1.0f, 0.0f, 0.5f, 0.25f}},
                        {{0.0f, 0.0f, 0.0f, 0.0f},
                         Bytes({1, 0}) + F32({1.5f}),
                         {0.5f, -1.0f, 0.25f, 0.125f},
                         {0.0f, -1.0f, 0.75f, 0.375f}}});
}

// Layout: bias (ndim 1, 3 entries), weight (2×4, ratio 0.25 → k = 2), scalar
// (ndim 0). The bias and the scalar go out exactly and keep no state.
TEST(DgcTest, OneDimensionalTensorsAreSentExactly) {
  absl::StatusOr<ModelLayout> layout =
      ModelLayout::Create({{"bias", {3}}, {"weight", {2, 4}}, {"scale", {}}});
  ASSERT_THAT(layout, IsOk());
  const std::vector<DgcTensor> tensors = DgcTensorsFromLayout(*layout);
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[1].offset, 3u);
  EXPECT_EQ(tensors[1].size, 8u);
  EXPECT_EQ(tensors[1].ndim, 2u);
  EXPECT_EQ(tensors[2].ndim, 0u);
  absl::StatusOr<DgcCompressor> dgc = DgcCompressor::Create(tensors, NoWarmup(0.25, 0.9f));
  ASSERT_THAT(dgc, IsOk());
  std::string payload;
  CodecSpec spec;
  ASSERT_THAT(dgc->Compress({0.0f, 0.25f, -1.0f,                                   // bias
                             0.1f, -0.5f, 0.05f, 0.2f, -0.05f, 0.3f, 0.0f, -0.1f,  // weight
                             7.0f},
                            &payload, &spec),
              IsOk());
  EXPECT_EQ(spec.k, 6u);  // 3 + 2 + 1.
  // Indices 0, 1, 2, 4, 8, 11: gaps 0, 0, 0, 1, 3, 2.
  EXPECT_EQ(payload, Bytes({6, 0, 0, 0, 1, 3, 2}) + F32({0.0f, 0.25f, -1.0f, -0.5f, 0.3f, 7.0f}));
  EXPECT_EQ(dgc->momentum()[0], 0.0f);
  EXPECT_EQ(dgc->velocity()[11], 0.0f);
  EXPECT_EQ(dgc->velocity()[3], 0.1f);
}

// compress_1d: the same layout kind (weight 2×2, bias 2, scalar), ratio
// 0.5, m = 0.5, worked by hand. k = 2 of the weight, ⌈2 · 0.5⌉ = 1 of the
// bias, ⌈1 · 0.5⌉ = 1 of the scalar (always sent).
// g1 = (1, −2, 0.5, 0.25 | 0.75, −1 | 0.125): u = v = g1; sent 0, 1 (1, −2),
// 5 (−1), 6 (0.125); after masking u = v = (0, 0, 0.5, 0.25 | 0.75, 0 | 0).
// g2 = (0, 0, 0, 0 | 0, 0.5 | 0): u = 0.5 u + g2 = (0, 0, 0.25, 0.125 |
// 0.375, 0.5 | 0), v = v + u = (0, 0, 0.75, 0.375 | 1.125, 0.5 | 0); sent 2,
// 3 (0.75, 0.375), 4 (1.125), 6 (0); after: u = v = (0, 0, 0, 0 | 0, 0.5 | 0).
// Without compress_1d g1 sends the bias and scalar exactly (5 entries).
TEST(DgcTest, Compress1dSparsifiesBiasesAndScalars) {
  const std::vector<DgcTensor> tensors = {{0, 4, 2}, {4, 2, 1}, {6, 1, 0}};
  DgcOptions options = NoWarmup(0.5, 0.5f);
  options.compress_1d = true;
  absl::StatusOr<DgcCompressor> dgc = DgcCompressor::Create(tensors, options);
  ASSERT_THAT(dgc, IsOk());
  std::string payload;
  CodecSpec spec;
  const std::vector<float> g1 = {1, -2, 0.5f, 0.25f, 0.75f, -1, 0.125f};
  ASSERT_THAT(dgc->Compress(g1, &payload, &spec), IsOk());
  EXPECT_EQ(spec.k, 4u);
  // Indices 0, 1, 5, 6: gaps 0, 0, 3, 0.
  EXPECT_EQ(payload, Bytes({4, 0, 0, 3, 0}) + F32({1, -2, -1, 0.125f}));
  const std::vector<float> state1 = {0, 0, 0.5f, 0.25f, 0.75f, 0, 0};
  EXPECT_EQ(ToVector(dgc->momentum()), state1);
  EXPECT_EQ(ToVector(dgc->velocity()), state1);
  ASSERT_THAT(dgc->Compress({0, 0, 0, 0, 0, 0.5f, 0}, &payload, &spec), IsOk());
  // Indices 2, 3, 4, 6: gaps 2, 0, 0, 1.
  EXPECT_EQ(payload, Bytes({4, 2, 0, 0, 1}) + F32({0.75f, 0.375f, 1.125f, 0}));
  const std::vector<float> state2 = {0, 0, 0, 0, 0, 0.5f, 0};
  EXPECT_EQ(ToVector(dgc->momentum()), state2);
  EXPECT_EQ(ToVector(dgc->velocity()), state2);

  options.compress_1d = false;
  absl::StatusOr<DgcCompressor> exact = DgcCompressor::Create(tensors, options);
  ASSERT_THAT(exact, IsOk());
  ASSERT_THAT(exact->Compress(g1, &payload, &spec), IsOk());
  EXPECT_EQ(payload, Bytes({5, 0, 0, 2, 0, 0}) + F32({1, -2, 0.75f, -1, 0.125f}));
}

// Clipping, worked by hand: weight 2×2 and bias 2, C = 2.5, m = 0, ratio
// 0.25 (k = 1 of the weight). g1 = (3, 0, 0, 4 | 0, 0): ‖g1‖ = 5 > 2.5, s =
// 0.5, g1 → (1.5, 0, 0, 2 | 0, 0): sends index 3 (2) and the bias (0, 0);
// u = v = (1.5, 0, 0, 0 | 0, 0) remain. g2 = (0, 0, 1, 0 | 0.5, −0.5):
// ‖g2‖ = √1.5 < 2.5, unchanged; v = (1.5, 0, 1, 0): sends index 0 (1.5) and
// the bias (0.5, −0.5); u = v = (0, 0, 1, 0 | 0, 0) remain. The bias is
// clipped too (the whole update is): g3 = (0, 0, 0, 0 | 0, 10) → s = 0.25,
// the bias goes out as (0, 2.5).
TEST(DgcTest, ClipsTheWholeUpdateBeforeAccumulation) {
  const std::vector<DgcTensor> tensors = {{0, 4, 2}, {4, 2, 1}};
  DgcOptions options = NoWarmup(0.25, 0.0f);
  options.clip_norm = 2.5;
  absl::StatusOr<DgcCompressor> dgc = DgcCompressor::Create(tensors, options);
  ASSERT_THAT(dgc, IsOk());
  EXPECT_EQ(DgcClipScale({3, 0, 0, 4, 0, 0}, 2.5), 0.5f);
  EXPECT_EQ(DgcClipScale({3, 0, 0, 4, 0, 0}, 5.0), 1.0f);  // Norm = C: unchanged.
  EXPECT_EQ(DgcClipScale({3, 0, 0, 4, 0, 0}, 0.0), 1.0f);  // Off.
  std::string payload;
  CodecSpec spec;
  ASSERT_THAT(dgc->Compress({3, 0, 0, 4, 0, 0}, &payload, &spec), IsOk());
  // Indices 3, 4, 5: gaps 3, 0, 0.
  EXPECT_EQ(payload, Bytes({3, 3, 0, 0}) + F32({2, 0, 0}));
  EXPECT_EQ(ToVector(dgc->velocity()), (std::vector<float>{1.5f, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ToVector(dgc->momentum()), (std::vector<float>{1.5f, 0, 0, 0, 0, 0}));
  ASSERT_THAT(dgc->Compress({0, 0, 1, 0, 0.5f, -0.5f}, &payload, &spec), IsOk());
  // Indices 0, 4, 5: gaps 0, 3, 0.
  EXPECT_EQ(payload, Bytes({3, 0, 3, 0}) + F32({1.5f, 0.5f, -0.5f}));
  EXPECT_EQ(ToVector(dgc->velocity()), (std::vector<float>{0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(ToVector(dgc->momentum()), (std::vector<float>{0, 0, 1, 0, 0, 0}));
  ASSERT_THAT(dgc->Compress({0, 0, 0, 0, 0, 10}, &payload, &spec), IsOk());
  // v = (0, 0, 1, 0): sends index 2 (1); indices 2, 4, 5: gaps 2, 1, 0.
  EXPECT_EQ(payload, Bytes({3, 2, 1, 0}) + F32({1, 0, 2.5f}));

  options.clip_norm = -1;
  EXPECT_THAT(DgcCompressor::Create(tensors, options).status(),
              StatusIs(kInvalid, HasSubstr("clip_norm")));
  options.clip_norm = INFINITY;
  EXPECT_THAT(DgcCompressor::Create(tensors, options).status(),
              StatusIs(kInvalid, HasSubstr("clip_norm")));
}

TEST(DgcTest, TiesGoToTheLowestIndex) {
  DgcCompressor dgc = MakeDgc(5, NoWarmup(0.4, 0.0f));  // k = ⌈5 · 0.4⌉ = 2.
  std::string payload;
  CodecSpec spec;
  ASSERT_THAT(dgc.Compress({0.5f, 1.0f, -1.0f, 1.0f, 0.0f}, &payload, &spec), IsOk());
  EXPECT_EQ(payload, Bytes({2, 1, 0}) + F32({1.0f, -1.0f}));
  // m = 0: v accumulates g (top-k with error feedback). v = (0.5, 0, 0, 1, 0)
  // + (0, 0, 0, 0, −1) → indices 3, 4 (|1| = |−1|, the rest lower).
  ASSERT_THAT(dgc.Compress({0.0f, 0.0f, 0.0f, 0.0f, -1.0f}, &payload, &spec), IsOk());
  EXPECT_EQ(payload, Bytes({2, 3, 0}) + F32({1.0f, -1.0f}));
  EXPECT_THAT(dgc.velocity(), ElementsAre(0.5f, 0.0f, 0.0f, 0.0f, 0.0f));
}

// Reference code's warm-up: base 0.001, E = 5 → 0.316228, 0.1, 0.031623, 0.01, 0.003162, then
// 0.001. On a 1000-entry tensor k = ⌈1000 · ratio⌉ = 317, 100, 32, 10, 4, 1.
TEST(DgcTest, WarmupSchedule) {
  DgcOptions options;
  options.compress_ratio = 0.001;
  options.warmup_steps = 5;
  const double expected[] = {0.316228, 0.1, 0.031623, 0.01, 0.003162, 0.001, 0.001};
  for (int e = 0; e < 7; ++e) {
    EXPECT_NEAR(DgcCompressRatio(options, e), expected[e], 1e-6 * expected[e] + 5e-7) << e;
  }
  EXPECT_EQ(DgcCompressRatio(options, 1000), 0.001);
  DgcCompressor dgc = MakeDgc(1000, options);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> g(1000);
  std::string payload;
  CodecSpec spec;
  for (const uint64_t k : {317u, 100u, 32u, 10u, 4u, 1u, 1u}) {
    for (float& x : g) x = normal(rng);
    EXPECT_NEAR(dgc.ratio(), expected[dgc.step()], 1e-6);
    ASSERT_THAT(dgc.Compress(g, &payload, &spec), IsOk());
    EXPECT_EQ(spec.k, k) << "step " << dgc.step() - 1;
  }
  dgc.Reset();
  EXPECT_EQ(dgc.step(), 0u);
  EXPECT_THAT(dgc.velocity(), ::testing::Each(0.0f));

  // The paper's schedule (script/cifar.resnet20.sh comment) as an explicit
  // list.
  options.warmup_ratios = {0.25, 0.0625, 0.015625, 0.004, 0.001};
  EXPECT_EQ(DgcCompressRatio(options, 1), 0.0625);
  EXPECT_EQ(DgcCompressRatio(options, 5), 0.001);
}

TEST(DgcTest, HalfValuesKeepTheRoundingResidual) {
  DgcOptions options = NoWarmup(0.5, 0.0f);  // k = 1 of 2.
  options.half_values = true;
  DgcCompressor dgc = MakeDgc(2, options);
  std::string payload;
  CodecSpec spec;
  ASSERT_THAT(dgc.Compress({0.1f, 0.0f}, &payload, &spec), IsOk());
  EXPECT_TRUE(spec.half_values);
  EXPECT_EQ(payload, Bytes({1, 0}) + Bytes({0x66, 0x2e}));  // 0.1 → binary16 0x2e66.
  // 0x2e66 = 0.0999755859375; v keeps 0.1f minus it.
  EXPECT_EQ(dgc.velocity()[0], 0.1f - 0.0999755859375f);
}

TEST(DgcTest, ErrorsChangeNothing) {
  DgcCompressor dgc = MakeDgc(2, NoWarmup(0.5, 0.9f));
  std::string payload;
  CodecSpec spec;
  ASSERT_THAT(dgc.Compress({3e38f, 3e38f}, &payload, &spec), IsOk());  // Sends index 0.
  const std::vector<float> u = ToVector(dgc.momentum());
  const std::vector<float> v = ToVector(dgc.velocity());
  EXPECT_THAT(dgc.Compress({0.0f, NAN}, &payload, &spec),
              StatusIs(kInvalid, HasSubstr("g[1] = nan")));
  EXPECT_THAT(dgc.Compress({0.0f, 0.0f, 0.0f}, &payload, &spec),
              StatusIs(kInvalid, HasSubstr("3 entries")));
  // u[1] = 0.9 · 3e38 + 3e38 overflows.
  EXPECT_THAT(dgc.Compress({0.0f, 3e38f}, &payload, &spec),
              StatusIs(kInvalid, HasSubstr("entry 1 overflows")));
  EXPECT_EQ(ToVector(dgc.momentum()), u);
  EXPECT_EQ(ToVector(dgc.velocity()), v);
  EXPECT_EQ(dgc.step(), 1u);

  DgcOptions half = NoWarmup(0.5, 0.9f);
  half.half_values = true;
  DgcCompressor small = MakeDgc(2, half);
  EXPECT_THAT(small.Compress({70000.0f, 0.0f}, &payload, &spec),
              StatusIs(kInvalid, HasSubstr("float16")));
  EXPECT_THAT(small.velocity(), ElementsAre(0.0f, 0.0f));
  EXPECT_EQ(small.step(), 0u);
}

TEST(DgcTest, CreateValidates) {
  const auto create = [](std::vector<DgcTensor> tensors, DgcOptions options) {
    return DgcCompressor::Create(std::move(tensors), std::move(options)).status();
  };
  EXPECT_THAT(create({}, {}), StatusIs(kInvalid, HasSubstr("no tensors")));
  EXPECT_THAT(create({{1, 4, 2}}, {}), StatusIs(kInvalid, HasSubstr("tensor 0 starts at 1")));
  EXPECT_THAT(create({{0, 4, 2}, {5, 1, 1}}, {}),
              StatusIs(kInvalid, HasSubstr("tensor 1 starts at 5")));
  EXPECT_THAT(create({{0, 0, 2}}, {}), StatusIs(kInvalid, HasSubstr("size 0")));
  const std::vector<DgcTensor> ok = {{0, 4, 2}};
  EXPECT_THAT(create(ok, NoWarmup(0.0, 0.9f)), StatusIs(kInvalid, HasSubstr("compress_ratio")));
  EXPECT_THAT(create(ok, NoWarmup(1.5, 0.9f)), StatusIs(kInvalid, HasSubstr("compress_ratio")));
  EXPECT_THAT(create(ok, NoWarmup(0.1, -0.1f)), StatusIs(kInvalid, HasSubstr("momentum")));
  EXPECT_THAT(create(ok, NoWarmup(0.1, NAN)), StatusIs(kInvalid, HasSubstr("momentum")));
  DgcOptions options;
  options.warmup_steps = 2;
  options.warmup_ratios = {0.5};
  EXPECT_THAT(create(ok, options), StatusIs(kInvalid, HasSubstr("1 warmup_ratios")));
  options.warmup_ratios = {0.5, 0.0};
  EXPECT_THAT(create(ok, options), StatusIs(kInvalid, HasSubstr("warmup_ratios[1]")));
  options = DgcOptions();
  options.zstd = true;
  options.zstd_level = 1000;
  EXPECT_THAT(create(ok, options), StatusIs(kInvalid, HasSubstr("zstd_level")));
}

// --- Error feedback ----------------------------------------------------------

// docs/algorithms.md#sign: γ = 1, g = (0.5, −1, 0.25, 0) twice, scaled sign over
// one block.
TEST(ErrorFeedbackTest, Section54SignExample) {
  const CodecSpec spec = DefaultSpec(CodecId::kSign);
  ASSERT_EQ(spec.block_size, 0u);
  ErrorFeedback ef(4);
  const std::vector<float> g = {0.5f, -1.0f, 0.25f, 0.0f};
  std::string payload;
  ASSERT_THAT(ef.Compress(spec, g, &payload), IsOk());
  EXPECT_EQ(payload, F32({0.4375f}) + Bytes({0x0d}));  // Scale 0.4375, bits (1, 0, 1, 1).
  EXPECT_THAT(ef.residual(), ElementsAre(0.0625f, -0.5625f, -0.1875f, -0.4375f));
  ASSERT_THAT(ef.Compress(spec, g, &payload), IsOk());
  EXPECT_EQ(payload, F32({0.65625f}) + Bytes({0x05}));  // Scale 0.65625, bits (1, 0, 1, 0).
  EXPECT_THAT(ef.residual(), ElementsAre(-0.09375f, -0.90625f, -0.59375f, 0.21875f));

  // A lossless codec then sends p = g + e = (0.40625, −1.90625, −0.34375,
  // 0.21875) in full and clears the residual.
  ASSERT_THAT(ef.Compress(DefaultSpec(CodecId::kFloat32), g, &payload), IsOk());
  EXPECT_EQ(payload, F32({0.40625f, -1.90625f, -0.34375f, 0.21875f}));
  EXPECT_THAT(ef.residual(), ::testing::Each(0.0f));
}

// The SDK's path (CompressPending, adopted when the push is acknowledged)
// sends the same payloads and keeps the same residuals as Compress, on
// Section54SignExample's numbers; a push never adopted leaves the residual.
TEST(ErrorFeedbackTest, CompressPendingThenAdoptEqualsCompress) {
  const CodecSpec spec = DefaultSpec(CodecId::kSign);
  const std::vector<float> g = {0.5f, -1.0f, 0.25f, 0.0f};
  ErrorFeedback direct(4), pending(4);
  std::string want, got;
  std::vector<float> next;
  for (int step = 0; step < 2; ++step) {
    const std::vector<float> before(direct.residual().begin(), direct.residual().end());
    ASSERT_THAT(direct.Compress(spec, g, &want), IsOk());
    ASSERT_THAT(pending.CompressPending(spec, g, &got, &next), IsOk());
    EXPECT_EQ(got, want);
    EXPECT_THAT(pending.residual(), ElementsAreArray(before));  // Unchanged until adopted.
    ASSERT_THAT(pending.Adopt(next), IsOk());
    EXPECT_THAT(pending.residual(), ElementsAreArray(direct.residual()));
  }
  // Not adopted: the residual is the one after the second step.
  ASSERT_THAT(pending.CompressPending(spec, g, &got, &next), IsOk());
  EXPECT_THAT(pending.residual(), ElementsAre(-0.09375f, -0.90625f, -0.59375f, 0.21875f));
  EXPECT_THAT(pending.Adopt(std::vector<float>(3)), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ErrorFeedbackTest, DisabledIsPlainEncodeAndErrorsKeepTheResidual) {
  const CodecSpec spec = DefaultSpec(CodecId::kSign);
  const std::vector<float> g = {0.5f, -1.0f, 0.25f, 0.0f};
  std::string payload, plain;
  ErrorFeedback off(4, ErrorFeedbackOptions{/*enabled=*/false});
  ASSERT_THAT(off.Compress(spec, g, &payload), IsOk());
  ASSERT_THAT(off.Compress(spec, g, &payload), IsOk());
  ASSERT_THAT(Encode(spec, g, &plain), IsOk());
  EXPECT_EQ(payload, plain);
  EXPECT_THAT(off.residual(), ::testing::Each(0.0f));

  ErrorFeedback ef(4);
  ASSERT_THAT(ef.Compress(spec, g, &payload), IsOk());
  const std::vector<float> e = ToVector(ef.residual());
  EXPECT_THAT(ef.Compress(spec, std::vector<float>{1, 2, 3}, &payload),
              StatusIs(kInvalid, HasSubstr("3 entries")));
  EXPECT_THAT(ef.Compress(spec, std::vector<float>{0, INFINITY, 0, 0}, &payload),
              StatusIs(kInvalid, HasSubstr("finite")));
  CodecSpec half = DefaultSpec(CodecId::kFloat16);
  EXPECT_THAT(ef.Compress(half, std::vector<float>{0, 1e6f, 0, 0}, &payload), StatusIs(kInvalid));
  EXPECT_EQ(ToVector(ef.residual()), e);
  ef.Reset();
  EXPECT_THAT(ef.residual(), ::testing::Each(0.0f));
}

// EF telescopes: Σ_t Decode(payload_t) = Σ_t x_t − e_T up to the float32
// rounding of p_t = x_t + e_t. Top-k 1 % of d = 1000 over 3000 updates with
// a common drift (so Σ x grows linearly): the gap stays ‖e_T‖, a few percent
// of ‖Σ x‖, while without error feedback almost all of Σ x is lost.
TEST(ErrorFeedbackTest, SumOfSentTracksSumOfTrueUpdates) {
  constexpr size_t kD = 1000;
  constexpr int kSteps = 3000;
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  ASSERT_EQ(EffectiveK(spec, kD), 10u);  // ratio 0.01.
  std::mt19937 rng(2024);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> drift(kD);
  for (float& m : drift) m = uniform(rng);

  ErrorFeedback ef(kD);
  ErrorFeedback off(kD, ErrorFeedbackOptions{/*enabled=*/false});
  std::vector<double> sum_true(kD, 0.0), sum_sent(kD, 0.0), sum_off(kD, 0.0), slack(kD, 0.0);
  std::vector<float> x(kD), decoded(kD);
  std::string payload;
  for (int t = 0; t < kSteps; ++t) {
    for (size_t j = 0; j < kD; ++j) {
      x[j] = drift[j] + uniform(rng);
      sum_true[j] += x[j];
      // |rounding of x + e| <= 2^-24 |x + e|; 2^-23 (|x| + |e|) is safe.
      slack[j] += 0x1p-23 * (std::fabs(x[j]) + std::fabs(ef.residual()[j]));
    }
    ASSERT_THAT(ef.Compress(spec, x, &payload), IsOk());
    ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(decoded)), IsOk());
    for (size_t j = 0; j < kD; ++j) sum_sent[j] += decoded[j];
    ASSERT_THAT(off.Compress(spec, x, &payload), IsOk());
    ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(decoded)), IsOk());
    for (size_t j = 0; j < kD; ++j) sum_off[j] += decoded[j];
  }
  double true_norm = 0, gap = 0, gap_off = 0, residual_norm = 0;
  for (size_t j = 0; j < kD; ++j) {
    const double e = ef.residual()[j];
    // The identity, entry by entry (sums of floats in double are exact
    // enough: 3000 terms of magnitude < 1e3).
    ASSERT_NEAR(sum_sent[j], sum_true[j] - e, slack[j] + 1e-9) << j;
    true_norm += sum_true[j] * sum_true[j];
    gap += (sum_sent[j] - sum_true[j]) * (sum_sent[j] - sum_true[j]);
    gap_off += (sum_off[j] - sum_true[j]) * (sum_off[j] - sum_true[j]);
    residual_norm += e * e;
  }
  true_norm = std::sqrt(true_norm);
  gap = std::sqrt(gap);
  gap_off = std::sqrt(gap_off);
  residual_norm = std::sqrt(residual_norm);
  EXPECT_GT(true_norm, 1000.0 * std::sqrt(kD) * 0.5);  // ≈ 3000 · ‖drift‖.
  EXPECT_LE(gap, residual_norm * (1 + 1e-6) + 1e-3);
  // Seen: ‖Σ x‖ ≈ 53766, gap = ‖e_T‖ ≈ 860 (1.6 %); without EF ≈ 51009.
  EXPECT_LE(gap, 0.05 * true_norm);
  EXPECT_GT(gap_off, 0.5 * true_norm);  // The same bound fails without EF.
}

}  // namespace
}  // namespace tally::compress

namespace tally::compress {
namespace {

double Norm(absl::Span<const float> v) {
  double sum = 0;
  for (float x : v) sum += double{x} * x;
  return std::sqrt(sum);
}

// Why the SDKs keep error feedback to the contractive codecs: with top-k the
// residual of a constant update x = 1 (d = 1000, k = 10) stays below
// (d / k)·‖x‖ (an entry waits at most d / k updates), while with rescaled
// random-k a sent entry leaves p − (d/k)·p = −99·p behind, and the residual
// explodes.
TEST(ErrorFeedbackSuitsTest, OnlyContractiveCodecsAndWhy) {
  for (CodecId id : {CodecId::kFloat16, CodecId::kBfloat16, CodecId::kInt8, CodecId::kSign,
                     CodecId::kTopK}) {
    EXPECT_TRUE(ErrorFeedbackSuits(DefaultSpec(id))) << static_cast<int>(id);
  }
  for (CodecId id : {CodecId::kFloat32, CodecId::kQsgd, CodecId::kRandK, CodecId::kSpsa}) {
    EXPECT_FALSE(ErrorFeedbackSuits(DefaultSpec(id))) << static_cast<int>(id);
  }
  CodecSpec biased = DefaultSpec(CodecId::kRandK);
  biased.rescale = false;
  EXPECT_TRUE(ErrorFeedbackSuits(biased));

  const std::vector<float> x(1000, 1.0f);
  CodecSpec topk = DefaultSpec(CodecId::kTopK);
  CodecSpec randk = DefaultSpec(CodecId::kRandK);
  ErrorFeedback topk_feedback(x.size()), randk_feedback(x.size());
  std::string payload;
  double topk_worst = 0;
  for (uint64_t step = 0; step < 30; ++step) {
    ASSERT_THAT(topk_feedback.Compress(topk, x, &payload), IsOk());
    topk_worst = std::max(topk_worst, Norm(topk_feedback.residual()));
    randk.seed = step + 1;
    ASSERT_THAT(randk_feedback.Compress(randk, x, &payload), IsOk());
  }
  EXPECT_LE(topk_worst, 100 * Norm(x));
  EXPECT_GT(Norm(randk_feedback.residual()), 1e3 * Norm(x));
}

}  // namespace
}  // namespace tally::compress
