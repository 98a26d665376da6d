// compress/codec.h: registry, spec validation, round trips of every codec
// within the error bound its header states (on random vectors with zeros,
// tiny, huge and mixed magnitudes, d = 1 and d not a multiple of the block
// size), DecodeAccumulate == acc + weight · Decode bit for bit, zstd framing,
// and encoder input errors. Expected values come from the header's formulas,
// recomputed here (independent sums, sorts and references), never from the
// codec's own output.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "compress/codec_rng.h"
#include "compress/half.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::compress {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

enum class Kind { kGaussian, kZeros, kTiny, kSubnormal, kHuge, kMixed, kHalfZeros, kTies };

const Kind kKinds[] = {Kind::kGaussian, Kind::kZeros, Kind::kTiny,      Kind::kSubnormal,
                       Kind::kHuge,     Kind::kMixed, Kind::kHalfZeros, Kind::kTies};
const size_t kDims[] = {1, 2, 7, 255, 256, 257, 1000, 4099};

std::vector<float> MakeVector(size_t d, Kind kind, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-60, 60);
  std::vector<float> x(d);
  for (size_t j = 0; j < d; ++j) {
    const float g = normal(rng);
    switch (kind) {
      case Kind::kGaussian:
        x[j] = g;
        break;
      case Kind::kZeros:
        x[j] = 0.0f;
        break;
      case Kind::kTiny:
        x[j] = g * 1e-30f;
        break;
      case Kind::kSubnormal:
        x[j] = g * 1e-41f;
        break;
      case Kind::kHuge:
        x[j] = g * 1e30f;
        break;
      case Kind::kMixed:
        x[j] = std::ldexp(g, exponent(rng));
        break;
      case Kind::kHalfZeros:
        x[j] = j % 2 == 0 ? 0.0f : g;
        break;
      case Kind::kTies:
        x[j] = (j % 3 == 0 ? -1.0f : 1.0f) * static_cast<float>(1 + j % 2);
        break;
    }
  }
  return x;
}

struct Config {
  const char* label;
  CodecSpec spec;
};

// A blocked codec (int8, qsgd, sign) with block_size and (qsgd) levels.
CodecSpec Blocked(CodecId id, uint32_t block_size, uint32_t levels = 0, uint64_t seed = 0) {
  CodecSpec spec = DefaultSpec(id);
  spec.block_size = block_size;
  if (levels != 0) spec.levels = levels;
  spec.seed = seed;
  return spec;
}

// topk / randk with k from `ratio`.
CodecSpec Sparse(CodecId id, float ratio, bool half_values, bool rescale, uint64_t seed) {
  CodecSpec spec = DefaultSpec(id);
  spec.ratio = ratio;
  spec.half_values = half_values;
  spec.rescale = rescale;
  spec.seed = seed;
  return spec;
}

