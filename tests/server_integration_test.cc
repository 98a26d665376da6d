// Integration tests: a real tally server on 127.0.0.1:0, the real C++ SDK,
// and raw gRPC stubs for the malformed input the SDK refuses to send.
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/sync.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/checkpoint.h"
#include "server/server.h"
#include "tally/client.h"
#include "tally/v1/tally.grpc.pb.h"
#include "tests/raw_client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

// Each client: Join, GetTask, and push `delta` for the task's round.
absl::StatusOr<PushResult> TrainAndPush(Client& client, const std::vector<float>& delta,
                                        uint64_t samples, const std::string& update_id = "") {
  TALLY_ASSIGN_OR_RETURN(JoinResult join, client.Join());
  (void)join;
  TALLY_ASSIGN_OR_RETURN(Task task, client.GetTask(absl::Seconds(10)));
  if (task.kind != Task::Kind::kTrain) return absl::InternalError("expected a TRAIN task");
  Update update;
  update.round = task.round;
  update.base_version = task.model_version;
  update.num_samples = samples;
  update.delta = delta;
  update.update_id = update_id;
  return client.PushUpdate(update);
}

TEST(ServerIntegrationTest, ThreeClientRoundEqualsTheHandComputedWeightedMean) {
  auto h = Harness::Start({4}, 3, 3);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), b = h->NewClient("b"), c = h->NewClient("c");
  // (10*[1,2,3,4] + 20*[0,0,3,3] + 10*[4,0,-3,0]) / 40 = [1.25, 0.5, 1.5, 2.5].
  std::thread ta([&] { EXPECT_THAT(TrainAndPush(*a, {1, 2, 3, 4}, 10), IsOk()); });
  std::thread tb([&] { EXPECT_THAT(TrainAndPush(*b, {0, 0, 3, 3}, 20), IsOk()); });
  std::thread tc([&] { EXPECT_THAT(TrainAndPush(*c, {4, 0, -3, 0}, 10), IsOk()); });
  ta.join();
  tb.join();
  tc.join();
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  EXPECT_EQ(model.version, 2u);
  EXPECT_EQ(model.round, 1u);
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-6), {1.25f, 0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(h->Counter("tally_updates_accepted_total"), 3);
  EXPECT_EQ(h->Counter("tally_rounds_completed_total"), 1);
  EXPECT_EQ(h->Counter("tally_update_bytes_received_total"), 3 * 16);
  // Every puller of the version gets the same (shared, pre-encoded) bytes.
  TALLY_ASSERT_OK_AND_ASSIGN(Model from_b, b->PullModel(2));
  TALLY_ASSERT_OK_AND_ASSIGN(Model from_c, c->PullModel());
  EXPECT_EQ(from_b.params, model.params);
  EXPECT_EQ(from_c.params, model.params);
  EXPECT_EQ(h->Counter("tally_model_bytes_sent_total"), 3 * 16);
  EXPECT_THAT(a->PullModel(1), StatusIs(absl::StatusCode::kNotFound));  // Superseded.
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, a->GetServerStatus());
  EXPECT_EQ(status.model_version, 2u);
  EXPECT_EQ(status.rounds_completed, 1u);
  EXPECT_GT(status.peak_rss_bytes, 0u);
}

// Join assigns each SDK client the server's first preferred codec it offers;
// float32, top-2 and int8 updates in one round give the weighted mean of
// what the codecs carry.
TEST(ServerIntegrationTest, SdkClientsWithDifferentCodecsShareARound) {
  tally::v1::CompressionConfig compression;
  auto* topk = compression.add_upload();
  topk->set_codec("topk");
  topk->mutable_params()->set_k(2);
  compression.add_upload()->set_codec("int8");
  tally::v1::ServerConfig config = Harness::Config({4}, 3, 3);
  *config.mutable_compression() = compression;
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), b = h->NewClient("b", {"int8", "topk"}),
       c = h->NewClient("c", {"int8"});
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult ja, a->Join());
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult jb, b->Join());
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult jc, c->Join());
  EXPECT_EQ(ja.upload_codec, "float32");
  EXPECT_EQ(jb.upload_codec, "topk");  // The server's preference, not the client's order.
  EXPECT_EQ(jc.upload_codec, "int8");
  PushResult pushed_b;
  std::thread ta([&] { EXPECT_THAT(TrainAndPush(*a, {1, 2, 3, 4}, 10), IsOk()); });
  std::thread tb([&] {
    auto pushed = TrainAndPush(*b, {0.5f, -8, 0.25f, 6}, 20);  // Sends (0, -8, 0, 6).
    EXPECT_THAT(pushed, IsOk());
    if (pushed.ok()) pushed_b = *pushed;
  });
  // int8, one block: scale 0.01, q = (127, -62, 0, 13).
  std::thread tc([&] { EXPECT_THAT(TrainAndPush(*c, {1.27f, -0.62f, 0, 0.13f}, 10), IsOk()); });
  ta.join();
  tb.join();
  tc.join();
  // top-2 on the wire: count, two index varints, two float32 values.
  EXPECT_EQ(pushed_b.payload_bytes, 1u + 2u + 8u);
  EXPECT_EQ(h->Counter("tally_update_payload_bytes_total", "topk"), 11);
  EXPECT_EQ(h->Counter("tally_update_dense_bytes_total", "topk"), 16);
  EXPECT_EQ(h->Counter("tally_update_payload_bytes_total", "int8"), 4 + 4);  // Scale + 4 q.
  EXPECT_EQ(h->Counter("tally_update_payload_bytes_total", "float32"), 16);
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  // (10*(1,2,3,4) + 20*(0,-8,0,6) + 10*(1.27,-0.62,0,0.13)) / 40.
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-5), {0.5675f, -3.655f, 0.75f, 4.0325f}));
}

