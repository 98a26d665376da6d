// The run history (core/run_history.h): the JSON Lines format of
// docs/workflow.md#history written out by hand, round trips, appending
// after a restart, a cut-short last line, malformed lines.
#include "core/run_history.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const std::string path = ::testing::TempDir() + "/run_history_test_" + name;
  std::remove(path.c_str());
  return path;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

HistoryRecord FitRecord(uint64_t round) {
  HistoryRecord r;
  r.unix_ms = 1765152123456;  // 2025-12-08T00:02:03.456Z
  r.round = round;
  r.model_version = round;
  r.participants = 2;
  r.bytes_received = 320;
  r.num_examples = 500;
  r.metrics = {{"loss", 0.25}, {"accuracy", 0.875}};
  return r;
}

TEST(RunHistoryTest, FitRecordAsJson) {
  HistoryRecord r = FitRecord(3);
  r.decisions = {{"rule", "krum"}};
  EXPECT_EQ(HistoryRecordToJson(r),
            "{\"kind\":\"fit\",\"time\":\"2025-12-08T00:02:03.456Z\",\"unix_ms\":1765152123456,"
            "\"round\":3,\"model_version\":3,\"participants\":2,\"bytes_received\":320,"
            "\"num_examples\":500,\"metrics\":{\"accuracy\":0.875,\"loss\":0.25},"
            "\"decisions\":{\"rule\":\"krum\"}}");
}

TEST(RunHistoryTest, EvaluateRecordAsJson) {
  HistoryRecord r;
  r.kind = HistoryRecord::Kind::kEvaluate;
  r.unix_ms = 1765152123456;
  r.round = 5;
  r.model_version = 5;
  r.participants = 3;
  r.num_examples = 1200;
  r.evaluation_id = 2;
  r.metrics = {{"accuracy", 0.1}};
  EXPECT_EQ(HistoryRecordToJson(r),
            "{\"kind\":\"evaluate\",\"time\":\"2025-12-08T00:02:03.456Z\",\"unix_ms\":1765152123456,"
            "\"round\":5,\"model_version\":5,\"participants\":3,\"evaluation_id\":2,"
            "\"num_examples\":1200,\"metrics\":{\"accuracy\":0.1}}");
  absl::StatusOr<HistoryRecord> back = HistoryRecordFromJson(HistoryRecordToJson(r));
  ASSERT_THAT(back.status(), IsOk());
  EXPECT_EQ(*back, r);
}

TEST(RunHistoryTest, RoundTripKeepsEveryDouble) {
  HistoryRecord r = FitRecord(1);
  r.metrics = {{"third", 1.0 / 3.0}, {"tiny", 5e-324}, {"big", 1.7976931348623157e308},
               {"neg", -2.5}, {"quote\"name", 1}};
  r.decisions = {{"note", "line\nbreak \\ \"q\""}};
  absl::StatusOr<HistoryRecord> back = HistoryRecordFromJson(HistoryRecordToJson(r));
  ASSERT_THAT(back.status(), IsOk());
  EXPECT_EQ(*back, r);
}

