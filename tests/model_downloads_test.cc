// Model downloads: the server's segments (server/encoded_model.h) and the
// SDK's reassembly of them (client/model_stream.h), fed the very messages the
// server would stream. Expected values are hand-computed.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "client/model_stream.h"
#include "compress/codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/encoded_model.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using SnapshotRef = std::shared_ptr<const ModelSnapshot>;

constexpr auto kUnspecified = tally::v1::CODEC_UNSPECIFIED;
constexpr auto kF32 = tally::v1::CODEC_DENSE_F32;
constexpr auto kF16 = tally::v1::CODEC_FLOAT16;
constexpr auto kInt8 = tally::v1::CODEC_INT8;
constexpr auto kTopk = tally::v1::CODEC_TOPK;

SnapshotRef Snapshot(uint64_t version, std::vector<float> params) {
  auto snapshot = std::make_shared<ModelSnapshot>();
  snapshot->version = version;
  snapshot->round = version - 1;
  snapshot->params = std::move(params);
  return snapshot;
}

tally::v1::ModelSpec Spec(size_t d) {
  tally::v1::ModelSpec spec;
  spec.set_num_params(d);
  spec.set_layout_hash(0x1234);
  return spec;
}

ModelInfo Info(size_t d) {
  ModelInfo info;
  info.num_params = d;
  info.layout_hash = 0x1234;
  return info;
}

tally::v1::ModelChunk ParseMessage(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  tally::v1::ModelChunk chunk;
  EXPECT_TRUE(chunk.ParseFromString(bytes));
  return chunk;
}

// The messages of a whole PullModel answer, as the client reads them.
std::vector<tally::v1::ModelChunk> Messages(const SegmentList& segments) {
  std::vector<tally::v1::ModelChunk> messages;
  for (const auto& segment : segments) {
    for (const grpc::ByteBuffer& buffer : segment->messages)
      messages.push_back(ParseMessage(buffer));
  }
  return messages;
}

struct Segment {
  tally::v1::ModelHeader header;
  std::string payload;
};

std::vector<Segment> Parse(const SegmentList& segments) {
  std::vector<Segment> parsed;
  for (const tally::v1::ModelChunk& chunk : Messages(segments)) {
    if (chunk.has_header()) {
      parsed.push_back({chunk.header(), ""});
    } else {
      EXPECT_EQ(chunk.offset(), parsed.back().payload.size());
      parsed.back().payload += chunk.data();
    }
  }
  return parsed;
}

std::vector<float> Floats(const std::string& payload) {
  std::vector<float> values(payload.size() / 4);
  std::memcpy(values.data(), payload.data(), values.size() * 4);
  return values;
}

// What the SDK makes of `messages`, holding `held` (may be null).
absl::StatusOr<Model> Assemble(const std::vector<tally::v1::ModelChunk>& messages, size_t d,
                               const compress::CodecSpec& download,
                               const client_internal::HeldModel* held,
                               client_internal::HeldModel* next = nullptr) {
  const ModelInfo info = Info(d);
  Model model;
  client_internal::ModelAssembler assembler(info, download, held, &model);
  for (const tally::v1::ModelChunk& chunk : messages) {
    if (absl::Status added = assembler.Add(chunk); !added.ok()) return added;
  }
  if (absl::Status complete = assembler.Complete(); !complete.ok()) return complete;
  if (next != nullptr) {
    next->version = model.version;
    next->chain_id = assembler.delta_base() ? assembler.chain_id() : 0;
    next->params = model.params;
  }
  return model;
}

DownloadCodecs Codecs(std::vector<compress::CodecId> full,
                      std::optional<compress::CodecSpec> delta = std::nullopt) {
  DownloadCodecs codecs;
  for (compress::CodecId id : full) codecs.full.push_back(compress::DefaultSpec(id));
  codecs.delta = delta;
  return codecs;
}