// The codec configurations the sweeps run (valid for every d >= 1).
std::vector<Config> Configs() {
  CodecSpec spsa = DefaultSpec(CodecId::kSpsa);
  spsa.k = 3;
  spsa.seed = 5;
  return {
      {"float32", DefaultSpec(CodecId::kFloat32)},
      {"float16", DefaultSpec(CodecId::kFloat16)},
      {"bfloat16", DefaultSpec(CodecId::kBfloat16)},
      {"int8", DefaultSpec(CodecId::kInt8)},
      {"int8_whole", Blocked(CodecId::kInt8, 0)},
      {"int8_block3", Blocked(CodecId::kInt8, 3)},
      {"int8_block1", Blocked(CodecId::kInt8, 1)},
      {"qsgd", DefaultSpec(CodecId::kQsgd)},
      {"qsgd_s1_whole", Blocked(CodecId::kQsgd, 0, 1)},
      {"qsgd_s127_b3", Blocked(CodecId::kQsgd, 3, 127, 9)},
      {"qsgd_s32767_b64", Blocked(CodecId::kQsgd, 64, 32767)},
      // 3- and 5-bit codes straddle bytes (the others are byte-aligned).
      {"qsgd_s3_b100", Blocked(CodecId::kQsgd, 100, 3)},
      {"qsgd_s15_b9", Blocked(CodecId::kQsgd, 9, 15)},
      {"qsgd_s1000", Blocked(CodecId::kQsgd, 512, 1000)},
      {"sign", DefaultSpec(CodecId::kSign)},
      {"sign_b256", Blocked(CodecId::kSign, 256)},
      {"sign_b5", Blocked(CodecId::kSign, 5)},
      {"topk", DefaultSpec(CodecId::kTopK)},
      {"topk_30pc_half", Sparse(CodecId::kTopK, 0.3f, true, false, 0)},
      {"topk_all", Sparse(CodecId::kTopK, 1.0f, false, false, 0)},
      {"randk", Sparse(CodecId::kRandK, 0.1f, false, true, 11)},
      {"randk_half_norescale", Sparse(CodecId::kRandK, 0.5f, true, false, 3)},
      {"randk_all", Sparse(CodecId::kRandK, 1.0f, false, true, 0)},
      {"spsa", spsa},
  };
}

double Sum(const std::vector<float>& x, size_t begin, size_t end, double (*f)(float)) {
  double s = 0.0;
  for (size_t j = begin; j < end; ++j) s += f(x[j]);
  return s;
}

