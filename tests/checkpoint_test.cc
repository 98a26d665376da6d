// Checkpoints: atomic write/read round trip, corruption and layout checks,
// and real servers resuming from their checkpoint after a restart, falling
// back to the previous one when a bit of the newest flipped, and refusing to
// start over corrupt files unless told to start fresh.
#include "server/checkpoint.h"

#include <openssl/sha.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tally/client.h"
#include "tests/status_matchers.h"

namespace tally::server {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  return dir;
}

// A loopback server of one tensor "w" of `size` parameters, checkpointing to `dir`.
ServerOptions CheckpointedServer(const std::string& dir, int64_t size = 2) {
  ServerOptions options;
  options.config.set_listen_address("127.0.0.1:0");
  options.config.set_metrics_port(-1);
  options.config.set_checkpoint_dir(dir);
  auto* t = options.config.mutable_model()->add_tensors();
  t->set_name("w");
  t->add_shape(size);
  options.config.mutable_rounds()->set_clients_per_round(1);
  return options;
}

// `dir` with model.tallyckpt.prev = version 7, params {1, 2} and
// model.tallyckpt = version 8, params {3, 4}.
void WriteTwoCheckpoints(const std::string& dir, const ModelLayout& layout) {
  ModelSnapshot snapshot;
  snapshot.round = 1;
  snapshot.version = 7;
  snapshot.params = {1, 2};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot), IsOk());
  snapshot.version = 8;
  snapshot.params = {3, 4};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot), IsOk());
}

// Flips bit `bit` of byte `offset` of `path`; a negative offset counts from the end.
void FlipBit(const std::string& path, std::streamoff offset, int bit) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  if (offset < 0) offset += f.tellg();
  f.seekg(offset);
  const char byte = static_cast<char>(f.get() ^ (1 << bit));
  f.seekp(offset);
  f.put(byte);
}

TEST(CheckpointTest, RoundTripsAndDetectsCorruption) {
  const std::string dir = FreshDir("ckpt_roundtrip");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {3}}}));
  auto none = ReadCheckpoint(dir, layout);
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());

  ModelSnapshot snapshot;
  snapshot.version = 7;
  snapshot.round = 6;
  snapshot.params = {1.5f, -2.0f, 3.25f};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->version, 7u);
  EXPECT_EQ(loaded->round, 6u);
  EXPECT_THAT(loaded->params, ElementsAre(1.5f, -2.0f, 3.25f));

  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout other, ModelLayout::Create({{"v", {3}}}));
  EXPECT_THAT(ReadCheckpoint(dir, other), StatusIs(absl::StatusCode::kFailedPrecondition));

  // Flip one parameter byte: the checksum catches it.
  const std::string path = dir + "/" + kCheckpointFileName;
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 32 + 5);
    f.put('\x7f');
  }
  EXPECT_THAT(ReadCheckpoint(dir, layout), StatusIs(absl::StatusCode::kDataLoss));
  // Truncation too.
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "TALLYCK1";
  EXPECT_THAT(ReadCheckpoint(dir, layout), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(CheckpointTest, RestoreFallsBackToThePreviousCheckpointWhenTheNewestIsCorrupt) {
  const std::string dir = FreshDir("ckpt_fallback");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  WriteTwoCheckpoints(dir, layout);
  TALLY_ASSERT_OK_AND_ASSIGN(RestoredCheckpoint newest, RestoreCheckpoint(dir, layout));
  ASSERT_TRUE(newest.checkpoint.has_value());
  EXPECT_EQ(newest.checkpoint->version, 8u);
  EXPECT_TRUE(newest.skipped.empty());

  const std::string path = dir + "/" + kCheckpointFileName;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "TALLYCK2 torn";
  TALLY_ASSERT_OK_AND_ASSIGN(RestoredCheckpoint fallback, RestoreCheckpoint(dir, layout));
  ASSERT_TRUE(fallback.checkpoint.has_value());
  EXPECT_EQ(fallback.checkpoint->version, 7u);
  EXPECT_THAT(fallback.checkpoint->params, ElementsAre(1.0f, 2.0f));
  EXPECT_EQ(fallback.path, dir + "/" + kPreviousCheckpointFileName);
  ASSERT_EQ(fallback.skipped.size(), 1u);
  EXPECT_EQ(fallback.skipped[0].path, path);
  EXPECT_THAT(fallback.skipped[0].why, ::testing::HasSubstr(kCheckpointFileName));

  std::ofstream(dir + "/" + kPreviousCheckpointFileName, std::ios::binary | std::ios::trunc)
      << "garbage";
  TALLY_ASSERT_OK_AND_ASSIGN(RestoredCheckpoint none, RestoreCheckpoint(dir, layout));
  EXPECT_FALSE(none.checkpoint.has_value());
  EXPECT_EQ(none.skipped.size(), 2u);
}

TEST(CheckpointTest, OptimizerStateRoundTrips) {
  const std::string dir = FreshDir("ckpt_optimizer");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  ModelSnapshot snapshot;
  snapshot.version = 3;
  snapshot.round = 2;
  snapshot.params = {1, 2};
  std::vector<float> m = {0.25f, -0.5f}, v = {4, 8};
  CheckpointContents contents;
  contents.optimizer_name = "fedadam";
  contents.optimizer_tensors = {{"m", &m}, {"v", &v}};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot, contents), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->optimizer.name, "fedadam");
  ASSERT_EQ(loaded->optimizer.tensors.size(), 2u);
  EXPECT_EQ(loaded->optimizer.tensors[0].first, "m");
  EXPECT_THAT(loaded->optimizer.tensors[0].second, ElementsAre(0.25f, -0.5f));
  EXPECT_EQ(loaded->optimizer.tensors[1].first, "v");
  EXPECT_THAT(loaded->optimizer.tensors[1].second, ElementsAre(4.0f, 8.0f));
  // A flipped byte in the optimizer section fails the checksum as well.
  const std::string path = dir + "/" + kCheckpointFileName;
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff size = f.tellg();
    f.seekp(size - 32 - 2);  // Inside v's last value.
    f.put('\x55');
  }
  EXPECT_THAT(ReadCheckpoint(dir, layout), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(CheckpointTest, AppliedUpdateIdsRoundTrip) {
  const std::string dir = FreshDir("ckpt_ids");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {1}}}));
  ModelSnapshot snapshot;
  snapshot.version = 3;
  snapshot.round = 2;
  snapshot.params = {0.25f};
  CheckpointContents contents;
  contents.optimizer_name = "sgd";
  contents.applied = {{"alice", {"u1", "u2"}}, {"bob", {}}, {"carol", {"x"}}};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot, contents), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->applied, contents.applied);
  EXPECT_EQ(loaded->optimizer.name, "sgd");
  EXPECT_TRUE(loaded->schedule.name.empty());
}