// Error feedback in the SDK: what top-1 drops from one update is sent with
// the next, so after two rounds the model is the sum of the true deltas,
// (3, 1) + (0, 0.5) = (3, 1.5); without it, (3, 0) + (0, 0.5).
TEST(ServerIntegrationTest, SdkErrorFeedbackSendsWhatCompressionDropped) {
  tally::v1::CompressionConfig compression;
  auto* topk = compression.add_upload();
  topk->set_codec("topk");
  topk->mutable_params()->set_k(1);
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  *config.mutable_compression() = compression;
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a", {"topk"});
  ASSERT_THAT(TrainAndPush(*a, {3, 1}, 1), IsOk());
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  ASSERT_THAT(TrainAndPush(*a, {0, 0.5f}, 1), IsOk());
  ASSERT_THAT(a->WaitForVersion(2, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-6), {3.0f, 1.5f}));
}

TEST(ServerIntegrationTest, RetriedUpdateIsADuplicateAndCountedOnce) {
  auto h = Harness::Start({2}, 2, 2);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), b = h->NewClient("b");
  TALLY_ASSERT_OK_AND_ASSIGN(PushResult first, TrainAndPush(*a, {8, 8}, 1, "update-1"));
  EXPECT_FALSE(first.duplicate);
  Update again;
  again.round = 1;
  again.base_version = 1;
  again.num_samples = 1;
  std::vector<float> delta = {8, 8};
  again.delta = delta;
  again.update_id = "update-1";
  TALLY_ASSERT_OK_AND_ASSIGN(PushResult second, a->PushUpdate(again));
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(h->Counter("tally_updates_duplicate_total"), 1);
  ASSERT_THAT(TrainAndPush(*b, {0, 0}, 1), IsOk());
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-6), {4.0f, 4.0f}));  // (8 + 0) / 2.
}

// Compressed downloads through the SDK: float16 models with top-1 deltas.
// Initial model zeros; client a pushes (0.1, -2.5, 0.5, 1000.7), then zeros
// twice (sgd, lr 1: the model is the sum). By hand, R = f16(R + top1(M - R)):
//   v1: R = 0                            (full float16: 8 bytes)
//   v2: M - R = M, top-1 = 1000.7 at 3   R = (0, 0, 0, 1000.5)
//   v3: M - R = (0.1, -2.5, 0.5, 0.2)    R = (0, -2.5, 0, 1000.5)
//   v4: M - R = (0.1, 0, 0.5, 0.2)       R = (0, -2.5, 0.5, 1000.5)
// A client that asks for float32 gets M exactly; one that joins late gets R.
TEST(ServerIntegrationTest, SdkPullsFloat16ModelsAndTopkDeltas) {
  tally::v1::ServerConfig config = Harness::Config({4}, 1, 1);
  config.mutable_compression()->add_download()->set_codec("float16");
  config.mutable_compression()->mutable_download_delta()->set_codec("topk");
  config.mutable_compression()->mutable_download_delta()->mutable_params()->set_k(1);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), exact = h->NewClient("exact", {}, {{"float32"}});
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult ja, a->Join());
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult je, exact->Join());
  EXPECT_EQ(ja.download_codec, "float16");
  EXPECT_EQ(ja.delta_codec, "topk");
  EXPECT_EQ(je.download_codec, "float32");
  EXPECT_EQ(je.delta_codec, "");

  TALLY_ASSERT_OK_AND_ASSIGN(Model v1, a->PullModel());
  EXPECT_EQ(v1.version, 1u);
  EXPECT_EQ(v1.payload_bytes, 8u);
  EXPECT_EQ(v1.deltas, 0u);
  const std::vector<std::vector<float>> pushes = {
      {0.1f, -2.5f, 0.5f, 1000.7f}, {0, 0, 0, 0}, {0, 0, 0, 0}};
  const std::vector<std::vector<float>> expected = {
      {0, 0, 0, 1000.5f}, {0, -2.5f, 0, 1000.5f}, {0, -2.5f, 0.5f, 1000.5f}};
  for (size_t i = 0; i < pushes.size(); ++i) {
    ASSERT_THAT(TrainAndPush(*a, pushes[i], 1), IsOk());
    ASSERT_THAT(a->WaitForVersion(i + 1, absl::Seconds(30)), IsOk());
    TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
    EXPECT_EQ(model.version, i + 2);
    EXPECT_EQ(model.deltas, 1u);
    EXPECT_EQ(model.payload_bytes, 6u);  // n, index, f32 value.
    EXPECT_EQ(model.params, expected[i]) << "version " << model.version;
  }
  TALLY_ASSERT_OK_AND_ASSIGN(Model m, exact->PullModel());
  EXPECT_EQ(m.params, std::vector<float>({0.1f, -2.5f, 0.5f, 1000.7f}));
  EXPECT_EQ(m.payload_bytes, 16u);
  auto late = h->NewClient("late");
  ASSERT_THAT(late->Join(), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model r, late->PullModel());
  EXPECT_EQ(r.params, expected.back());
  EXPECT_EQ(r.deltas, 0u);

  EXPECT_EQ(h->Counter("tally_model_payload_bytes_total", {{"codec", "float16"}, {"kind", "full"}}),
            16);
  EXPECT_EQ(h->Counter("tally_model_payload_bytes_total", {{"codec", "topk"}, {"kind", "delta"}}),
            18);
  EXPECT_EQ(h->Counter("tally_model_dense_bytes_total", {{"codec", "topk"}, {"kind", "delta"}}),
            48);
  EXPECT_EQ(h->Counter("tally_model_payload_bytes_total", {{"codec", "float32"}, {"kind", "full"}}),
            16);
  EXPECT_EQ(h->Counter("tally_model_bytes_sent_total"), 16 + 18 + 16);
}