// Checks x̂ against the error bound (or exact form) codec.h states.
::testing::AssertionResult WithinBound(const CodecSpec& spec, const std::vector<float>& x,
                                       const std::vector<float>& y) {
  const size_t d = x.size();
  auto fail = [&](size_t j, const char* what) {
    return ::testing::AssertionFailure()
           << what << " at j = " << j << ": x = " << std::hexfloat << x[j] << ", x̂ = " << y[j];
  };
  const size_t block = spec.block_size == 0 ? d : spec.block_size;
  switch (spec.id) {
    case CodecId::kFloat32:
      for (size_t j = 0; j < d; ++j) {
        if (FloatBits(x[j]) != FloatBits(y[j])) return fail(j, "not exact");
      }
      break;
    case CodecId::kFloat16:
      for (size_t j = 0; j < d; ++j) {
        const double a = std::fabs(x[j]);
        const double bound = a >= 0x1p-14 ? a * 0x1p-11 : 0x1p-25;
        if (std::fabs(static_cast<double>(x[j]) - y[j]) > bound) return fail(j, "float16 bound");
      }
      break;
    case CodecId::kBfloat16:
      for (size_t j = 0; j < d; ++j) {
        const double a = std::fabs(x[j]);
        const double bound = a >= 0x1p-126 ? a * 0x1p-8 : 0x1p-134;
        if (std::fabs(static_cast<double>(x[j]) - y[j]) > bound) return fail(j, "bfloat16 bound");
      }
      break;
    case CodecId::kInt8:
      for (size_t b = 0; b < d; b += block) {
        const size_t end = std::min(d, b + block);
        double m = 0.0;
        for (size_t j = b; j < end; ++j) m = std::max(m, std::fabs(static_cast<double>(x[j])));
        for (size_t j = b; j < end; ++j) {
          const double bound = m * (1.0 / 254 + 0x1p-22) + 0x1p-140;
          if (std::fabs(static_cast<double>(x[j]) - y[j]) > bound) return fail(j, "int8 bound");
        }
      }
      break;
    case CodecId::kQsgd:
      for (size_t b = 0; b < d; b += block) {
        const size_t end = std::min(d, b + block);
        const double norm = std::sqrt(Sum(x, b, end, [](float v) { return double{v} * v; }));
        for (size_t j = b; j < end; ++j) {
          const double bound = norm * (1.0 / spec.levels + 0x1p-22) * (1 + 0x1p-23) + 0x1p-130;
          if (std::fabs(static_cast<double>(x[j]) - y[j]) > bound) return fail(j, "qsgd bound");
          if (y[j] != 0.0f && std::signbit(y[j]) != std::signbit(x[j])) return fail(j, "qsgd sign");
        }
      }
      break;
    case CodecId::kSign:
      for (size_t b = 0; b < d; b += block) {
        const size_t end = std::min(d, b + block);
        const double l1 = Sum(x, b, end, [](float v) { return std::fabs(double{v}); });
        const float c = static_cast<float>(l1 / static_cast<double>(end - b));
        for (size_t j = b; j < end; ++j) {
          if (y[j] != (x[j] >= 0.0f ? c : -c)) return fail(j, "sign form");
        }
        // ‖x − x̂‖² = ‖x‖² − ‖x‖₁²/n (up to float rounding of c).
        const double l2 = Sum(x, b, end, [](float v) { return double{v} * v; });
        double err = 0.0;
        for (size_t j = b; j < end; ++j) err += std::pow(static_cast<double>(x[j]) - y[j], 2);
        // The identity holds for the exact c = ‖x‖₁/n; the float c adds
        // n·(c_f − c)², |c_f − c| <= c·2^-24 (normal) or 2^-150 (subnormal).
        const double n = static_cast<double>(end - b);
        const double want = l2 - l1 * l1 / n;
        const double dc = (l1 / n) * 0x1p-24 + 0x1p-150;
        if (std::fabs(err - want) > n * dc * dc + 1e-9 * l2) return fail(b, "sign error identity");
      }
      break;
    case CodecId::kTopK: {
      const uint64_t k = EffectiveK(spec, d);
      std::vector<size_t> order(d);
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
      std::vector<bool> kept(d, false);
      for (size_t i = 0; i < k; ++i) kept[order[i]] = true;
      for (size_t j = 0; j < d; ++j) {
        const float want = !kept[j]           ? 0.0f
                           : spec.half_values ? HalfBitsToFloat(FloatToHalfBits(x[j]))
                                              : x[j];
        if (y[j] != want) return fail(j, "topk value");
      }
      break;
    }
    case CodecId::kRandK: {
      const uint64_t k = EffectiveK(spec, d);
      const float scale = spec.rescale ? static_cast<float>(double(d) / double(k)) : 1.0f;
      for (size_t j = 0; j < d; ++j) {
        const float v = spec.half_values ? HalfBitsToFloat(FloatToHalfBits(x[j])) : x[j];
        const float want = RandkSelected(spec.seed, k, d, j) ? v * scale : 0.0f;
        if (y[j] != want) return fail(j, "randk value");
      }
      break;
    }
    case CodecId::kSpsa: {
      // x̂ = Σ_i s_i z_i with s_i = (z_i · x) / k, z_i from seed RngBits(seed, i).
      std::vector<double> want(d, 0.0);
      std::vector<float> z(d);
      double scale = 0.0;
      for (uint64_t i = 0; i < spec.k; ++i) {
        FillRademacher(RngBits(spec.seed, i), 0, absl::MakeSpan(z));
        double dot = 0.0;
        for (size_t j = 0; j < d; ++j) dot += z[j] * double{x[j]};
        const double s = static_cast<float>(dot / spec.k);
        scale += std::fabs(s);
        for (size_t j = 0; j < d; ++j) want[j] += s * z[j];
      }
      for (size_t j = 0; j < d; ++j) {
        if (std::fabs(want[j] - y[j]) > 1e-6 * scale) return fail(j, "spsa value");
      }
      break;
    }
  }
  return ::testing::AssertionSuccess();
}