compress::CodecSpec TopK(uint64_t k) {
  compress::CodecSpec spec = compress::DefaultSpec(compress::CodecId::kTopK);
  spec.k = k;
  return spec;
}

TEST(ModelDownloadsTest, Float32ChunksPointIntoTheSnapshot) {
  std::vector<float> params(1000);
  for (size_t i = 0; i < params.size(); ++i) params[i] = 0.5f * i;
  SnapshotRef snapshot = Snapshot(4, params);
  ModelDownloads downloads(Spec(1000), /*chunk_bytes=*/1024, Codecs({}));
  auto segments = downloads.Get(snapshot, kUnspecified, kUnspecified, 0, 0);
  ASSERT_THAT(segments, IsOk());
  ASSERT_EQ(segments->size(), 1u);
  ASSERT_EQ((*segments)[0]->messages.size(), 1u + 4u);  // Header + ceil(4000 / 1024).
  EXPECT_GT(snapshot.use_count(), 1);                   // Slices hold the snapshot.
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE((*segments)[0]->messages[1].Dump(&slices).ok());
  ASSERT_EQ(slices.size(), 3u);
  // The payload slice is the snapshot's own memory: nothing was copied.
  EXPECT_EQ(reinterpret_cast<const char*>(slices[1].begin()),
            reinterpret_cast<const char*>(snapshot->params.data()));

  std::vector<Segment> parsed = Parse(*segments);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].header.version(), 4u);
  EXPECT_EQ(parsed[0].header.round(), 3u);
  EXPECT_EQ(parsed[0].header.codec(), kF32);
  EXPECT_EQ(parsed[0].header.base_version(), 0u);
  EXPECT_FALSE(parsed[0].header.delta_base());
  EXPECT_EQ(Floats(parsed[0].payload), params);
  absl::StatusOr<Model> model = Assemble(
      Messages(*segments), 1000, compress::DefaultSpec(compress::CodecId::kFloat32), nullptr);
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ(model->params, params);
  EXPECT_EQ(model->payload_bytes, 4000u);
}

TEST(ModelDownloadsTest, Float16ModelIsTheRoundedModelInHalfTheBytes) {
  // 0.1 -> 0x2E66 = 0.0999755859375; 1000.7 -> 1000.5 (spacing 0.5 in [512, 1024));
  // 2^-15 is a float16 subnormal, exact; -2.5 exact.
  const std::vector<float> params = {0.1f, -2.5f, std::ldexp(1.0f, -15), 1000.7f};
  ModelDownloads downloads(Spec(4), 1024, Codecs({compress::CodecId::kFloat16}));
  auto segments = downloads.Get(Snapshot(2, params), kF16, kUnspecified, 0, 0);
  ASSERT_THAT(segments, IsOk());
  std::vector<Segment> parsed = Parse(*segments);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].header.codec(), kF16);
  EXPECT_EQ(parsed[0].payload.size(), 8u);
  EXPECT_EQ(parsed[0].payload.substr(0, 2), std::string("\x66\x2e", 2));
  absl::StatusOr<Model> model =
      Assemble(Messages(*segments), 4, compress::DefaultSpec(compress::CodecId::kFloat16), nullptr);
  ASSERT_THAT(model, IsOk());
  EXPECT_THAT(model->params, ElementsAre(0.0999755859375f, -2.5f, std::ldexp(1.0f, -15), 1000.5f));
  EXPECT_EQ(model->payload_bytes, 8u);

  // Asked for float32, the same server sends the exact model.
  auto exact = downloads.Get(Snapshot(2, params), kF32, kUnspecified, 0, 0);
  ASSERT_THAT(exact, IsOk());
  EXPECT_EQ(Floats(Parse(*exact)[0].payload), params);
}