// DGC through the SDK, by hand (momentum 0.9, ratio 0.2: top-2 of the six
// entries of w [2, 3]; b [2] goes exactly). Step 1, g = w (1, -5, 0.5, 2, 0, 0)
// b (0.3, -0.3): u = v = g, sends w1 = -5, w3 = 2 and b; masking zeroes u
// and v there: u = v = (1, 0, 0.5, 0, 0, 0). Step 2, g = 0: u = 0.9 u =
// (0.9, 0, 0.45, 0, 0, 0), v = v + u = (1.9, 0, 0.95, 0, 0, 0): sends w0 = 1.9,
// w2 = 0.95 and b = 0. Zero initial model, sgd lr 1: the model is the sum.
TEST(ServerIntegrationTest, SdkDgcSendsMomentumCorrectedTopK) {
  tally::v1::ServerConfig config = Harness::Config({2, 3}, 1, 1);
  auto* b = config.mutable_model()->add_tensors();
  b->set_name("b");
  b->add_shape(2);
  config.mutable_compression()->add_upload()->set_codec("topk");
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  ClientOptions options;
  options.target = h->target;
  options.client_id = "dgc";
  options.dgc = DgcSettings{};
  options.dgc->momentum = 0.9f;       // The reference's (the SDK's default is 0).
  options.dgc->compress_ratio = 0.2;  // k = ceil(6 * 0.2) = 2.
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  TALLY_ASSERT_OK_AND_ASSIGN(PushResult first,
                             TrainAndPush(*client, {1, -5, 0.5f, 2, 0, 0, 0.3f, -0.3f}, 1));
  // n = 4, indices 1, 3, 6, 7 as 1, +1, +2, +0, four float32 values.
  EXPECT_EQ(first.payload_bytes, 5u + 16u);
  ASSERT_THAT(client->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model m1, client->PullModel());
  EXPECT_THAT(m1.params,
              Pointwise(FloatNear(1e-6), std::vector<float>{0, -5, 0, 2, 0, 0, 0.3f, -0.3f}));
  ASSERT_THAT(TrainAndPush(*client, {0, 0, 0, 0, 0, 0, 0, 0}, 1), IsOk());
  ASSERT_THAT(client->WaitForVersion(2, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model m2, client->PullModel());
  EXPECT_THAT(m2.params, Pointwise(FloatNear(1e-6),
                                   std::vector<float>{1.9f, -5, 0.95f, 2, 0, 0, 0.3f, -0.3f}));

  // A server that does not take topk: Join says why.
  auto plain = Harness::Start(Harness::Config({2, 3}, 1, 1));
  ASSERT_NE(plain, nullptr);
  options.target = plain->target;
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> refused, Client::Create(options));
  EXPECT_THAT(refused->Join(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("compression.upload must list topk")));
  options.dgc->compress_ratio = 0;
  EXPECT_THAT(Client::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ClientOptions.dgc")));
}

// The example's model (examples/pytorch_digits.py, d = 2410). DGC at ratio
// 1.0 sends every entry as topk: n = 2410 (varint, 2 bytes), 2410 index
// gaps of 0 (1 byte each), 2410 float32 = 12052 bytes, more than a dense
// update (9640). tests/config_test.cc's DefaultUpdateLimitAdmitsEvery-
// CodecsWorstCase has the default limit by hand: 14574.
tally::v1::ServerConfig DigitsConfig() {
  tally::v1::ServerConfig config = Harness::Config({32, 64}, 1, 1);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> more = {
      {"b1", {32}}, {"w2", {10, 32}}, {"b2", {10}}};
  for (const auto& [name, shape] : more) {
    auto* t = config.mutable_model()->add_tensors();
    t->set_name(name);
    for (int64_t d : shape) t->add_shape(d);
  }
  config.mutable_compression()->add_upload()->set_codec("topk");
  return config;
}

ClientOptions DgcAtRatioOne(const std::string& target) {
  ClientOptions options;
  options.target = target;
  options.client_id = "dgc";
  options.dgc = DgcSettings{};
  options.dgc->compress_ratio = 1.0;
  return options;
}

TEST(ServerIntegrationTest, DefaultUpdateLimitAdmitsDgcAtRatioOne) {
  auto h = Harness::Start(DigitsConfig());
  ASSERT_NE(h, nullptr);
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client,
                             Client::Create(DgcAtRatioOne(h->target)));
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult join, client->Join());
  EXPECT_EQ(join.max_update_bytes, 14574u);
  const std::vector<float> delta(2410, 0.5f);
  TALLY_ASSERT_OK_AND_ASSIGN(PushResult pushed, TrainAndPush(*client, delta, 1));
  EXPECT_EQ(pushed.payload_bytes, 12052u);
  ASSERT_THAT(client->WaitForVersion(1, absl::Seconds(30)), IsOk());
  EXPECT_EQ(h->Counter("tally_updates_accepted_total"), 1);
}