// Whether Encode may refuse x: float16 / bfloat16 (and half values) can
// overflow; a qsgd bucket norm can exceed FLT_MAX.
bool MayOverflow(const CodecSpec& spec, const std::vector<float>& x) {
  double m = 0.0;
  for (float v : x) m = std::max(m, std::fabs(double{v}));
  switch (spec.id) {
    case CodecId::kFloat16:
      return m >= 65520.0;
    case CodecId::kTopK:  // Sends the largest |x|.
      return spec.half_values && m >= 65520.0;
    case CodecId::kRandK:
      for (size_t j = 0; j < x.size(); ++j) {
        if (spec.half_values && std::fabs(x[j]) >= 65520.0f &&
            RandkSelected(spec.seed, EffectiveK(spec, x.size()), x.size(), j)) {
          return true;
        }
      }
      return false;
    default:
      return false;
  }
}

TEST(CodecTest, RoundTripsWithinTheStatedBounds) {
  for (const Config& config : Configs()) {
    for (size_t d : kDims) {
      for (Kind kind : kKinds) {
        SCOPED_TRACE(::testing::Message()
                     << config.label << " d=" << d << " kind=" << static_cast<int>(kind));
        const std::vector<float> x = MakeVector(d, kind, static_cast<uint32_t>(d * 31 + 7));
        ASSERT_THAT(ValidateSpec(config.spec, d), IsOk());
        std::string payload;
        const absl::Status encoded = Encode(config.spec, x, &payload);
        if (MayOverflow(config.spec, x)) {
          EXPECT_THAT(encoded, StatusIs(kInvalid, HasSubstr("infinity")));
          continue;
        }
        ASSERT_THAT(encoded, IsOk());
        const size_t max = MaxEncodedBytes(config.spec, d);
        EXPECT_LE(payload.size(), max);
        const CodecId id = config.spec.id;
        if (id != CodecId::kTopK && id != CodecId::kRandK && id != CodecId::kSpsa) {
          EXPECT_EQ(payload.size(), max);
        }
        std::vector<float> y(d, 12345.0f);
        ASSERT_THAT(Decode(config.spec, payload, absl::MakeSpan(y)), IsOk());
        EXPECT_TRUE(WithinBound(config.spec, x, y));
        std::string again;
        ASSERT_THAT(Encode(config.spec, x, &again), IsOk());
        EXPECT_EQ(again, payload) << "encoding is deterministic";
      }
    }
  }
}

TEST(CodecTest, EncodersRefuseWhatTheFormatCannotHold) {
  const std::vector<float> big = {1.0f, 0x1.ff8p127f, -2.0f};
  std::string payload;
  EXPECT_THAT(Encode(DefaultSpec(CodecId::kBfloat16), big, &payload),
              StatusIs(kInvalid, HasSubstr("x[1]")));
  EXPECT_THAT(Encode(DefaultSpec(CodecId::kFloat16), std::vector<float>{0, 0, 65520.0f}, &payload),
              StatusIs(kInvalid, HasSubstr("x[2]")));
  EXPECT_THAT(Encode(DefaultSpec(CodecId::kFloat16), std::vector<float>{65519.0f}, &payload),
              IsOk());
  const std::vector<float> two_huge = {3e38f, -3e38f};
  EXPECT_THAT(Encode(DefaultSpec(CodecId::kQsgd), two_huge, &payload),
              StatusIs(kInvalid, HasSubstr("norm overflows")));
  // randk: a value whose rescaled decoded value (here × d/k = 2) overflows.
  CodecSpec randk = DefaultSpec(CodecId::kRandK);
  randk.ratio = 0.5f;
  EXPECT_THAT(Encode(randk, std::vector<float>(8, 3e38f), &payload),
              StatusIs(kInvalid, HasSubstr("overflows")));
  randk.rescale = false;
  EXPECT_THAT(Encode(randk, std::vector<float>(8, 3e38f), &payload), IsOk());
  // int8 handles FLT_MAX (its scale is nudged so that scale * 127 is finite).
  const float kMax = std::numeric_limits<float>::max();
  const std::vector<float> extreme = {kMax, -kMax, 1.0f};
  CodecSpec int8 = DefaultSpec(CodecId::kInt8);
  ASSERT_THAT(Encode(int8, extreme, &payload), IsOk());
  std::vector<float> y(3);
  ASSERT_THAT(Decode(int8, payload, absl::MakeSpan(y)), IsOk());
  EXPECT_TRUE(WithinBound(int8, extreme, y));
}