TEST(ModelDownloadsTest, Float16OverflowGoesOutAsFloat32) {
  const std::vector<float> params = {1.0f, 70000.0f};  // Above float16's 65504.
  ModelDownloads downloads(Spec(2), 1024, Codecs({compress::CodecId::kFloat16}));
  auto segments = downloads.Get(Snapshot(1, params), kF16, kUnspecified, 0, 0);
  ASSERT_THAT(segments, IsOk());
  std::vector<Segment> parsed = Parse(*segments);
  EXPECT_EQ(parsed[0].header.codec(), kF32);
  EXPECT_EQ(Floats(parsed[0].payload), params);
}

// Float32 models with top-1 deltas, by hand:
//   v1 M = (1, 2, 3, 4)      full: R1 = M.
//   v2 M = (1.5, 2, 3, 2)    M - R1 = (0.5, 0, 0, -2): top-1 sends (3, -2); R2 = (1, 2, 3, 2).
//   v3 M = (1.5, 2, 3, 2)    M - R2 = (0.5, 0, 0, 0): top-1 sends (0, 0.5); R3 = M.
// What the v2 delta dropped went out with v3's.
TEST(ModelDownloadsTest, TopkDeltaChainSendsWhatEarlierDeltasDropped) {
  ModelDownloads downloads(Spec(4), /*chunk_bytes=*/5, Codecs({}, TopK(1)));
  const compress::CodecSpec f32 = compress::DefaultSpec(compress::CodecId::kFloat32);

  auto v1 = downloads.Get(Snapshot(1, {1, 2, 3, 4}), kF32, kTopk, 0, 0);
  ASSERT_THAT(v1, IsOk());
  std::vector<Segment> full = Parse(*v1);
  ASSERT_EQ(full.size(), 1u);
  EXPECT_TRUE(full[0].header.delta_base());
  const uint64_t chain = full[0].header.chain_id();
  EXPECT_NE(chain, 0u);
  client_internal::HeldModel held1;
  ASSERT_THAT(Assemble(Messages(*v1), 4, f32, nullptr, &held1), IsOk());
  EXPECT_THAT(held1.params, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(held1.chain_id, chain);

  auto v2 = downloads.Get(Snapshot(2, {1.5, 2, 3, 2}), kF32, kTopk, 1, chain);
  ASSERT_THAT(v2, IsOk());
  std::vector<Segment> delta = Parse(*v2);
  ASSERT_EQ(delta.size(), 1u);
  EXPECT_EQ(delta[0].header.codec(), kTopk);
  EXPECT_EQ(delta[0].header.base_version(), 1u);
  EXPECT_EQ(delta[0].header.version(), 2u);
  EXPECT_EQ(delta[0].header.codec_params().k(), 1u);
  // n = 1, index 3, f32(-2) = 00 00 00 c0.
  EXPECT_EQ(delta[0].payload, std::string("\x01\x03\x00\x00\x00\xc0", 6));
  absl::StatusOr<Model> m2 = Assemble(Messages(*v2), 4, f32, &held1);
  ASSERT_THAT(m2, IsOk());
  EXPECT_THAT(m2->params, ElementsAre(1, 2, 3, 2));
  EXPECT_EQ(m2->deltas, 1u);
  // A full download of v2 is R2 too, not M.
  auto v2_full = downloads.Get(Snapshot(2, {1.5, 2, 3, 2}), kF32, kTopk, 0, 0);
  EXPECT_THAT(Floats(Parse(*v2_full)[0].payload), ElementsAre(1, 2, 3, 2));

  auto v3 = downloads.Get(Snapshot(3, {1.5, 2, 3, 2}), kF32, kTopk, 1, chain);
  ASSERT_THAT(v3, IsOk());
  std::vector<Segment> chain13 = Parse(*v3);  // 12 bytes < 16 of the full model.
  ASSERT_EQ(chain13.size(), 2u);
  EXPECT_EQ(chain13[1].header.base_version(), 2u);
  EXPECT_EQ(chain13[1].payload, std::string("\x01\x00\x00\x00\x00\x3f", 6));  // (0, 0.5)
  absl::StatusOr<Model> m3 = Assemble(Messages(*v3), 4, f32, &held1);
  ASSERT_THAT(m3, IsOk());
  EXPECT_THAT(m3->params, ElementsAre(1.5, 2, 3, 2));
  EXPECT_EQ(m3->version, 3u);
  EXPECT_EQ(m3->deltas, 2u);
  EXPECT_EQ(m3->payload_bytes, 12u);

  // Another chain's version 1, the current version, or nothing: the full model.
  for (auto [have, have_chain] :
       {std::pair<uint64_t, uint64_t>{1, chain + 1}, {3, chain}, {0, 0}}) {
    auto answer = downloads.Get(Snapshot(3, {1.5, 2, 3, 2}), kF32, kTopk, have, have_chain);
    ASSERT_THAT(answer, IsOk());
    std::vector<Segment> parsed = Parse(*answer);
    ASSERT_EQ(parsed.size(), 1u) << have;
    EXPECT_EQ(parsed[0].header.base_version(), 0u);
  }
  // Without deltas the float32 channel is the exact model.
  auto exact = downloads.Get(Snapshot(3, {1.5, 2, 3, 2}), kF32, kUnspecified, 0, 0);
  EXPECT_FALSE(Parse(*exact)[0].header.delta_base());
}

TEST(ModelDownloadsTest, DeltaHistoryBoundsHowFarBackAClientGetsDeltas) {
  DownloadCodecs codecs = Codecs({}, TopK(1));
  codecs.delta_history = 1;
  ModelDownloads downloads(Spec(4), 1024, codecs);
  auto v1 = downloads.Get(Snapshot(1, {1, 2, 3, 4}), kF32, kTopk, 0, 0);
  const uint64_t chain = Parse(*v1)[0].header.chain_id();
  ASSERT_THAT(downloads.Get(Snapshot(2, {1, 2, 3, 5}), kF32, kTopk, 1, chain), IsOk());
  auto v3 = downloads.Get(Snapshot(3, {1, 2, 3, 6}), kF32, kTopk, 1, chain);
  EXPECT_EQ(Parse(*v3)[0].header.base_version(), 0u);  // Only 2 -> 3 is kept.
  auto from2 = downloads.Get(Snapshot(3, {1, 2, 3, 6}), kF32, kTopk, 2, chain);
  EXPECT_EQ(Parse(*from2)[0].header.base_version(), 2u);
}

// float16 models with int8 deltas over 30 versions of a drifting model: the
// client that only ever applies deltas holds, bit for bit, what a full
// download gives, every value is a float16, and the error stays bounded.
TEST(ModelDownloadsTest, Float16ChainWithInt8DeltasDoesNotDrift) {
  constexpr size_t d = 1000;
  const compress::CodecSpec int8 = compress::DefaultSpec(compress::CodecId::kInt8);
  const compress::CodecSpec f16 = compress::DefaultSpec(compress::CodecId::kFloat16);
  ModelDownloads downloads(Spec(d), 700, Codecs({compress::CodecId::kFloat16}, int8));
  std::vector<float> model(d);
  for (size_t j = 0; j < d; ++j) model[j] = std::sin(0.37f * j);
  client_internal::HeldModel held;
  for (uint64_t version = 1; version <= 30; ++version) {
    for (size_t j = 0; j < d; ++j) model[j] += 1e-3f * std::cos(0.11f * j * version);
    SnapshotRef snapshot = Snapshot(version, model);
    auto answer = downloads.Get(snapshot, kF16, tally::v1::CODEC_INT8, held.version, held.chain_id);
    ASSERT_THAT(answer, IsOk());
    if (version > 1) {
      ASSERT_EQ(Parse(*answer)[0].header.base_version(), version - 1);
    }
    client_internal::HeldModel next;
    absl::StatusOr<Model> pulled = Assemble(Messages(*answer), d, f16, &held, &next);
    ASSERT_THAT(pulled, IsOk());
    held = next;
    auto full = downloads.Get(snapshot, kF16, tally::v1::CODEC_INT8, 0, 0);
    absl::StatusOr<Model> fresh = Assemble(Messages(*full), d, f16, nullptr);
    ASSERT_THAT(fresh, IsOk());
    ASSERT_EQ(std::memcmp(pulled->params.data(), fresh->params.data(), d * 4), 0) << version;
    float worst = 0;
    for (size_t j = 0; j < d; ++j) {
      worst = std::max(worst, std::abs(pulled->params[j] - model[j]));
      const float x = pulled->params[j];
      std::string half;
      ASSERT_THAT(compress::Encode(f16, {&x, 1}, &half), IsOk());
      float back = 0;
      ASSERT_THAT(compress::Decode(f16, half, {&back, 1}), IsOk());
      ASSERT_EQ(back, x);
    }
    // |model| < 1.03: a float16 step is at most 2^-10, half of it 4.9e-4; an
    // int8 step of a per-version change below 2e-3 (plus the carried error)
    // is below 1e-4. Drift would grow with the version.
    EXPECT_LT(worst, 7e-4f) << version;
  }
}

TEST(ModelDownloadsTest, RefusesCodecsItDoesNotServe) {
  ModelDownloads downloads(Spec(4), 1024,
                           Codecs({compress::CodecId::kInt8, compress::CodecId::kFloat16},
                                  compress::DefaultSpec(compress::CodecId::kInt8)));
  SnapshotRef snapshot = Snapshot(1, {1, 2, 3, 4});
  EXPECT_THAT(downloads.Get(snapshot, kInt8, kUnspecified, 0, 0), IsOk());
  EXPECT_THAT(downloads.Get(snapshot, kF16, kInt8, 0, 0), IsOk());
  EXPECT_THAT(downloads.Get(snapshot, kF32, kInt8, 0, 0), IsOk());  // float32 always.
  // int8 models do not chain; top-k is not the delta codec; bfloat16 not offered.
  EXPECT_THAT(downloads.Get(snapshot, kInt8, kInt8, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CODEC_INT8 deltas")));
  EXPECT_THAT(downloads.Get(snapshot, kF16, kTopk, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(downloads.Get(snapshot, tally::v1::CODEC_BFLOAT16, kUnspecified, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CODEC_BFLOAT16 models")));
}

// --- The SDK's side of bad streams ----------------------------------------------------------

tally::v1::ModelChunk Header(tally::v1::Codec codec, uint64_t payload_bytes, uint64_t version = 2,
                             uint64_t base_version = 0, uint64_t chain_id = 0) {
  tally::v1::ModelChunk chunk;
  tally::v1::ModelHeader* h = chunk.mutable_header();
  *h->mutable_model_spec() = Spec(4);
  h->set_codec(codec);
  h->set_payload_bytes(payload_bytes);
  h->set_version(version);
  h->set_base_version(base_version);
  h->set_chain_id(chain_id);
  if (codec == kTopk) h->mutable_codec_params()->set_k(1);
  return chunk;
}

tally::v1::ModelChunk Data(std::string bytes, uint64_t offset = 0) {
  tally::v1::ModelChunk chunk;
  chunk.set_data(std::move(bytes));
  chunk.set_offset(offset);
  return chunk;
}

TEST(ModelAssemblerTest, RefusesMalformedStreams) {
  const compress::CodecSpec f32 = compress::DefaultSpec(compress::CodecId::kFloat32);
  client_internal::HeldModel held{1, 77, {1, 2, 3, 4}};
  auto assemble = [&](std::vector<tally::v1::ModelChunk> messages) {
    return Assemble(messages, 4, f32, &held).status();
  };
  // A delta from a version or chain this client does not hold.
  EXPECT_THAT(assemble({Header(kTopk, 6, 2, 5, 77), Data(std::string("\x01\x03\0\0\0\xc0", 6))}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not hold")));
  EXPECT_THAT(assemble({Header(kTopk, 6, 2, 1, 78), Data(std::string("\x01\x03\0\0\0\xc0", 6))}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not hold")));
  // The same delta on the held model works: (1, 2, 3, 4) + (0, 0, 0, -2).
  absl::StatusOr<Model> ok = Assemble(
      {Header(kTopk, 6, 2, 1, 77), Data(std::string("\x01\x03\0\0\0\xc0", 6))}, 4, f32, &held);
  ASSERT_THAT(ok, IsOk());
  EXPECT_THAT(ok->params, ElementsAre(1, 2, 3, 2));
  // Index 9 of 4 parameters.
  EXPECT_THAT(assemble({Header(kTopk, 6, 2, 1, 77), Data(std::string("\x01\x09\0\0\0\xc0", 6))}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("model delta")));
  // Top-1 of 4 parameters is at most 1 + 10 + 4 bytes (varints of up to 10 bytes).
  EXPECT_THAT(assemble({Header(kTopk, 1000, 2, 1, 77)}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("payload_bytes mismatch")));
  EXPECT_THAT(assemble({Header(kF32, 12)}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("payload_bytes mismatch")));
  EXPECT_THAT(assemble({Header(static_cast<tally::v1::Codec>(42), 8)}),
              StatusIs(absl::StatusCode::kUnimplemented));
  // A float16 payload that ends early; data after a whole segment.
  EXPECT_THAT(assemble({Header(kF16, 8), Data("abcd")}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("after 4 of 8")));
  EXPECT_THAT(assemble({Header(kF16, 8), Data("abcdefgh"), Data("x", 8)}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("segment header")));
  EXPECT_THAT(assemble({}), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(DownloadConfigTest, ChecksRolesDuplicatesAndHistory) {
  tally::v1::ServerConfig config;
  auto* compression = config.mutable_compression();
  compression->add_download()->set_codec("float16");
  compression->add_download()->set_codec("int8");
  compression->mutable_download_delta()->set_codec("topk");
  compression->mutable_download_delta()->mutable_params()->set_ratio(0.1f);
  compression->set_delta_history(4);
  absl::StatusOr<DownloadCodecs> codecs = DownloadCodecsFromConfig(config, 100);
  ASSERT_THAT(codecs, IsOk());
  ASSERT_EQ(codecs->full.size(), 2u);
  EXPECT_EQ(codecs->full[1].id, compress::CodecId::kInt8);
  EXPECT_EQ(codecs->delta->id, compress::CodecId::kTopK);
  EXPECT_EQ(codecs->delta_history, 4u);

  tally::v1::ServerConfig bad = config;
  bad.mutable_compression()->mutable_download(0)->set_codec("qsgd");
  EXPECT_THAT(DownloadCodecsFromConfig(bad, 100),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("compression.download[0].codec: 'qsgd' is not one of float32, "
                                 "float16, bfloat16, int8")));
  bad = config;
  bad.mutable_compression()->mutable_download(1)->set_codec("float16");
  EXPECT_THAT(DownloadCodecsFromConfig(bad, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
  bad = config;
  bad.mutable_compression()->mutable_download_delta()->set_codec("randk");
  EXPECT_THAT(DownloadCodecsFromConfig(bad, 100),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("compression.download_delta.codec: 'randk'")));
  bad = config;
  bad.mutable_compression()->mutable_download_delta()->mutable_params()->set_ratio(2);
  EXPECT_THAT(
      DownloadCodecsFromConfig(bad, 100),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("compression.download_delta.params")));
  bad = config;
  bad.mutable_compression()->set_delta_history(5000);
  EXPECT_THAT(DownloadCodecsFromConfig(bad, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("delta_history")));
}

}  // namespace
}  // namespace tally::server