// A limit below the update: the SDK refuses it at once, before sending
// (RESOURCE_EXHAUSTED naming both sizes, one call, nothing received), and a
// raw client that sends it anyway gets RESOURCE_EXHAUSTED from the server
// without a retry hint (so an SDK would not retry it either).
TEST(ServerIntegrationTest, OversizedUpdateFailsAtOnce) {
  tally::v1::ServerConfig config = DigitsConfig();
  config.mutable_limits()->set_max_update_bytes(9640);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client,
                             Client::Create(DgcAtRatioOne(h->target)));
  const std::vector<float> delta(2410, 0.5f);
  const absl::StatusOr<PushResult> pushed = TrainAndPush(*client, delta, 1);
  EXPECT_THAT(pushed, StatusIs(absl::StatusCode::kResourceExhausted,
                               AllOf(HasSubstr("12052 bytes"),
                                     HasSubstr("limits.max_update_bytes = 9640"))));
  EXPECT_FALSE(RetryAfter(pushed.status()).has_value());
  EXPECT_EQ(h->Counter("tally_updates_received_total"), 0);
  EXPECT_EQ(h->Counter("tally_update_bytes_received_total"), 0);

  RawClient raw(h->target, "raw");
  tally::v1::UpdateHeader header = raw.Header("big");
  header.set_codec(tally::v1::CODEC_TOPK);
  header.mutable_codec_params()->set_k(2410);
  header.set_payload_bytes(12052);
  const grpc::Status refused = raw.Push(header, {std::string(12052, '\0')});
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("limits.max_update_bytes = 9640"));
  EXPECT_TRUE(refused.error_details().empty());  // No RetryInfo: not retried.
}

