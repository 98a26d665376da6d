#include "core/npy.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/npy_test_", name);
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <typename T>
std::string LittleEndian(T value) {
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // Tests run on little-endian hosts.
  return std::string(reinterpret_cast<const char*>(bytes), sizeof(T));
}

// A format 1.0 (or 2.0) file with header dict `dict` followed by `data`.
std::string NpyBytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict + "\n";
  std::string bytes = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  if (major == 1) {
    bytes += LittleEndian<uint16_t>(static_cast<uint16_t>(header.size()));
  } else {
    bytes += LittleEndian<uint32_t>(static_cast<uint32_t>(header.size()));
  }
  return bytes + header + data;
}

std::string F4Data(const std::vector<float>& values) {
  std::string data;
  for (float v : values) data += LittleEndian(v);
  return data;
}

// Writes `bytes` and expects ReadNpy to fail with INVALID_ARGUMENT naming
// the file and containing `problem`.
void ExpectInvalid(const std::string& name, const std::string& bytes, const std::string& problem) {
  const std::string path = TempPath(name);
  WriteBytes(path, bytes);
  absl::StatusOr<NpyMatrix> read = ReadNpy(path);
  EXPECT_THAT(read, StatusIs(absl::StatusCode::kInvalidArgument)) << name;
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(path)) << name;
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(problem)) << name;
}

TEST(NpyTest, RoundTripF4) {
  const std::string path = TempPath("round_trip.npy");
  const std::vector<float> data = {1.0f, -2.5f, 3.25f, 1e-30f, 7.0f, 0.0f};
  ASSERT_THAT(WriteNpy(path, 2, 3, data), IsOk());
  const std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ((bytes.size() - data.size() * 4) % 64, 0u);  // Data aligned as numpy does.
  EXPECT_THAT(bytes, HasSubstr("'shape': (2, 3)"));
  TALLY_ASSERT_OK_AND_ASSIGN(NpyMatrix read, ReadNpy(path));
  EXPECT_EQ(read.rows, 2u);
  EXPECT_EQ(read.cols, 3u);
  EXPECT_EQ(read.ndim, 2);
  EXPECT_EQ(read.data, data);
}

TEST(NpyTest, RoundTripVector) {
  const std::string path = TempPath("vector.npy");
  ASSERT_THAT(WriteNpyVector(path, std::vector<float>{1.5f, 2.5f}), IsOk());
  EXPECT_THAT(ReadBytes(path), HasSubstr("'shape': (2,)"));
  TALLY_ASSERT_OK_AND_ASSIGN(NpyMatrix read, ReadNpy(path));
  EXPECT_EQ(read.rows, 1u);
  EXPECT_EQ(read.cols, 2u);
  EXPECT_EQ(read.ndim, 1);
  EXPECT_THAT(read.data, ElementsAre(1.5f, 2.5f));
}

