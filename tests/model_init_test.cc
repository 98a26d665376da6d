// model { init { file } } (server/model_init.h): the layout comes from the
// file at config time, a disagreeing tensors list is refused naming the
// first difference, and a real server on loopback serves exactly the file's
// values to the C++ SDK, unless a checkpoint wins.
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint.h"
#include "server/config.h"
#include "tally/model_file.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/model_init_test_", name);
}

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return out;
}

// A pretrained-looking safetensors file, built byte by byte: "conv.weight"
// F16 [2, 2], "bn.running_var" BF16 [2], "bn.num_batches_tracked" I64 [],
// "fc.bias" F32 [3].
std::string WriteModel(const std::string& name) {
  const std::string header =
      R"({"conv.weight":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
      R"("bn.running_var":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
      R"("bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[12,20]},)"
      R"("fc.bias":{"dtype":"F32","shape":[3],"data_offsets":[20,32]}})";
  // F16 0x3C00 1.0, 0xB800 -0.5, 0x4500 5.0, 0x0000 0; BF16 0x3F80 1.0,
  // 0x4049 3.140625; I64 300; F32 0.25, -4, 1e-3.
  const std::string data = Bytes<uint16_t>({0x3C00, 0xB800, 0x4500, 0x0000}) +
                           Bytes<uint16_t>({0x3F80, 0x4049}) + Bytes<int64_t>({300}) +
                           Bytes<float>({0.25f, -4.0f, 1e-3f});
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << Bytes<uint64_t>({header.size()}) << header << data;
  return path;
}

const std::vector<float> kValues = {1.0f,      -0.5f,  5.0f,  0.0f,  1.0f,
                                    3.140625f, 300.0f, 0.25f, -4.0f, 1e-3f};

tally::v1::ServerConfig FileConfig(const std::string& path) {
  tally::v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:0");
  config.set_metrics_port(-1);
  config.mutable_model()->mutable_init()->set_file(path);
  config.mutable_rounds()->set_clients_per_round(1);
  return config;
}

void AddTensor(tally::v1::ServerConfig* config, const std::string& name,
               std::vector<int64_t> shape) {
  auto* t = config->mutable_model()->add_tensors();
  t->set_name(name);
  for (int64_t d : shape) t->add_shape(d);
}

absl::Status Validate(tally::v1::ServerConfig config) {
  server::ApplyDefaults(&config);
  return server::ValidateConfig(config);
}

TEST(ModelInitTest, TheLayoutComesFromTheFile) {
  tally::v1::ServerConfig config = FileConfig(WriteModel("layout.safetensors"));
  server::ApplyDefaults(&config);
  ASSERT_THAT(server::ValidateConfig(config), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, server::LayoutFromConfig(config.model()));
  std::vector<std::string> names;
  for (const TensorLayout& t : layout.tensors()) names.push_back(t.name);
  EXPECT_THAT(names,
              ElementsAre("conv.weight", "bn.running_var", "bn.num_batches_tracked", "fc.bias"));
  EXPECT_THAT(layout.tensors()[0].shape, ElementsAre(2, 2));
  EXPECT_TRUE(layout.tensors()[2].shape.empty());
  EXPECT_EQ(layout.NumParams(), 10u);
  EXPECT_GE(config.limits().max_update_bytes(), 40u);  // Derived from the file's size.
}

TEST(ModelInitTest, AnAgreeingTensorsListIsAccepted) {
  tally::v1::ServerConfig config = FileConfig(WriteModel("agree.safetensors"));
  AddTensor(&config, "conv.weight", {2, 2});
  AddTensor(&config, "bn.running_var", {2});
  AddTensor(&config, "bn.num_batches_tracked", {});
  AddTensor(&config, "fc.bias", {3});
  EXPECT_THAT(Validate(config), IsOk());
}

TEST(ModelInitTest, ADisagreeingTensorsListIsRefusedNamingTheFirstDifference) {
  const std::string path = WriteModel("disagree.safetensors");
  tally::v1::ServerConfig shape = FileConfig(path);
  AddTensor(&shape, "conv.weight", {2, 2});
  AddTensor(&shape, "bn.running_var", {3});
  absl::Status status = Validate(shape);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("model.tensors[1]: the config lists 'bn.running_var' [3], "
                                     "model.init.file '",
                                     path, "' has 'bn.running_var' [2] there")));

  tally::v1::ServerConfig fewer = FileConfig(path);
  AddTensor(&fewer, "conv.weight", {2, 2});
  status = Validate(fewer);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("the config lists 1 tensors, model.init.file"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("has 4; the first not in the config is 'bn.running_var' [2]"));

  tally::v1::ServerConfig renamed = FileConfig(path);
  AddTensor(&renamed, "conv.kernel", {2, 2});
  status = Validate(renamed);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("model.tensors[0]: the config lists 'conv.kernel' [2, 2]"));
}