// The drain of SIGTERM (Server::Shutdown): new uploads get UNAVAILABLE, the
// upload already streaming finishes and is acknowledged, and the final
// checkpoint is written after it, holding the round it completed.
TEST(ServerIntegrationTest, ShutdownDrainsTheRunningUploadThenCheckpoints) {
  const std::string dir = ::testing::TempDir() + "/drain_checkpoint";
  std::system(("rm -rf '" + dir + "'").c_str());
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.set_checkpoint_dir(dir);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a"), b(h->target, "b");
  // a streams its header and first float; the second comes during the drain.
  grpc::ClientContext ctx;
  tally::v1::PushUpdateResponse response;
  auto writer = a.stub().PushUpdate(&ctx, &response);
  tally::v1::UpdateChunk msg;
  *msg.mutable_header() = a.Header("a-1");
  ASSERT_TRUE(writer->Write(msg));
  const float values[2] = {1.0f, 2.0f};
  msg.set_data(std::string(reinterpret_cast<const char*>(&values[0]), 4));
  msg.set_offset(0);
  ASSERT_TRUE(writer->Write(msg));
  // The server is inside a's upload once it has counted that chunk (a call
  // it had not yet accepted would be refused by the drain, as b's is).
  const char* kReceived = "tally_update_bytes_received_total";
  for (int i = 0; i < 2000 && h->Counter(kReceived) < 4; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(h->Counter(kReceived), 4);

  std::thread stopper([&] { h->server->Shutdown(absl::Seconds(60)); });
  // b (the round is a's alone) is turned away as "full" until the drain
  // begins, then with UNAVAILABLE.
  grpc::Status refused;
  const std::string b_update(8, '\0');
  for (int i = 0; i < 2000; ++i) {
    refused = b.Push(b.Header("b-1"), {b_update});
    if (refused.error_code() == grpc::StatusCode::UNAVAILABLE) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  msg.set_data(std::string(reinterpret_cast<const char*>(&values[1]), 4));
  msg.set_offset(4);
  ASSERT_TRUE(writer->Write(msg));
  ASSERT_TRUE(writer->WritesDone());
  const grpc::Status finished = writer->Finish();
  EXPECT_TRUE(finished.ok()) << finished.error_message();
  stopper.join();

  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  TALLY_ASSERT_OK_AND_ASSIGN(auto checkpoint, server::ReadCheckpoint(dir, layout));
  ASSERT_TRUE(checkpoint.has_value());
  EXPECT_EQ(checkpoint->version, 2u);
  EXPECT_THAT(checkpoint->params, ElementsAre(1.0f, 2.0f));
  ASSERT_EQ(checkpoint->applied.size(), 1u);
  EXPECT_EQ(checkpoint->applied[0].second, std::vector<std::string>{"a-1"});
}

TEST(ServerIntegrationTest, MalformedUpdatesAreRejectedAndTheServerKeepsServing) {
  auto h = Harness::Start({4}, 2, 2);
  ASSERT_NE(h, nullptr);
  RawClient bad(h->target, "mallory");
  const float nan = std::numeric_limits<float>::quiet_NaN();

  tally::v1::UpdateHeader wrong_hash = bad.Header("h1");
  wrong_hash.set_layout_hash(wrong_hash.layout_hash() + 1);
  grpc::Status s = bad.Push(wrong_hash, {Floats({1, 1, 1, 1})});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("layout"));

  tally::v1::UpdateHeader wrong_length = bad.Header("h2");
  wrong_length.set_payload_bytes(20);
  EXPECT_EQ(bad.Push(wrong_length, {Floats({1, 1, 1, 1, 1})}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  s = bad.Push(bad.Header("h3"), {Floats({1, 1, 1, 1, 1})});  // Longer than declared.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  s = bad.Push(bad.Header("h4"), {Floats({1, 1}), Floats({nan, 1})});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("non-finite"));

  s = bad.Push(bad.Header("h5"), {Floats({1, 1})});  // Truncated: stream ends early.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("truncated"));

  s = bad.Push(bad.Header("h6"), {"abc"});  // Not whole floats.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  tally::v1::UpdateHeader stale = bad.Header("h7");
  stale.set_round(9);
  EXPECT_EQ(bad.Push(stale, {Floats({1, 1, 1, 1})}).error_code(), grpc::StatusCode::ABORTED);

  tally::v1::UpdateHeader forged = bad.Header("h8");
  forged.set_session_token("not-a-token");
  EXPECT_EQ(bad.Push(forged, {Floats({1, 1, 1, 1})}).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  {  // No header at all.
    grpc::ClientContext ctx;
    tally::v1::PushUpdateResponse response;
    auto writer = bad.stub().PushUpdate(&ctx, &response);
    tally::v1::UpdateChunk chunk;
    chunk.set_data(Floats({1}));
    writer->Write(chunk);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "layout_mismatch"), 1);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "non_finite"), 1);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "length"), 3);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "stale"), 1);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "unauthenticated"), 1);
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "malformed"), 2);

  // The model is untouched and honest clients still complete a round.
  auto a = h->NewClient("a"), b = h->NewClient("b");
  ASSERT_THAT(TrainAndPush(*a, {2, 4, 6, 8}, 1), IsOk());
  ASSERT_THAT(TrainAndPush(*b, {0, 0, 0, 0}, 1), IsOk());
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-6), {1, 2, 3, 4}));
}

TEST(ServerIntegrationTest, ClientDyingMidUploadNeitherBlocksNorCorruptsTheRound) {
  auto h = Harness::Start({1 << 20}, 2, 2);  // 4 MiB model, several chunks.
  ASSERT_NE(h, nullptr);
  {
    RawClient dying(h->target, "dying");
    grpc::ClientContext ctx;
    tally::v1::PushUpdateResponse response;
    auto writer = dying.stub().PushUpdate(&ctx, &response);
    tally::v1::UpdateChunk msg;
    *msg.mutable_header() = dying.Header("d1");
    ASSERT_TRUE(writer->Write(msg));
    std::vector<float> half(1 << 19, 1000.0f);
    msg.Clear();
    msg.set_offset(0);
    msg.set_data(Floats(half));
    ASSERT_TRUE(writer->Write(msg));
    // Wait until the server has folded the chunk in, then vanish.
    auto stats = h->NewClient("observer");
    for (int i = 0; i < 1000; ++i) {
      auto status = stats->GetServerStatus();
      if (status.ok() && status->bytes_received >= 4u << 19) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ctx.TryCancel();
    writer->Finish();
  }
  // Two honest clients fill the round; the dead one's half must not count.
  std::vector<float> ones(1 << 20, 1.0f), threes(1 << 20, 3.0f);
  auto a = h->NewClient("a"), b = h->NewClient("b");
  std::thread ta([&] { EXPECT_THAT(TrainAndPush(*a, ones, 1), IsOk()); });
  std::thread tb([&] { EXPECT_THAT(TrainAndPush(*b, threes, 1), IsOk()); });
  ta.join();
  tb.join();
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  for (size_t i = 0; i < model.params.size(); ++i) {
    ASSERT_NEAR(model.params[i], 2.0f, 1e-4) << "at " << i;
  }
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "cancelled"), 1);
}