TEST(CodecTest, DecodeAccumulateEqualsAccPlusWeightTimesDecode) {
  for (const Config& config : Configs()) {
    for (bool zstd : {false, true}) {
      for (size_t d : {size_t{1}, size_t{257}, size_t{5000}}) {
        SCOPED_TRACE(::testing::Message() << config.label << " zstd=" << zstd << " d=" << d);
        CodecSpec spec = config.spec;
        spec.zstd = zstd;
        const std::vector<float> x = MakeVector(d, Kind::kGaussian, 99);
        std::string payload;
        ASSERT_THAT(Encode(spec, x, &payload), IsOk());
        std::vector<float> decoded(d);
        ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(decoded)), IsOk());
        for (float weight : {0.37f, -2.0f, 1.0f, 0.0f}) {
          std::vector<float> acc = MakeVector(d, Kind::kGaussian, 5);
          const std::vector<float> before = acc;
          ASSERT_THAT(DecodeAccumulate(spec, payload, weight, absl::MakeSpan(acc)), IsOk());
          for (size_t j = 0; j < d; ++j) {
            ASSERT_EQ(acc[j], before[j] + weight * decoded[j]) << "j = " << j << " w = " << weight;
          }
        }
      }
    }
  }
}

TEST(CodecTest, TopKSelectsExactlyOnALargeVectorWithManyTies) {
  // 100003 entries on a coarse grid (many equal |x|, both signs): the kept
  // set must be the stable sort's first k.
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> grid(-300, 300);
  std::vector<float> x(100003);
  for (float& v : x) v = static_cast<float>(grid(rng)) * 0.125f;
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  for (uint64_t k : {1u, 1000u, 54321u, 100003u}) {
    spec.k = k;
    std::string payload;
    ASSERT_THAT(Encode(spec, x, &payload), IsOk());
    std::vector<float> y(x.size());
    ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
    EXPECT_TRUE(WithinBound(spec, x, y)) << "k = " << k;
  }
}

TEST(CodecTest, SparseDecodersTouchOnlyTheirEntries) {
  // topk writes exactly its k entries: the rest of a NaN-filled accumulator
  // stays NaN (the decoder never reads or densifies them).
  CodecSpec spec = DefaultSpec(CodecId::kTopK);
  spec.k = 3;
  const std::vector<float> x = {0, 5, 0, 0, -7, 0, 1, 0, 0, 0.5f};
  std::string payload;
  ASSERT_THAT(Encode(spec, x, &payload), IsOk());
  std::vector<float> acc(10, std::numeric_limits<float>::quiet_NaN());
  for (size_t j : {1, 4, 6}) acc[j] = 1.0f;
  ASSERT_THAT(DecodeAccumulate(spec, payload, 2.0f, absl::MakeSpan(acc)), IsOk());
  EXPECT_EQ(acc[1], 11.0f);
  EXPECT_EQ(acc[4], -13.0f);
  EXPECT_EQ(acc[6], 3.0f);
  for (size_t j : {0, 2, 3, 5, 7, 8, 9}) EXPECT_TRUE(std::isnan(acc[j])) << j;
}