TEST(NpyTest, WriteRejectsMismatchedShape) {
  EXPECT_THAT(WriteNpy(TempPath("mismatch.npy"), 2, 2, std::vector<float>{1, 2, 3}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(NpyTest, ReadsF8) {
  const std::string path = TempPath("f8.npy");
  std::string data;
  for (double v : {0.1, -2.0, 3.5, 1e10}) data += LittleEndian(v);
  WriteBytes(path, NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", data));
  TALLY_ASSERT_OK_AND_ASSIGN(NpyMatrix read, ReadNpy(path));
  EXPECT_EQ(read.rows, 2u);
  EXPECT_EQ(read.cols, 2u);
  EXPECT_THAT(read.data, ElementsAre(FloatEq(0.1f), FloatEq(-2.0f), FloatEq(3.5f), FloatEq(1e10f)));
}

TEST(NpyTest, ReadsVersion2HeaderBuiltByteByByte) {
  const std::string path = TempPath("v2.npy");
  // Unusual but valid: double quotes, keys reordered, no trailing comma.
  const std::string dict = "{\"shape\": (1, 3), \"fortran_order\": False, \"descr\": \"<f4\"}";
  std::string bytes;
  const unsigned char kPreamble[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 0x02, 0x00};
  for (unsigned char c : kPreamble) bytes.push_back(static_cast<char>(c));
  const uint32_t length = static_cast<uint32_t>(dict.size() + 1);
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  bytes += dict + "\n" + F4Data({4.0f, 5.0f, 6.0f});
  WriteBytes(path, bytes);
  TALLY_ASSERT_OK_AND_ASSIGN(NpyMatrix read, ReadNpy(path));
  EXPECT_EQ(read.rows, 1u);
  EXPECT_EQ(read.cols, 3u);
  EXPECT_THAT(read.data, ElementsAre(4.0f, 5.0f, 6.0f));
}

TEST(NpyTest, ReadsEmptyMatrix) {
  const std::string path = TempPath("empty.npy");
  WriteBytes(path, NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", ""));
  TALLY_ASSERT_OK_AND_ASSIGN(NpyMatrix read, ReadNpy(path));
  EXPECT_EQ(read.rows, 0u);
  EXPECT_EQ(read.cols, 3u);
  EXPECT_TRUE(read.data.empty());
}

TEST(NpyTest, RejectsFortranOrder) {
  ExpectInvalid(
      "fortran.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }", F4Data({1, 2})),
      "Fortran");
}

TEST(NpyTest, RejectsOtherDtypes) {
  ExpectInvalid(
      "i4.npy",
      NpyBytes("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }", F4Data({1, 2})),
      "unsupported dtype '<i4'");
  ExpectInvalid(
      "f2.npy",
      NpyBytes("{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }", std::string(4, '\0')),
      "unsupported dtype");
}

TEST(NpyTest, RejectsBigEndian) {
  ExpectInvalid(
      "big.npy",
      NpyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 2), }", F4Data({1, 2})),
      "big-endian");
}

TEST(NpyTest, RejectsOtherRanks) {
  ExpectInvalid(
      "3d.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }", F4Data({1, 2})),
      "3 dimensions");
  ExpectInvalid("0d.npy",
                NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", F4Data({1})),
                "0 dimensions");
}

TEST(NpyTest, RejectsTruncatedOrTrailingData) {
  ExpectInvalid(
      "short.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", F4Data({1, 2, 3})),
      "truncated data");
  ExpectInvalid(
      "long.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", F4Data({1, 2, 3})),
      "after the data");
  ExpectInvalid(
      "short_header.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", "").substr(0, 20),
      "truncated header");
}

TEST(NpyTest, RejectsOverflowingSizes) {
  ExpectInvalid("huge.npy",
                NpyBytes("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (4294967296, 4294967296), }",
                         F4Data({1})),
                "too large");
  ExpectInvalid("overflow.npy",
                NpyBytes("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (99999999999999999999999, 1), }",
                         F4Data({1})),
                "overflows");
}

TEST(NpyTest, RejectsMalformedFiles) {
  ExpectInvalid("magic.npy", "PK\x03\x04 not numpy at all", "bad magic");
  ExpectInvalid("version.npy",
                NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", F4Data({1}),
                         /*major=*/3),
                "version 3.0");
  ExpectInvalid("missing_key.npy", NpyBytes("{'descr': '<f4', 'shape': (1, 1), }", F4Data({1})),
                "no 'fortran_order'");
  ExpectInvalid(
      "extra_key.npy",
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'x': 1}", F4Data({1})),
      "unexpected key 'x'");
  ExpectInvalid("repeated_key.npy",
                NpyBytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                         "'shape': (1, 1)}",
                         F4Data({1})),
                "repeats 'descr'");
  ExpectInvalid("syntax.npy",
                NpyBytes("{'descr': '<f4' 'fortran_order': False, 'shape': (1, 1)}", F4Data({1})),
                "malformed header");
  ExpectInvalid("negative.npy",
                NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 1)}", F4Data({1})),
                "malformed header");
}

TEST(NpyTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadNpy(TempPath("does_not_exist.npy")), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace tally