// The server answers RESOURCE_EXHAUSTED with a retry hint while an earlier
// upload of the same client is still streaming (one at a time per client);
// the SDK waits and retries with the same update id until it goes through.
TEST(ServerIntegrationTest, SdkRetriesABusyClientWithTheSameUpdateId) {
  auto h = Harness::Start({4}, 1, 1);
  ASSERT_NE(h, nullptr);
  RawClient stale(h->target, "edge");
  grpc::ClientContext ctx;
  tally::v1::PushUpdateResponse response;
  auto writer = stale.stub().PushUpdate(&ctx, &response);
  tally::v1::UpdateChunk msg;
  *msg.mutable_header() = stale.Header("old-stream");
  ASSERT_TRUE(writer->Write(msg));
  // The server has begun that upload once it counted its header (the count
  // and the registration happen under one lock).
  for (int i = 0; i < 2000 && h->Counter("tally_updates_received_total") < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(h->Counter("tally_updates_received_total"), 1);
  // The old process leaves (its stream stays open), so that a new one may
  // join under the id: a live session is never taken over (server/sessions.h).
  grpc::ClientContext leave_ctx;
  tally::v1::LeaveRequest leave;
  leave.set_client_id("edge");
  leave.set_session_token(stale.token());
  tally::v1::LeaveResponse left;
  ASSERT_TRUE(stale.stub().Leave(&leave_ctx, leave, &left).ok());

  ClientOptions options;
  options.target = h->target;
  options.client_id = "edge";  // Same client: a new session, same identity.
  options.max_attempts = 50;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(100);
  TALLY_ASSERT_OK_AND_ASSIGN(auto client, Client::Create(options));
  ASSERT_THAT(client->Join(), IsOk());
  absl::StatusOr<PushResult> pushed;
  std::thread pusher([&] {
    std::vector<float> delta = {1, 2, 3, 4};
    Update update;
    update.round = 1;
    update.base_version = 1;
    update.delta = delta;
    update.update_id = "retried";
    pushed = client->PushUpdate(update);
  });
  // Once the SDK has been turned away at least once, the old stream dies.
  for (int i = 0; i < 2000 && h->Counter("tally_updates_rejected_total", "overloaded") < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GE(h->Counter("tally_updates_rejected_total", "overloaded"), 1);
  ctx.TryCancel();
  writer->Finish();
  pusher.join();
  ASSERT_THAT(pushed, IsOk());
  EXPECT_GE(pushed->attempts, 2u);
  EXPECT_EQ(pushed->update_id, "retried");
  ASSERT_THAT(client->WaitForVersion(1, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, client->PullModel());
  EXPECT_THAT(model.params, Pointwise(FloatNear(1e-6), {1, 2, 3, 4}));
}

// Runs one round in which client i pushes rows[i] and returns the new model.
std::vector<float> RobustRound(Harness& h, const std::vector<std::vector<float>>& rows) {
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < rows.size(); ++i) clients.push_back(h.NewClient("c" + std::to_string(i)));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < rows.size(); ++i) {
    threads.emplace_back([&, i] {
      // Sample counts differ on purpose: robust rules ignore them.
      EXPECT_THAT(TrainAndPush(*clients[i], rows[i], 1 + 10 * i), IsOk());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_THAT(clients[0]->WaitForVersion(1, absl::Seconds(30)), IsOk());
  auto model = clients[0]->PullModel();
  EXPECT_THAT(model, IsOk());
  return model.ok() ? model->params : std::vector<float>();
}

// docs/algorithms.md#krum (batch R-1): four honest updates and (10, -10).
// The reference Krum (f = 1, nnm_mixing: false) selects (1, 1); with its
// default nnm mixing, Krum selects the mean of the four honest updates
// (1.025, 1.05), and all four count. FedAvg would move to (2.82, -1.16).
TEST(ServerIntegrationTest, KrumRoundThroughTheServerDropsTheAttacker) {
  const std::vector<std::vector<float>> rows = {
      {1, 1}, {1.2f, 0.8f}, {0.8f, 1.1f}, {1.1f, 1.3f}, {10, -10}};
  for (const bool mixing : {false, true}) {
    SCOPED_TRACE(mixing ? "nnm_mixing: true" : "nnm_mixing: false");
    tally::v1::StrategyConfig strategy;
    strategy.set_rule("krum");
    strategy.set_f(1);
    if (!mixing) strategy.set_nnm_mixing(false);
    auto h = Harness::Start({2}, 5, 5, 600000, strategy);
    ASSERT_NE(h, nullptr);
    const std::vector<float> model = RobustRound(*h, rows);
    EXPECT_THAT(model, Pointwise(FloatNear(1e-6), mixing ? std::vector<float>{1.025f, 1.05f}
                                                         : std::vector<float>{1.0f, 1.0f}));
    // The attacker is rejected; the reference Krum keeps c0 alone, the mixed
    // one the four honest clients whose mean it selected.
    EXPECT_EQ(h->Counter("tally_rule_client_updates_total", "c4"), 1);
    EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", "c4"), 1);
    EXPECT_EQ(h->Counter("tally_rule_client_influence_total", "c4"), 0);
    for (const char* honest : {"c0", "c1", "c2", "c3"}) {
      const bool counts = mixing || std::string(honest) == "c0";
      EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", honest), counts ? 0 : 1)
          << honest;
      EXPECT_EQ(h->Counter("tally_rule_client_influence_total", honest), counts ? 1 : 0)
          << honest;
    }
  }
}

// docs/algorithms.md#flag-worked-examples FA-1: deltas (1,0,0), (2,0,0), (0,5,0) aggregate to
// (2, 0, 0) with the deterministic start and the reference's scale, r = 1
// (raw mean: (1, 1.666667, 0)).
TEST(ServerIntegrationTest, FlagAggregatorRoundThroughTheServer) {
  tally::v1::StrategyConfig strategy;
  strategy.set_rule("flag");
  strategy.set_flag_r(1);
  strategy.set_flag_scale("reference");
  auto h = Harness::Start({3}, 3, 3, 600000, strategy);
  ASSERT_NE(h, nullptr);
  const std::vector<float> model = RobustRound(*h, {{1, 0, 0}, {2, 0, 0}, {0, 5, 0}});
  EXPECT_THAT(model, Pointwise(FloatNear(1e-5), {2.0f, 0.0f, 0.0f}));
  // a = 1·x_0 + 1·x_1 + 0·x_2: the orthogonal update is down-weighted to 0.
  EXPECT_NEAR(h->Counter("tally_rule_client_influence_total", "c2"), 0.0, 1e-9);
  EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", "c2"), 1);
  EXPECT_NEAR(h->Counter("tally_rule_client_influence_total", "c1"), 1.0, 1e-9);
}

// Three honest updates along e1 and one attacker pulling along -e2: the
// normalised scatter is 3·e1e1ᵀ + e2e2ᵀ, so Flag (r = 1, deterministic
// start) projects the mean of the normalised updates (3/4, -1/4) on e1,
// (3/4, 0), and scales it by the median norm (2 + 3)/2: (1.875, 0). The
// plain mean would be (1.5, -1.25).
TEST(ServerIntegrationTest, FlagAggregatorRoundWithAnAttackerThroughTheServer) {
  tally::v1::StrategyConfig strategy;
  strategy.set_rule("flag");
  strategy.set_flag_r(1);
  strategy.set_f(1);
  auto h = Harness::Start({2}, 4, 4, 600000, strategy);
  ASSERT_NE(h, nullptr);
  const std::vector<float> model = RobustRound(*h, {{1, 0}, {2, 0}, {3, 0}, {0, -5}});
  EXPECT_THAT(model, Pointwise(FloatNear(1e-5), {1.875f, 0.0f}));
  EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", "c3"), 1);
  EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", "c0"), 0);
}

// MoNNA averages around the trusted client's update whatever the order in
// which the updates arrive. By hand, n = 6, f = 2, trusted (2, 1, 0) = c3:
// its 4 nearest (itself at 0, then (0.5,0.5,1) at 3.5, (1,0,2) at 6 and
// (0,1,2) at 8 squared distance) average to (0.875, 0.625, 1.25).
TEST(ServerIntegrationTest, MonnaAveragesAroundTheTrustedClient) {
  tally::v1::StrategyConfig strategy;
  strategy.set_rule("monna");
  strategy.set_f(2);
  strategy.set_trusted_client("c3");
  auto h = Harness::Start({3}, 6, 6, 600000, strategy);
  ASSERT_NE(h, nullptr);
  const std::vector<float> model =
      RobustRound(*h, {{0, 1, 2}, {1, 0, 2}, {0.5f, 0.5f, 1}, {2, 1, 0}, {5, 5, 5}, {5, 5, 6}});
  EXPECT_THAT(model, Pointwise(FloatNear(1e-5), {0.875f, 0.625f, 1.25f}));
  EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", "c4"), 1);
  EXPECT_EQ(h->Counter("tally_rule_client_rejections_total", "c3"), 0);
}

// NNM then trimmed mean over R-2 (n = 6, f = 2): (0.875, 0.625, 1.25).
TEST(ServerIntegrationTest, PreStepsThenRuleThroughTheServer) {
  tally::v1::StrategyConfig strategy;
  strategy.set_rule("trimmed_mean");
  strategy.add_pre("nnm");
  strategy.set_f(2);
  auto h = Harness::Start({3}, 6, 6, 600000, strategy);
  ASSERT_NE(h, nullptr);
  const std::vector<float> model =
      RobustRound(*h, {{0, 1, 2}, {1, 0, 2}, {0.5f, 0.5f, 1}, {2, 1, 0}, {5, 5, 5}, {5, 5, 6}});
  EXPECT_THAT(model, Pointwise(FloatNear(1e-5), {0.875f, 0.625f, 1.25f}));
}

TEST(ServerIntegrationTest, ModelOf256MegabytesRoundTrips) {
  constexpr int64_t kParams = int64_t{64} << 20;  // 64 Mi floats = 256 MiB.
  auto h = Harness::Start({kParams}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("big");
  std::vector<float> delta(kParams);
  for (int64_t i = 0; i < kParams; ++i) delta[i] = static_cast<float>(i % 1000) * 0.25f;
  TALLY_ASSERT_OK_AND_ASSIGN(PushResult pushed, TrainAndPush(*a, delta, 3));
  ASSERT_THAT(a->WaitForVersion(1, absl::Seconds(120)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, a->PullModel());
  ASSERT_EQ(model.params.size(), static_cast<size_t>(kParams));
  // One client: the weighted mean is its delta; the model started at zero.
  EXPECT_EQ(std::memcmp(model.params.data(), delta.data(), 4 * kParams), 0);
  EXPECT_EQ(h->Counter("tally_update_bytes_received_total"), 4.0 * kParams);
}

TEST(ServerIntegrationTest, GetTaskLongPollsAndWatchSeesNewVersions) {
  auto h = Harness::Start({2}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto a = h->NewClient("a"), b = h->NewClient("b");
  ASSERT_THAT(a->Join(), IsOk());
  ASSERT_THAT(b->Join(), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Task ta, a->GetTask());
  EXPECT_EQ(ta.kind, Task::Kind::kTrain);
  TALLY_ASSERT_OK_AND_ASSIGN(Task tb, b->GetTask());
  EXPECT_EQ(tb.kind, Task::Kind::kWait);  // The round's single slot is taken.

  std::vector<uint64_t> versions;
  std::thread watcher([&] {
    EXPECT_THAT(b->WatchModel(1, absl::Seconds(30),
                              [&](uint64_t version, uint64_t round) {
                                versions.push_back(version);
                                return false;  // One notice is enough.
                              }),
                IsOk());
  });
  absl::StatusOr<Task> polled;
  std::thread poller([&] { polled = b->GetTask(absl::Seconds(30)); });
  std::vector<float> delta = {1, 1};
  Update update;
  update.round = ta.round;
  update.base_version = ta.model_version;
  update.delta = delta;
  ASSERT_THAT(a->PushUpdate(update), IsOk());
  poller.join();
  watcher.join();
  ASSERT_THAT(polled, IsOk());
  EXPECT_EQ(polled->kind, Task::Kind::kTrain);  // Woken by round 2 opening.
  EXPECT_EQ(polled->round, 2u);
  EXPECT_EQ(polled->model_version, 2u);
  EXPECT_EQ(versions, std::vector<uint64_t>{2});
}

// grpc.health.v1 and server reflection, called with raw bytes through the
// generic stub (Debian ships neither proto): HealthCheckRequest{} is empty,
// HealthCheckResponse{status: SERVING} is 08 01; a reflection request
// {list_services: ""} is 3a 00.
TEST(ServerIntegrationTest, HealthAndReflectionServicesAnswer) {
  auto h = Harness::Start({2}, 1, 1);
  ASSERT_NE(h, nullptr);
  auto channel = grpc::CreateChannel(h->target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  {
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
    grpc::Slice empty("");
    request = grpc::ByteBuffer(&empty, 1);
    tally::Notification done;
    grpc::Status status;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = s;
                     done.Notify();
                   });
    done.WaitForNotification();
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (auto& slice : slices)
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    EXPECT_EQ(bytes, std::string("\x08\x01", 2));
  }
  {
    grpc::ClientContext ctx;
    grpc::CompletionQueue cq;
    auto call = stub.PrepareCall(
        &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    grpc::Slice list(std::string("\x3a\x00", 2));
    grpc::ByteBuffer request(&list, 1);
    call->Write(request, reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    grpc::ByteBuffer response;
    call->Read(&response, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (auto& slice : slices)
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    EXPECT_THAT(bytes, HasSubstr("tally.v1.Aggregator"));
    EXPECT_THAT(bytes, HasSubstr("tally.v1.Admin"));
    EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
    call->WritesDone(reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(5));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(5)) {
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
}

TEST(ServerIntegrationTest, RateLimitedUploadCarriesARetryHintToTheSdk) {
  server::ServerOptions options;
  options.config.set_listen_address("127.0.0.1:0");
  options.config.set_metrics_port(-1);
  options.config.mutable_rounds()->set_clients_per_round(1);
  options.config.mutable_limits()->set_client_uploads_per_minute(1);
  auto server = server::Server::Create(std::move(options));
  ASSERT_THAT(server, IsOk());
  ClientOptions client_options;
  client_options.target = "127.0.0.1:" + std::to_string((*server)->port());
  client_options.client_id = "a";
  client_options.max_attempts = 1;  // Return the refusal instead of waiting a minute.
  auto client = Client::Create(client_options);
  ASSERT_THAT(client, IsOk());
  std::vector<float> delta(330, 0.1f);
  ASSERT_THAT(TrainAndPush(**client, delta, 1), IsOk());  // Round 1; its one token.
  auto second = TrainAndPush(**client, delta, 1);         // Round 2, same minute.
  ASSERT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted));
  const std::optional<absl::Duration> hint = RetryAfter(second.status());
  ASSERT_TRUE(hint.has_value()) << second.status();
  EXPECT_GT(*hint, absl::ZeroDuration());  // A token a minute; the first was spent just now.
  EXPECT_LE(*hint, absl::Seconds(60));
}

}  // namespace
}  // namespace tally
