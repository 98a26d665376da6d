// compress/: every hand-made malformed payload of tests/compress_corpus.h
// (truncated, trailing bytes, index == d, wrapping gaps that would give
// duplicate or decreasing indices, overlong and overflowing varints, NaN and
// inf scales and values including float16 inf/NaN, count mismatches, zstd
// bombs and frames of the wrong size) is refused with INVALID_ARGUMENT and a
// message saying what is wrong, by Decode and DecodeAccumulate alike, and
// leaves the accumulator / output bit for bit unchanged.
#include <cstring>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/compress_corpus.h"
#include "tests/status_matchers.h"

namespace tally::compress {
namespace {

using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<float> Pattern(size_t d) {
  std::vector<float> v(d);
  for (size_t j = 0; j < d; ++j) v[j] = 0.25f * static_cast<float>(j) - 1.5f;
  return v;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
}

TEST(MalformedPayloadTest, EveryCaseIsRefusedAndLeavesTheOutputUnchanged) {
  const std::vector<testing::MalformedCase> corpus = testing::MalformedCorpus();
  ASSERT_GE(corpus.size(), 80u);
  for (const testing::MalformedCase& c : corpus) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(ValidateSpec(c.spec, c.d).ok());
    const std::vector<float> before = Pattern(c.d);
    std::vector<float> acc = before;
    EXPECT_THAT(DecodeAccumulate(c.spec, c.payload, 0.5f, absl::MakeSpan(acc)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expect)));
    EXPECT_TRUE(SameBits(acc, before));
    std::vector<float> out = before;
    EXPECT_THAT(Decode(c.spec, c.payload, absl::MakeSpan(out)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expect)));
    EXPECT_TRUE(SameBits(out, before));
  }
}

TEST(MalformedPayloadTest, EveryStrictPrefixOfAValidPayloadIsRefused) {
  // Truncation anywhere, for every codec with and without zstd. (A prefix of
  // an spsa payload that ends on a pair boundary is a valid shorter payload,
  // so spsa is checked for prefixes that cut a pair.)
  std::vector<float> x(37);
  for (size_t j = 0; j < x.size(); ++j) x[j] = static_cast<float>(j % 5) - 2.2f;
  for (const CodecInfo& info : AllCodecs()) {
    for (bool zstd : {false, true}) {
      CodecSpec spec = DefaultSpec(info.id);
      spec.zstd = zstd;
      spec.k = info.id == CodecId::kTopK ? 5 : info.id == CodecId::kSpsa ? 3 : spec.k;
      spec.block_size = info.id == CodecId::kInt8 ? 8 : spec.block_size;
      std::string payload;
      ASSERT_TRUE(Encode(spec, x, &payload).ok());
      for (size_t n = 0; n < payload.size(); ++n) {
        if (!zstd && info.id == CodecId::kSpsa && n % 12 == 0) continue;
        SCOPED_TRACE(::testing::Message() << info.name << " zstd=" << zstd << " prefix " << n);
        std::vector<float> acc = Pattern(x.size());
        EXPECT_THAT(DecodeAccumulate(spec, payload.substr(0, n), 1.0f, absl::MakeSpan(acc)),
                    StatusIs(absl::StatusCode::kInvalidArgument));
        EXPECT_TRUE(SameBits(acc, Pattern(x.size())));
      }
      std::vector<float> acc = Pattern(x.size());
      EXPECT_THAT(DecodeAccumulate(spec, payload + std::string(1, '\0'), 1.0f, absl::MakeSpan(acc)),
                  StatusIs(absl::StatusCode::kInvalidArgument))
          << info.name << " with a trailing byte";
      EXPECT_TRUE(SameBits(acc, Pattern(x.size())));
    }
  }
}

TEST(MalformedPayloadTest, PayloadsForAnotherDimensionAreRefused) {
  // Encoded for d = 100 with the largest entry last, decoded as d = 99 (the
  // last code or index falls outside) and d = 1000 (the length is wrong).
  // Not for randk and spsa, whose payloads need not change with d, nor
  // topk at d = 1000, whose indices are all valid there.
  std::vector<float> x(100, 1.5f);
  x[99] = 9.0f;
  for (const CodecInfo& info : AllCodecs()) {
    if (info.id == CodecId::kRandK || info.id == CodecId::kSpsa) continue;
    CodecSpec spec = DefaultSpec(info.id);
    std::string payload;
    ASSERT_TRUE(Encode(spec, x, &payload).ok());
    for (size_t d : {size_t{99}, size_t{1000}}) {
      if (info.id == CodecId::kTopK && d == 1000) continue;
      std::vector<float> acc = Pattern(d);
      EXPECT_THAT(DecodeAccumulate(spec, payload, 1.0f, absl::MakeSpan(acc)),
                  StatusIs(absl::StatusCode::kInvalidArgument))
          << info.name << " d = " << d;
      EXPECT_TRUE(SameBits(acc, Pattern(d)));
    }
  }
}

}  // namespace
}  // namespace tally::compress