TEST(RunHistoryTest, MalformedRecordsNameTheField) {
  EXPECT_THAT(HistoryRecordFromJson("[1]").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(HistoryRecordFromJson("{\"round\":1}").status().message(), HasSubstr("'kind'"));
  EXPECT_THAT(HistoryRecordFromJson("{\"kind\":\"fit\",\"round\":1.5}").status().message(),
              HasSubstr("'round'"));
  EXPECT_THAT(HistoryRecordFromJson("{\"kind\":\"fit\",\"round\":-1}").status().message(),
              HasSubstr("'round'"));
  EXPECT_THAT(HistoryRecordFromJson("{\"kind\":\"fit\",\"metrics\":{\"a\":\"x\"}}").status().message(),
              HasSubstr("'metrics'"));
  EXPECT_THAT(HistoryRecordFromJson("{\"kind\":\"fit\"").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RunHistoryTest, AppendsFlushesAndReopensWhereItLeftOff) {
  const std::string path = TempPath("append.jsonl");
  {
    absl::StatusOr<std::unique_ptr<RunHistory>> history = RunHistory::Open(path);
    ASSERT_THAT(history.status(), IsOk());
    ASSERT_THAT((*history)->Append(FitRecord(1)), IsOk());
    ASSERT_THAT((*history)->Append(FitRecord(2)), IsOk());
    // Flushed per record: readable while the writer is open.
    absl::StatusOr<std::vector<HistoryRecord>> read = ReadHistoryFile(path);
    ASSERT_THAT(read.status(), IsOk());
    EXPECT_EQ(read->size(), 2u);
  }
  absl::StatusOr<std::unique_ptr<RunHistory>> history = RunHistory::Open(path);
  ASSERT_THAT(history.status(), IsOk());
  EXPECT_EQ((*history)->Records().size(), 2u);  // Loaded from the file.
  ASSERT_THAT((*history)->Append(FitRecord(3)), IsOk());
  absl::StatusOr<std::vector<HistoryRecord>> read = ReadHistoryFile(path);
  ASSERT_THAT(read.status(), IsOk());
  ASSERT_EQ(read->size(), 3u);
  EXPECT_EQ((*read)[0], FitRecord(1));
  EXPECT_EQ((*read)[2], FitRecord(3));
  std::vector<HistoryRecord> after = (*history)->Records(/*after_round=*/1);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].round, 2u);
  std::vector<HistoryRecord> newest = (*history)->Records(0, /*max_records=*/1);
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0].round, 3u);
}

TEST(RunHistoryTest, ACutShortLastLineIsRemovedOnOpen) {
  const std::string path = TempPath("cut.jsonl");
  const std::string first = HistoryRecordToJson(FitRecord(1)) + "\n";
  std::ofstream(path, std::ios::binary) << first << "{\"kind\":\"fit\",\"rou";
  EXPECT_THAT(ReadHistoryFile(path).status().message(), HasSubstr("cut short"));
  absl::StatusOr<std::unique_ptr<RunHistory>> history = RunHistory::Open(path);
  ASSERT_THAT(history.status(), IsOk());
  ASSERT_THAT((*history)->Append(FitRecord(2)), IsOk());
  EXPECT_EQ(ReadText(path), first + HistoryRecordToJson(FitRecord(2)) + "\n");
}

TEST(RunHistoryTest, AMalformedLineNamesItsNumber) {
  const std::string path = TempPath("bad.jsonl");
  std::ofstream(path, std::ios::binary) << HistoryRecordToJson(FitRecord(1)) << "\n\nnot json\n";
  EXPECT_THAT(ReadHistoryFile(path).status().message(), HasSubstr("line 3"));
  EXPECT_THAT(RunHistory::Open(path).status().message(), HasSubstr("line 3"));
  EXPECT_THAT(ReadHistoryFile(TempPath("missing.jsonl")).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(RunHistoryTest, WithoutAPathOnlyMemoryKeepingTheNewest) {
  absl::StatusOr<std::unique_ptr<RunHistory>> history = RunHistory::Open("", /*keep=*/2);
  ASSERT_THAT(history.status(), IsOk());
  for (uint64_t round = 1; round <= 3; ++round) ASSERT_THAT((*history)->Append(FitRecord(round)), IsOk());
  std::vector<HistoryRecord> kept = (*history)->Records();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].round, 2u);
  EXPECT_EQ(kept[1].round, 3u);
}

TEST(RunHistoryTest, AnUnwritablePathFailsNamingIt) {
  EXPECT_THAT(RunHistory::Open("/nonexistent-dir/run.jsonl").status().message(),
              HasSubstr("/nonexistent-dir/run.jsonl"));
}

}  // namespace
}  // namespace tally