TEST(CheckpointTest, ScheduleStateRoundTripsAndIsReported) {
  const std::string dir = FreshDir("ckpt_schedule");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {1}}}));
  ModelSnapshot snapshot;
  snapshot.version = 4;
  snapshot.params = {1.0f};
  CheckpointContents contents;
  contents.applied = {{"alice", {"u1"}}, {"bob", {"u2"}}};
  contents.schedule.name = "fedcompass";
  // bob is in both sections, carol only here: three clients in all.
  contents.schedule.state.clients = {{"bob", 30, 0.125}, {"carol", 0, 1.0 / 3.0}};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot, contents), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(RestoredCheckpoint restored, RestoreCheckpoint(dir, layout));
  ASSERT_TRUE(restored.checkpoint.has_value());
  EXPECT_EQ(restored.checkpoint->schedule.name, "fedcompass");
  // Doubles survive bit for bit.
  EXPECT_EQ(restored.checkpoint->schedule.state.clients, contents.schedule.state.clients);
  const RestoreReport report = ReportOf(restored);
  EXPECT_EQ(report.version, 4u);
  EXPECT_EQ(report.from, dir + "/" + kCheckpointFileName);
  EXPECT_EQ(report.clients, 3u);
}

// Format 6 carries central DP's ledger bytes and clip norm; a format-5
// file (the same content without that section) still reads, with no ledger.
TEST(CheckpointTest, PrivacyLedgerRoundTripsAndVersionFiveFilesStillRead) {
  const std::string dir = FreshDir("ckpt_privacy");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {1}}}));
  ModelSnapshot snapshot;
  snapshot.version = 6;
  snapshot.params = {0.5f};
  CheckpointContents contents;
  contents.privacy.ledger = std::string("TPL1\0ledger bytes", 17);
  contents.privacy.clip_norm = 0.1;
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot, contents), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->privacy.ledger, contents.privacy.ledger);
  EXPECT_EQ(loaded->privacy.clip_norm, 0.1);

  // The same checkpoint without a ledger, rewritten as format 5: its last
  // section (u32 0, f64 clip norm) removed, the magic and SHA-256 redone.
  contents.privacy = {};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot, contents), IsOk());
  const std::string path = dir + "/" + kCheckpointFileName;
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.substr(0, 8), "TALLYCK6");
  bytes.resize(bytes.size() - 32 - 12);
  bytes[7] = '5';
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  bytes.append(reinterpret_cast<const char*>(digest), 32);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  TALLY_ASSERT_OK_AND_ASSIGN(loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->version, 6u);
  EXPECT_THAT(loaded->params, ElementsAre(0.5f));
  EXPECT_TRUE(loaded->layout.has_value());
  EXPECT_TRUE(loaded->privacy.ledger.empty());
}