TEST(CodecTest, ZstdFramesEveryCodecAndShrinksRedundantPayloads) {
  std::vector<float> x(10000, 0.0f);
  for (size_t j = 0; j < x.size(); j += 10) x[j] = static_cast<float>(j % 7) - 3.0f;
  CodecSpec spec = DefaultSpec(CodecId::kFloat32);
  spec.zstd = true;
  std::string payload;
  ASSERT_THAT(Encode(spec, x, &payload), IsOk());
  EXPECT_LT(payload.size(), x.size() * 4 / 10);
  EXPECT_EQ(payload.substr(0, 4), std::string("\x28\xb5\x2f\xfd", 4));
  EXPECT_LE(payload.size(), MaxEncodedBytes(spec, x.size()));
  std::vector<float> y(x.size());
  ASSERT_THAT(Decode(spec, payload, absl::MakeSpan(y)), IsOk());
  EXPECT_EQ(y, x);
  for (const Config& config : Configs()) {
    SCOPED_TRACE(config.label);
    CodecSpec framed = config.spec;
    framed.zstd = true;
    framed.zstd_level = 1;
    const std::vector<float> v = MakeVector(300, Kind::kHalfZeros, 4);
    std::string plain, zipped;
    ASSERT_THAT(Encode(config.spec, v, &plain), IsOk());
    ASSERT_THAT(Encode(framed, v, &zipped), IsOk());
    EXPECT_LE(zipped.size(), MaxEncodedBytes(framed, v.size()));
    std::vector<float> a(v.size()), b(v.size());
    ASSERT_THAT(Decode(config.spec, plain, absl::MakeSpan(a)), IsOk());
    ASSERT_THAT(Decode(framed, zipped, absl::MakeSpan(b)), IsOk());
    EXPECT_EQ(a, b);
    // An unframed payload is not accepted as a framed one, and vice versa.
    EXPECT_THAT(Decode(framed, plain, absl::MakeSpan(b)), StatusIs(kInvalid));
    EXPECT_THAT(Decode(config.spec, zipped, absl::MakeSpan(b)), StatusIs(kInvalid));
  }
}

TEST(CodecTest, EncodersRefuseNonFiniteInput) {
  for (const Config& config : Configs()) {
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      std::vector<float> x(8, 1.0f);
      x[3] = bad;
      std::string payload = "untouched";
      EXPECT_THAT(Encode(config.spec, x, &payload), StatusIs(kInvalid, HasSubstr("x[3]")))
          << config.label;
    }
  }
}

TEST(CodecTest, DecodeRefusesANonFiniteWeight) {
  std::string payload;
  const std::vector<float> x = {1, 2};
  ASSERT_THAT(Encode(DefaultSpec(CodecId::kFloat32), x, &payload), IsOk());
  std::vector<float> acc = {5, 6};
  EXPECT_THAT(DecodeAccumulate(DefaultSpec(CodecId::kFloat32), payload,
                               std::numeric_limits<float>::infinity(), absl::MakeSpan(acc)),
              StatusIs(kInvalid, HasSubstr("weight")));
  EXPECT_EQ(acc, (std::vector<float>{5, 6}));
}

TEST(CodecTest, Registry) {
  EXPECT_THAT(CodecNames(), ::testing::ElementsAre("float32", "float16", "bfloat16", "int8", "qsgd",
                                                   "sign", "topk", "randk", "spsa"));
  for (const CodecInfo& info : AllCodecs()) {
    ASSERT_EQ(FindCodec(info.name), &info);
    ASSERT_EQ(FindCodec(info.id), &info);
    EXPECT_THAT(ValidateSpec(DefaultSpec(info.id), 1), IsOk()) << info.name;
    EXPECT_THAT(ValidateSpec(DefaultSpec(info.id), 10'000'000), IsOk()) << info.name;
  }
  EXPECT_EQ(FindCodec("float32")->id, CodecId::kFloat32);
  EXPECT_TRUE(FindCodec("float32")->lossless);
  EXPECT_TRUE(FindCodec("topk")->sparse);
  EXPECT_EQ(static_cast<int>(FindCodec("spsa")->id), 9);
  EXPECT_EQ(FindCodec("gzip"), nullptr);
  EXPECT_EQ(FindCodec(static_cast<CodecId>(0)), nullptr);
  EXPECT_EQ(FindCodec(static_cast<CodecId>(10)), nullptr);
}

