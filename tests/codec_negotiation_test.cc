// server/codec_negotiation: every rule of the Join-time codec choice, with
// the expected choice read off the rules in the header by hand.
#include "server/codec_negotiation.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using compress::CodecId;
using ::tally::testing::StatusIs;

compress::CodecSpec Spec(CodecId id) { return compress::DefaultSpec(id); }

std::vector<compress::CodecSpec> Specs(std::vector<CodecId> ids) {
  std::vector<compress::CodecSpec> specs;
  for (CodecId id : ids) specs.push_back(Spec(id));
  return specs;
}

DownloadCodecs Downloads(std::vector<CodecId> full, std::optional<CodecId> delta) {
  DownloadCodecs downloads;
  downloads.full = Specs(std::move(full));
  if (delta.has_value()) downloads.delta = Spec(*delta);
  return downloads;
}

TEST(CodecNegotiationTest, AClientThatListsNothingGetsFloat32BothWays) {
  TALLY_ASSERT_OK_AND_ASSIGN(NegotiatedCodecs chosen,
                             NegotiateCodecs(ClientCodecs{}, Specs({CodecId::kInt8}),
                                             Downloads({CodecId::kFloat16}, CodecId::kFloat16)));
  EXPECT_EQ(chosen.upload.id, CodecId::kFloat32);
  EXPECT_EQ(chosen.download.id, CodecId::kFloat32);
  EXPECT_FALSE(chosen.delta.has_value());
}

TEST(CodecNegotiationTest, UploadIsTheServersFirstPreferenceTheClientEncodes) {
  ClientCodecs client;
  client.encodes = std::vector<CodecId>{CodecId::kFloat32, CodecId::kInt8, CodecId::kTopK};
  TALLY_ASSERT_OK_AND_ASSIGN(
      NegotiatedCodecs chosen,
      NegotiateCodecs(client, Specs({CodecId::kQsgd, CodecId::kTopK, CodecId::kInt8}),
                      Downloads({}, std::nullopt)));
  EXPECT_EQ(chosen.upload.id, CodecId::kTopK);
}

TEST(CodecNegotiationTest, Float32IsTheFallbackOnlyForAClientThatListsIt) {
  ClientCodecs client;
  client.encodes = std::vector<CodecId>{CodecId::kFloat16, CodecId::kFloat32};
  TALLY_ASSERT_OK_AND_ASSIGN(
      NegotiatedCodecs chosen,
      NegotiateCodecs(client, Specs({CodecId::kInt8}), Downloads({}, std::nullopt)));
  EXPECT_EQ(chosen.upload.id, CodecId::kFloat32);
  client.encodes = std::vector<CodecId>{CodecId::kFloat16};
  EXPECT_THAT(NegotiateCodecs(client, Specs({CodecId::kInt8}), Downloads({}, std::nullopt)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Listing only codecs tally does not know is listing something.
  client.encodes = std::vector<CodecId>{};
  EXPECT_THAT(NegotiateCodecs(client, Specs({CodecId::kInt8}), Downloads({}, std::nullopt)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(CodecNegotiationTest, DownloadIsTheFirstServedCodecTheClientDecodesAndDeltasNeedAChain) {
  ClientCodecs client;
  client.decodes = {CodecId::kInt8, CodecId::kFloat16};
  // float16 comes first in the server's order; it chains, so deltas too.
  TALLY_ASSERT_OK_AND_ASSIGN(
      NegotiatedCodecs chosen,
      NegotiateCodecs(client, {},
                      Downloads({CodecId::kFloat16, CodecId::kInt8}, CodecId::kFloat16)));
  EXPECT_EQ(chosen.download.id, CodecId::kFloat16);
  ASSERT_TRUE(chosen.delta.has_value());
  EXPECT_EQ(chosen.delta->id, CodecId::kFloat16);
  // int8 full models cannot start a delta chain.
  TALLY_ASSERT_OK_AND_ASSIGN(
      chosen, NegotiateCodecs(client, {},
                              Downloads({CodecId::kInt8, CodecId::kFloat16}, CodecId::kFloat16)));
  EXPECT_EQ(chosen.download.id, CodecId::kInt8);
  EXPECT_FALSE(chosen.delta.has_value());
  // A delta codec the client does not decode: full models only.
  client.decodes = {CodecId::kBfloat16};
  TALLY_ASSERT_OK_AND_ASSIGN(
      chosen, NegotiateCodecs(client, {}, Downloads({CodecId::kBfloat16}, CodecId::kFloat16)));
  EXPECT_EQ(chosen.download.id, CodecId::kBfloat16);
  EXPECT_FALSE(chosen.delta.has_value());
}

}  // namespace
}  // namespace tally::server