TEST(CheckpointTest, ReadsVersionOneFiles) {
  const std::string dir = FreshDir("ckpt_v1");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  // Hand-built v1 file: magic, version 5, round 4, hash, 2 params, SHA-256.
  std::string bytes = "TALLYCK1";
  auto u64 = [&](uint64_t x) { bytes.append(reinterpret_cast<const char*>(&x), 8); };
  u64(5);
  u64(4);
  u64(layout.Hash());
  u64(2);
  const float params[2] = {7.5f, -1.0f};
  bytes.append(reinterpret_cast<const char*>(params), sizeof(params));
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  bytes.append(reinterpret_cast<const char*>(digest), 32);
  std::ofstream(dir + "/" + kCheckpointFileName, std::ios::binary) << bytes;
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpoint(dir, layout));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->version, 5u);
  EXPECT_EQ(loaded->round, 4u);
  EXPECT_THAT(loaded->params, ElementsAre(7.5f, -1.0f));
  EXPECT_TRUE(loaded->optimizer.name.empty());
  EXPECT_FALSE(loaded->layout.has_value());
}

// Format 5 carries the layout, so a tool reads a checkpoint without the
// server's config; format 1 files (no layout) still read, without one.
TEST(CheckpointTest, CarriesItsLayoutForToolsThatHaveNoConfig) {
  const std::string dir = FreshDir("ckpt_layout");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout,
                             ModelLayout::Create({{"conv.weight", {2, 1, 1}}, {"scale", {}}}));
  ModelSnapshot snapshot;
  snapshot.version = 3;
  snapshot.round = 2;
  snapshot.params = {1, 2, 3};
  ASSERT_THAT(WriteCheckpoint(dir, layout, snapshot), IsOk());
  const std::string path = dir + "/" + kCheckpointFileName;
  EXPECT_EQ(std::ifstream(path).get(), 'T');
  TALLY_ASSERT_OK_AND_ASSIGN(auto loaded, ReadCheckpointFileAnyModel(path));
  ASSERT_TRUE(loaded.has_value());
  ASSERT_TRUE(loaded->layout.has_value());
  EXPECT_EQ(loaded->layout->CanonicalString(), layout.CanonicalString());
  EXPECT_EQ(loaded->layout_hash, layout.Hash());
  EXPECT_THAT(loaded->params, ElementsAre(1, 2, 3));
  TALLY_ASSERT_OK_AND_ASSIGN(auto missing, ReadCheckpointFileAnyModel(dir + "/nope"));
  EXPECT_FALSE(missing.has_value());
}

// A SHA-256 is no signature: a forged file with a valid digest that claims
// 2^60 parameters is corrupt, not a 4 EiB allocation.
TEST(CheckpointTest, AForgedParameterCountIsCorruptNotAnAllocation) {
  const std::string dir = FreshDir("ckpt_forged");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  std::string bytes = "TALLYCK1";
  auto u64 = [&](uint64_t x) { bytes.append(reinterpret_cast<const char*>(&x), 8); };
  u64(5);
  u64(4);
  u64(123);
  u64(uint64_t{1} << 60);
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  bytes.append(reinterpret_cast<const char*>(digest), 32);
  const std::string path = dir + "/" + kCheckpointFileName;
  std::ofstream(path, std::ios::binary) << bytes;
  EXPECT_THAT(ReadCheckpointFileAnyModel(path), StatusIs(absl::StatusCode::kDataLoss));
}