TEST(CodecTest, ValidateSpecNamesTheField) {
  CodecSpec spec = DefaultSpec(CodecId::kFloat32);
  EXPECT_THAT(ValidateSpec(spec, 0), StatusIs(kInvalid, HasSubstr("d = 0")));
  EXPECT_THAT(ValidateSpec(spec, kMaxDim + 1), StatusIs(kInvalid, HasSubstr("d = ")));
  spec.id = static_cast<CodecId>(42);
  EXPECT_THAT(ValidateSpec(spec, 5), StatusIs(kInvalid, HasSubstr("codec id 42")));
  spec = DefaultSpec(CodecId::kTopK);
  spec.k = 11;
  EXPECT_THAT(ValidateSpec(spec, 10), StatusIs(kInvalid, HasSubstr("k = 11")));
  spec.k = 0;
  for (float ratio : {0.0f, -0.5f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
    spec.ratio = ratio;
    EXPECT_THAT(ValidateSpec(spec, 10), StatusIs(kInvalid, HasSubstr("ratio")));
  }
  spec = DefaultSpec(CodecId::kRandK);
  spec.k = 20;
  EXPECT_THAT(ValidateSpec(spec, 10), StatusIs(kInvalid, HasSubstr("k = 20")));
  spec = DefaultSpec(CodecId::kQsgd);
  for (uint32_t levels : {0u, 32768u}) {
    spec.levels = levels;
    EXPECT_THAT(ValidateSpec(spec, 10), StatusIs(kInvalid, HasSubstr("levels")));
  }
  spec = DefaultSpec(CodecId::kSpsa);
  spec.k = 0;
  EXPECT_THAT(ValidateSpec(spec, 10), StatusIs(kInvalid, HasSubstr("spsa k")));
  spec = DefaultSpec(CodecId::kInt8);
  spec.zstd = true;
  spec.zstd_level = 1000;
  EXPECT_THAT(ValidateSpec(spec, 10), StatusIs(kInvalid, HasSubstr("zstd_level")));
  // Decoding checks the spec too, before touching the accumulator.
  std::vector<float> acc(4, 1.0f);
  EXPECT_THAT(DecodeAccumulate(spec, "", 1.0f, absl::MakeSpan(acc)),
              StatusIs(kInvalid, HasSubstr("zstd_level")));
}

TEST(CodecTest, EffectiveKAndMaxEncodedBytes) {
  CodecSpec topk = DefaultSpec(CodecId::kTopK);  // ratio 0.01.
  EXPECT_EQ(EffectiveK(topk, 10'000'000), 100'000u);
  EXPECT_EQ(EffectiveK(topk, 150), 2u);  // ceil(1.5).
  EXPECT_EQ(EffectiveK(topk, 1), 1u);
  topk.k = 7;
  EXPECT_EQ(EffectiveK(topk, 100), 7u);
  // varint(7) + 7 · (varint(99) + 4).
  EXPECT_EQ(MaxEncodedBytes(topk, 100), 1u + 7u * (1u + 4u));
  EXPECT_EQ(MaxEncodedBytes(DefaultSpec(CodecId::kFloat32), 10), 40u);
  EXPECT_EQ(MaxEncodedBytes(DefaultSpec(CodecId::kBfloat16), 10), 20u);
  EXPECT_EQ(MaxEncodedBytes(DefaultSpec(CodecId::kInt8), 1000), 4u * 4u + 1000u);
  // qsgd, s = 7: 4-bit codes, buckets of 512: 2 norms + 500 bytes.
  EXPECT_EQ(MaxEncodedBytes(DefaultSpec(CodecId::kQsgd), 1000), 8u + 500u);
  EXPECT_EQ(MaxEncodedBytes(DefaultSpec(CodecId::kSign), 1001), 4u + 126u);
  CodecSpec spsa = DefaultSpec(CodecId::kSpsa);
  spsa.k = 4;
  EXPECT_EQ(MaxEncodedBytes(spsa, 5), 48u);
}

}  // namespace
}  // namespace tally::compress
