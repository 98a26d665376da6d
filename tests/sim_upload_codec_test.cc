#include "sim/upload_codec.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::sim {
namespace {

using compress::CodecId;
using ::testing::HasSubstr;

TEST(UploadCodecTest, LabelsNameTheSizeParameters) {
  UploadCodec codec;
  EXPECT_TRUE(codec.Uncompressed());
  EXPECT_EQ(codec.Label(), "float32");
  codec.spec = compress::DefaultSpec(CodecId::kTopK);
  EXPECT_FALSE(codec.Uncompressed());
  EXPECT_EQ(codec.Name(), "topk");
  EXPECT_EQ(codec.Label(), "topk 1%");
  codec.spec.k = 50;
  codec.spec.half_values = true;
  EXPECT_EQ(codec.Label(), "topk k=50 f16");
  codec.spec = compress::DefaultSpec(CodecId::kRandK);
  codec.spec.rescale = false;
  EXPECT_EQ(codec.Label(), "randk 1% biased");
  codec.spec = compress::DefaultSpec(CodecId::kInt8);
  codec.spec.zstd = true;
  EXPECT_EQ(codec.Label(), "int8 (block 256) + zstd");
  codec.spec = compress::DefaultSpec(CodecId::kQsgd);
  EXPECT_EQ(codec.Label(), "qsgd s=7 (block 512)");
  codec.spec = compress::DefaultSpec(CodecId::kSign);
  EXPECT_EQ(codec.Label(), "sign");
  codec.spec = compress::DefaultSpec(CodecId::kFloat32);
  codec.spec.zstd = true;
  EXPECT_FALSE(codec.Uncompressed());  // float32 in a zstd frame is compressed.
}

TEST(UploadCodecTest, CompareRunsAreTheIssuesList) {
  const std::vector<UploadCodec> runs = CodecCompareRuns();
  std::vector<std::string> labels;
  for (const UploadCodec& run : runs) {
    labels.push_back(run.Label() + (run.error_feedback ? " +EF" : ""));
    EXPECT_TRUE(compress::ValidateSpec(run.spec, 10010).ok()) << run.Label();
  }
  EXPECT_THAT(labels,
              ::testing::ElementsAre("float32 +EF", "float16 +EF", "bfloat16 +EF",
                                     "int8 (block 256) +EF", "qsgd s=7 (block 512)", "sign +EF",
                                     "topk 1% +EF", "topk 1%", "randk 1% biased +EF"));
  EXPECT_TRUE(runs.front().Uncompressed());  // The baseline comes first.
}

TEST(UploadCodecTest, TableComparesWithTheBaseline) {
  CodecCompareRow baseline;
  baseline.ok = true;
  baseline.upload_bytes_per_update = 40040;
  baseline.final_accuracy = 0.8;
  baseline.rounds_to_target = 12;
  CodecCompareRow topk;
  topk.codec.spec = compress::DefaultSpec(CodecId::kTopK);
  topk.ok = true;
  topk.upload_bytes_per_update = 500.5;
  topk.final_accuracy = 0.7925;
  topk.rounds_to_target = -1;
  CodecCompareRow failed;
  failed.codec.spec = compress::DefaultSpec(CodecId::kSign);
  failed.codec.error_feedback = false;
  const std::string table = FormatCodecCompareTable({baseline, topk, failed}, baseline, 0.75);
  EXPECT_THAT(table, HasSubstr("| rounds to 0.75 |\n|---|"));
  EXPECT_THAT(table, HasSubstr("| float32 | – | 40040 | 1.0× | 0.8000 | +0.00 | 12 |\n"));
  // 40040 / 500.5 = 80; (0.7925 - 0.8) * 100 = -0.75 points.
  EXPECT_THAT(table, HasSubstr("| topk 1% | on | 500.5 | 80.0× | 0.7925 | -0.75 | never |\n"));
  EXPECT_THAT(table, HasSubstr("| sign | off | error | | | | |\n"));
}

}  // namespace
}  // namespace tally::sim