// Every field of the header is under the checksum, which is checked first: a
// flipped bit makes the newest file corrupt (not "for another model", which
// used to stop the start) and a real server resumes from the previous one.
TEST(CheckpointTest, AFlippedHeaderBitFallsBackToThePreviousCheckpoint) {
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  struct Flip {
    const char* field;
    std::streamoff offset;  // Header layout in server/checkpoint.h.
    int bit;
  };
  const Flip flips[] = {{"magic", 7, 0},          {"version", 8, 0},      {"version", 15, 7},
                        {"round", 16, 1},         {"layout hash", 24, 0}, {"layout hash", 31, 7},
                        {"num_params", 32, 0},    {"num_params", 39, 7},  {"num_params", 36, 3},
                        {"stored digest", -32, 0}};
  for (const Flip& flip : flips) {
    SCOPED_TRACE(::testing::Message()
                 << flip.field << ", byte " << flip.offset << ", bit " << flip.bit);
    const std::string dir = FreshDir("ckpt_header_flip");
    WriteTwoCheckpoints(dir, layout);
    const std::string newest = dir + "/" + kCheckpointFileName;
    FlipBit(newest, flip.offset, flip.bit);
    EXPECT_THAT(ReadCheckpoint(dir, layout), StatusIs(absl::StatusCode::kDataLoss));

    TALLY_ASSERT_OK_AND_ASSIGN(auto server, Server::Create(CheckpointedServer(dir)));
    const auto model = server->model_store().Current();
    EXPECT_EQ(model->version, 7u);
    EXPECT_THAT(model->params, ElementsAre(1.0f, 2.0f));
    ClientOptions copts;
    copts.target = "127.0.0.1:" + std::to_string(server->port());
    copts.client_id = "a";
    TALLY_ASSERT_OK_AND_ASSIGN(auto client, Client::Create(copts));
    TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, client->GetServerStatus());
    EXPECT_EQ(status.restored_from, dir + "/" + kPreviousCheckpointFileName);
    EXPECT_EQ(status.restored_version, 7u);
  }
}

TEST(CheckpointTest, AllCheckpointsCorruptRefusesToStartUnlessToldToStartFresh) {
  const std::string dir = FreshDir("ckpt_all_corrupt");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  WriteTwoCheckpoints(dir, layout);
  const std::string newest = dir + "/" + kCheckpointFileName;
  const std::string previous = dir + "/" + kPreviousCheckpointFileName;
  FlipBit(newest, 24, 2);    // Layout hash.
  FlipBit(previous, 40, 5);  // A parameter.
  auto refused = Server::Create(CheckpointedServer(dir));
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kDataLoss));
  const std::string message(refused.status().message());
  EXPECT_THAT(message, ::testing::HasSubstr("'" + newest + "' fails its checksum"));
  EXPECT_THAT(message, ::testing::HasSubstr("'" + previous + "' fails its checksum"));
  EXPECT_THAT(message, ::testing::HasSubstr("--start_fresh_if_corrupt"));

  // Only the newest, corrupt, and no fallback: the same.
  ASSERT_EQ(std::rename(previous.c_str(), (dir + "/elsewhere").c_str()), 0);
  EXPECT_THAT(Server::Create(CheckpointedServer(dir)), StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_EQ(std::rename((dir + "/elsewhere").c_str(), previous.c_str()), 0);

  ServerOptions fresh = CheckpointedServer(dir);
  fresh.start_fresh_if_corrupt = true;
  TALLY_ASSERT_OK_AND_ASSIGN(auto server, Server::Create(std::move(fresh)));
  const auto model = server->model_store().Current();
  EXPECT_EQ(model->version, 1u);
  EXPECT_THAT(model->params, ElementsAre(0.0f, 0.0f));  // model.init: zeros.
  // The evidence is kept aside, out of the way of the next checkpoints.
  struct stat st;
  EXPECT_EQ(::stat(newest.c_str(), &st), -1);
  EXPECT_EQ(::stat(previous.c_str(), &st), -1);
  EXPECT_EQ(::stat((newest + ".corrupt").c_str(), &st), 0);
  EXPECT_EQ(::stat((previous + ".corrupt").c_str(), &st), 0);
}

// A valid checkpoint of another model is refused as before, start_fresh or not.
TEST(CheckpointTest, AValidCheckpointOfAnotherModelStopsTheStart) {
  const std::string dir = FreshDir("ckpt_other_model");
  TALLY_ASSERT_OK_AND_ASSIGN(ModelLayout layout, ModelLayout::Create({{"w", {2}}}));
  WriteTwoCheckpoints(dir, layout);
  for (bool start_fresh : {false, true}) {
    ServerOptions options = CheckpointedServer(dir, 3);
    options.start_fresh_if_corrupt = start_fresh;
    auto refused = Server::Create(std::move(options));
    ASSERT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(std::string(refused.status().message()),
                ::testing::HasSubstr("is for another model (2 parameters"));
  }
  struct stat st;
  EXPECT_EQ(::stat((dir + "/" + kCheckpointFileName).c_str(), &st), 0);
}