TEST(ModelInitTest, FileProblemsAreRefusedAtConfigTime) {
  absl::Status missing = Validate(FileConfig(TempPath("missing.safetensors")));
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("model.init.file: "));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("missing.safetensors"));

  const std::string empty = TempPath("empty.npz");
  std::ofstream(empty, std::ios::trunc).close();
  absl::Status empty_status = Validate(FileConfig(empty));
  EXPECT_THAT(empty_status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(empty_status.message()), HasSubstr("empty file"));

  tally::v1::ServerConfig uniform = FileConfig(WriteModel("uniform.safetensors"));
  uniform.mutable_model()->mutable_init()->set_kind(tally::v1::ModelInit::UNIFORM);
  EXPECT_THAT(std::string(Validate(uniform).message()),
              HasSubstr("model.init.kind: UNIFORM does not apply with model.init.file"));

  tally::v1::ServerConfig relay = FileConfig(WriteModel("relay.safetensors"));
  relay.mutable_relay()->set_upstream("127.0.0.1:1");
  EXPECT_THAT(std::string(Validate(relay).message()),
              HasSubstr("model.init.file: a relay serves the upstream's model"));

  server::ServerOptions options;
  options.config = FileConfig(TempPath("missing2.safetensors"));
  EXPECT_THAT(server::Server::Create(std::move(options)), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ModelInitTest, ARealServerServesTheFilesValues) {
  auto harness = Harness::Start(FileConfig(WriteModel("serve.safetensors")));
  ASSERT_NE(harness, nullptr);
  auto client = harness->NewClient("c1");
  ASSERT_NE(client, nullptr);
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult join, client->Join());
  ASSERT_EQ(join.model.tensors.size(), 4u);
  EXPECT_EQ(join.model.tensors[2].name, "bn.num_batches_tracked");
  EXPECT_THAT(join.model.tensors[0].shape, ElementsAre(2, 2));
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, client->PullModel());
  EXPECT_EQ(model.version, 1u);
  EXPECT_EQ(model.params, kValues);  // Bit for bit.
}

TEST(ModelInitTest, ACheckpointWinsOverTheFile) {
  const std::string dir = TempPath("ckpt_dir");
  tally::v1::ServerConfig config = FileConfig(WriteModel("ckpt.safetensors"));
  config.set_checkpoint_dir(dir);
  tally::v1::ServerConfig defaulted = config;
  server::ApplyDefaults(&defaulted);
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, server::LayoutFromConfig(defaulted.model()));
  ModelSnapshot snapshot;
  snapshot.version = 7;
  snapshot.round = 6;
  snapshot.params.assign(layout.NumParams(), 2.5f);
  ASSERT_THAT(server::WriteCheckpoint(dir, layout, snapshot), IsOk());

  auto harness = Harness::Start(config);
  ASSERT_NE(harness, nullptr);
  auto client = harness->NewClient("c1");
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Join(), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, client->PullModel());
  EXPECT_EQ(model.version, 7u);
  EXPECT_EQ(model.params, snapshot.params);
}

// The C++ SDK writes what it pulled; a second server starts from that file
// and serves the same model.
TEST(ModelInitTest, TheCppSdkWritesAModelAServerStartsFrom) {
  auto first = Harness::Start(FileConfig(WriteModel("sdk_source.safetensors")));
  ASSERT_NE(first, nullptr);
  auto client = first->NewClient("writer");
  ASSERT_THAT(client->Join(), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model pulled, client->PullModel());
  const std::string path = TempPath("sdk_written.npz");
  ASSERT_THAT(WriteModelFile(path, pulled), IsOk());

  auto second = Harness::Start(FileConfig(path));
  ASSERT_NE(second, nullptr);
  auto reader = second->NewClient("reader");
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult join, reader->Join());
  EXPECT_EQ(join.model.layout_hash, pulled.info.layout_hash);
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, reader->PullModel());
  EXPECT_EQ(model.params, kValues);

  const std::vector<float> two = {1, 2};
  EXPECT_THAT(WriteModelFile(TempPath("bad.safetensors"), {{"w", {3}, two}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const std::vector<float> nan = {1, std::nanf("")};
  EXPECT_THAT(WriteModelFile(TempPath("nan.safetensors"), {{"w", {2}, nan}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(WriteModelFile(TempPath("dup.safetensors"), {{"w", {2}, two}, {"w", {2}, two}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(WriteModelFile(TempPath("fine.safetensors"), {{"w", {1, 2}, two}}), IsOk());
}

}  // namespace
}  // namespace tally