TEST(CheckpointTest, RestartedServerResumesFromItsCheckpoint) {
  const std::string dir = FreshDir("ckpt_server");
  auto make_options = [&] {
    ServerOptions options = CheckpointedServer(dir);
    options.config.mutable_optimizer()->set_name("fedavgm");  // Momentum 0.9.
    return options;
  };
  {
    TALLY_ASSERT_OK_AND_ASSIGN(auto server, Server::Create(make_options()));
    ClientOptions copts;
    copts.target = "127.0.0.1:" + std::to_string(server->port());
    copts.client_id = "a";
    TALLY_ASSERT_OK_AND_ASSIGN(auto client, Client::Create(copts));
    ASSERT_THAT(client->Join(), IsOk());
    TALLY_ASSERT_OK_AND_ASSIGN(Task task, client->GetTask(absl::Seconds(10)));
    std::vector<float> delta = {0.5f, -4.0f};
    Update update;
    update.round = task.round;
    update.base_version = task.model_version;
    update.delta = delta;
    update.update_id = "a-round-1";
    ASSERT_THAT(client->PushUpdate(update), IsOk());
    ASSERT_THAT(client->WaitForVersion(1, absl::Seconds(30)), IsOk());
    server->Shutdown(absl::Seconds(1));  // Writes the final checkpoint.
  }
  TALLY_ASSERT_OK_AND_ASSIGN(auto server, Server::Create(make_options()));
  const auto model = server->model_store().Current();
  EXPECT_EQ(model->version, 2u);
  EXPECT_EQ(model->round, 1u);
  EXPECT_THAT(model->params, ElementsAre(0.5f, -4.0f));
  ClientOptions copts;
  copts.target = "127.0.0.1:" + std::to_string(server->port());
  copts.client_id = "b";
  TALLY_ASSERT_OK_AND_ASSIGN(auto client, Client::Create(copts));
  ASSERT_THAT(client->Join(), IsOk());
  // Duplicate detection survived the restart: a's update (in the restored
  // model) sent again is acknowledged, not counted.
  {
    ClientOptions a_options;
    a_options.target = "127.0.0.1:" + std::to_string(server->port());
    a_options.client_id = "a";
    TALLY_ASSERT_OK_AND_ASSIGN(auto a, Client::Create(a_options));
    ASSERT_THAT(a->Join(), IsOk());
    std::vector<float> again = {0.5f, -4.0f};
    Update retry;
    retry.round = 1;
    retry.base_version = 1;
    retry.delta = again;
    retry.update_id = "a-round-1";
    TALLY_ASSERT_OK_AND_ASSIGN(PushResult pushed, a->PushUpdate(retry));
    EXPECT_TRUE(pushed.duplicate);
  }
  // What was restored is reported.
  TALLY_ASSERT_OK_AND_ASSIGN(ServerStatusInfo status, client->GetServerStatus());
  EXPECT_EQ(status.restored_version, 2u);
  EXPECT_EQ(status.restored_from, dir + "/" + kCheckpointFileName);
  EXPECT_EQ(status.checkpoint_version, 2u);
  TALLY_ASSERT_OK_AND_ASSIGN(Task task, client->GetTask());
  EXPECT_EQ(task.round, 2u);  // Round numbering continues.
  EXPECT_EQ(task.model_version, 2u);
  // The momentum survived too: v = 0.9 * [0.5, -4] + [1, 1] = [1.45, -2.6],
  // so w = [0.5, -4] + v = [1.95, -6.6] (a fresh optimizer would give [1.5, -3]).
  std::vector<float> delta = {1.0f, 1.0f};
  Update update;
  update.round = task.round;
  update.base_version = task.model_version;
  update.delta = delta;
  ASSERT_THAT(client->PushUpdate(update), IsOk());
  ASSERT_THAT(client->WaitForVersion(2, absl::Seconds(30)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model after, client->PullModel());
  EXPECT_THAT(after.params, Pointwise(FloatNear(1e-5), {1.95f, -6.6f}));
}

}  // namespace
}  // namespace tally::server
