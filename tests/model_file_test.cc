// Model files (core/model_file.h): .npz files written by numpy itself (run
// as /usr/bin/python3 at test time), safetensors files built byte by byte
// from the format's description with hand-computed float32 values, round
// trips read back by numpy and by a from-the-spec Python parser, and every
// kind of malformed or lying file. Part of tally_unit_tests (no gRPC).
#include "core/model_file.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/model_file_test_", name);
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs `script` with Debian's python3 (and numpy) and `args`; true on exit 0.
bool RunPython(const std::string& name, const std::string& script, const std::string& args) {
  const std::string path = TempPath(name + ".py");
  WriteBytes(path, script);
  return std::system(absl::StrCat(TALLY_PYTHON, " ", path, " ", args).c_str()) == 0;
}

std::vector<float> ReadF32(const std::string& path) {
  const std::string bytes = ReadBytes(path);
  std::vector<float> values(bytes.size() / 4);
  std::memcpy(values.data(), bytes.data(), values.size() * 4);  // Little-endian hosts.
  return values;
}

// Little-endian bytes of each value, as a given integer type.
template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return out;
}

// A safetensors file: u64 header length, the header, the data.
std::string Safetensors(const std::string& header, const std::string& data) {
  return Bytes<uint64_t>({header.size()}) + header + data;
}

std::vector<std::string> Names(const ModelLayout& layout) {
  std::vector<std::string> names;
  for (const TensorLayout& t : layout.tensors()) names.push_back(t.name);
  return names;
}

// What the numpy script below writes: arrays in this order (numpy keeps
// the keyword order), and the concatenation of their float32 values as
// numpy converts them, as a raw file to compare with.
constexpr char kNumpyScript[] = R"(
import sys
import numpy as np
path, expected, mode = sys.argv[1:4]
rng = np.random.default_rng(7)
arrays = {
    "conv1.weight": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.5 - 3),
    "bn1.running_var": np.array([0.1, 1.0, 1e-7], dtype=np.float64),
    "bn1.num_batches_tracked": np.array(12345, dtype=np.int64),
    "fc.bias": np.array([1.0, -2.5, 65504.0], dtype=np.float16),
    "fc.weight": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "mask": np.array([True, False], dtype=np.bool_),
    "big.be": np.array([1.5, -7.25], dtype=">f4"),
    "large": rng.standard_normal(300000).astype(np.float32),
}
class Unseekable:  # As a pipe: zipfile then streams members with data descriptors.
    def __init__(self, f): self.f = f
    def write(self, b): return self.f.write(b)
    def flush(self): self.f.flush()
    def read(self, n=-1): raise OSError("write only")  # numpy's zipfile_factory wants one.
if mode == "stored":
    np.savez(path, **arrays)
elif mode == "compressed":
    np.savez_compressed(path, **arrays)
else:
    with open(path, "wb") as f:
        np.savez_compressed(Unseekable(f), **arrays)
np.concatenate([a.astype(np.float32).ravel() for a in arrays.values()]).astype("<f4").tofile(expected)
)";

// `mode`: stored (np.savez), compressed (np.savez_compressed), streamed
// (np.savez_compressed to an unseekable file).
void CheckNumpyFile(const std::string& mode) {
  const std::string path = TempPath(absl::StrCat("numpy_", mode, ".npz"));
  const std::string expected = TempPath(absl::StrCat("numpy_", mode, ".f32"));
  ASSERT_TRUE(RunPython(absl::StrCat("numpy_", mode), kNumpyScript,
                        absl::StrCat(path, " ", expected, " ", mode)));
  TALLY_ASSERT_OK_AND_ASSIGN(ModelFile file, ReadModelFile(path));
  EXPECT_THAT(Names(file.layout),
              ElementsAre("conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "fc.bias",
                          "fc.weight", "mask", "big.be", "large"));
  EXPECT_THAT(file.layout.tensors()[0].shape, ElementsAre(2, 3, 4));
  EXPECT_TRUE(file.layout.tensors()[2].shape.empty());  // A 0-D array: a scalar.
  EXPECT_THAT(file.layout.tensors()[4].shape, ElementsAre(2, 3));
  EXPECT_THAT(file.dtypes, ElementsAre("<f4", "<f8", "<i8", "<f2", "<f4", "|b1", ">f4", "<f4"));
  EXPECT_THAT(file.integer_tensors, ElementsAre("bn1.num_batches_tracked", "mask"));
  const std::vector<float> want = ReadF32(expected);
  ASSERT_EQ(file.params.size(), want.size());
  EXPECT_EQ(file.params, want);  // Bit for bit what numpy's astype(float32) gives.
  // A few by hand: -3 + 0.5 i; 12345 exactly; float16 65504 (its maximum);
  // the Fortran-order array in C order; the big-endian floats.
  EXPECT_EQ(file.params[1], -2.5f);
  EXPECT_EQ(file.params[27], 12345.0f);
  EXPECT_EQ(file.params[30], 65504.0f);
  EXPECT_THAT(std::vector<float>(file.params.begin() + 31, file.params.begin() + 37),
              ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_THAT(std::vector<float>(file.params.begin() + 37, file.params.begin() + 41),
              ElementsAre(1, 0, 1.5f, -7.25f));

  TALLY_ASSERT_OK_AND_ASSIGN(ModelFile layout_only, ReadModelFileLayout(path));
  EXPECT_EQ(layout_only.layout.Hash(), file.layout.Hash());
  EXPECT_TRUE(layout_only.params.empty());
}

TEST(ModelFileTest, ReadsNumpySavez) { CheckNumpyFile("stored"); }

TEST(ModelFileTest, ReadsNumpySavezCompressed) { CheckNumpyFile("compressed"); }

TEST(ModelFileTest, ReadsNumpySavezStreamedWithDataDescriptors) { CheckNumpyFile("streamed"); }

// Every float dtype, with float32 values computed by hand from the bits.
TEST(ModelFileTest, ReadsHandBuiltSafetensorsInEveryFloatDtype) {
  const std::string data =
      // "half" F16 [4]: 0x3C00 = 1.0, 0xC000 = -2.0, 0x7BFF = 65504 (max),
      // 0x0001 = 2^-24 (the smallest subnormal).
      Bytes<uint16_t>({0x3C00, 0xC000, 0x7BFF, 0x0001}) +
      // "brain" BF16 [2]: 0x4049 = 3.140625, 0xBF80 = -1.0.
      Bytes<uint16_t>({0x4049, 0xBF80}) +
      // "single" F32 [1, 2]: 0x3FC00000 = 1.5, 0xC1200000 = -10.
      Bytes<uint32_t>({0x3FC00000, 0xC1200000}) +
      // "double" F64 []: 0x3FB999999999999A = 0.1, rounded to float 0.1f.
      Bytes<uint64_t>({0x3FB999999999999AULL});
  // Keys in another order than the data: the order is the data's.
  const std::string header = R"({"double":{"dtype":"F64","shape":[],"data_offsets":[20,28]},)"
                             R"("__metadata__":{"format":"pt","note":"caf\u00e9 \"x\""},)"
                             R"("brain":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
                             R"("single":{"shape":[1,2],"data_offsets":[12,20],"dtype":"F32"},)"
                             R"("half":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}   )";
  const std::string path = TempPath("dtypes.safetensors");
  WriteBytes(path, Safetensors(header, data));
  TALLY_ASSERT_OK_AND_ASSIGN(ModelFile file, ReadModelFile(path));
  EXPECT_THAT(Names(file.layout), ElementsAre("half", "brain", "single", "double"));
  EXPECT_THAT(file.dtypes, ElementsAre("F16", "BF16", "F32", "F64"));
  EXPECT_THAT(file.layout.tensors()[2].shape, ElementsAre(1, 2));
  EXPECT_TRUE(file.integer_tensors.empty());
  EXPECT_THAT(file.params, ElementsAre(1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24), 3.140625f,
                                       -1.0f, 1.5f, -10.0f, 0.1f));
  ASSERT_EQ(file.metadata.size(), 2u);
  EXPECT_EQ(file.metadata[1].second, "caf\xc3\xa9 \"x\"");
}

TEST(ModelFileTest, SafetensorsIntegersAreExactFloats) {
  const std::string data = Bytes<int64_t>({7, -16777216}) + std::string("\xff\x01\x00", 3);
  const std::string header =
      R"({"bn.num_batches_tracked":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
      R"("u":{"dtype":"U8","shape":[1],"data_offsets":[16,17]},)"
      R"("b":{"dtype":"BOOL","shape":[2],"data_offsets":[17,19]}})";
  const std::string path = TempPath("ints.safetensors");
  WriteBytes(path, Safetensors(header, data));
  TALLY_ASSERT_OK_AND_ASSIGN(ModelFile file, ReadModelFile(path));
  EXPECT_THAT(file.params, ElementsAre(7.0f, -16777216.0f, 255.0f, 1.0f, 0.0f));
  EXPECT_THAT(file.integer_tensors, ElementsAre("bn.num_batches_tracked", "u", "b"));
}

TEST(ModelFileTest, RoundTripsBothFormats) {
  TALLY_ASSERT_OK_AND_ASSIGN(
      ModelLayout layout,
      ModelLayout::Create({{"layer.0/w", {2, 3}}, {"layer.0/b", {3}}, {"scale", {}}}));
  const std::vector<float> params = {1.5f, -2.0f, 3.25f, 0.0f,  1e-30f,
                                     7.0f, -0.0f, 1e30f, 42.0f, 0.125f};
  for (const char* ext : {".safetensors", ".npz"}) {
    const std::string path = TempPath(absl::StrCat("round_trip", ext));
    ASSERT_THAT(WriteModelFile(path, layout, params, {{{"tally_version", "12"}}}), IsOk());
    TALLY_ASSERT_OK_AND_ASSIGN(ModelFile file, ReadModelFile(path));
    EXPECT_EQ(file.layout.Hash(), layout.Hash()) << ext;
    EXPECT_EQ(file.params, params) << ext;
    EXPECT_EQ(std::signbit(file.params[6]), true) << ext;
    if (std::string(ext) == ".safetensors") {
      EXPECT_EQ(ReadBytes(path).size() % 8, 0u);  // 8-aligned data, 4-byte floats.
      EXPECT_THAT(file.metadata,
                  ElementsAre(std::pair<std::string, std::string>("format", "pt"),
                              std::pair<std::string, std::string>("tally_version", "12")));
    }
  }
  EXPECT_THAT(WriteModelFile(TempPath("short.npz"), layout, std::vector<float>(3)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(WriteModelFile(TempPath("model.bin"), layout, params),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// What tally writes, read by the other side's own tools: np.load for .npz
// (zip64 records forced, as a model over 4 GiB needs them), and for
// safetensors a parser written from the format's description (json +
// numpy; the safetensors package is not a dependency).
TEST(ModelFileTest, WrittenFilesReadByNumpyAndTheSafetensorsSpec) {
  TALLY_ASSERT_OK_AND_ASSIGN(
      ModelLayout layout,
      ModelLayout::Create({{"conv.weight", {2, 1, 2}}, {"conv.bias", {2}}, {"caf\xc3\xa9", {}}}));
  const std::vector<float> params = {0.5f, -1.0f, 2.0f, 3.5f, 0.25f, -8.0f, 9.0f};
  const std::string npz = TempPath("for_numpy.npz");
  const std::string npz64 = TempPath("for_numpy64.npz");
  const std::string st = TempPath("for_spec.safetensors");
  ASSERT_THAT(WriteModelFile(npz, layout, params), IsOk());
  WriteModelFileOptions zip64;
  zip64.force_zip64 = true;
  ASSERT_THAT(WriteModelFile(npz64, layout, params, zip64), IsOk());
  ASSERT_THAT(WriteModelFile(st, layout, params), IsOk());
  constexpr char kCheck[] = R"(
import json, struct, sys, zipfile
import numpy as np
want = {"conv.weight": np.array([0.5, -1, 2, 3.5], np.float32).reshape(2, 1, 2),
        "conv.bias": np.array([0.25, -8], np.float32), "caf\u00e9": np.array(9, np.float32)}
for path in sys.argv[1:3]:
    assert zipfile.ZipFile(path).testzip() is None
    with np.load(path) as f:
        assert list(f.keys()) == list(want), list(f.keys())
        for k, v in want.items():
            assert f[k].dtype == np.float32 and f[k].shape == v.shape, (k, f[k].dtype, f[k].shape)
            assert np.array_equal(f[k], v), (k, f[k])
raw = open(sys.argv[3], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
assert header.pop("__metadata__") == {"format": "pt"}
data = raw[8 + n:]
assert list(header) == list(want), list(header)
for k, v in want.items():
    e = header[k]
    assert e["dtype"] == "F32" and tuple(e["shape"]) == v.shape, e
    b, end = e["data_offsets"]
    assert np.array_equal(np.frombuffer(data[b:end], "<f4").reshape(v.shape), v), k
print("ok")
)";
  EXPECT_TRUE(RunPython("check_written", kCheck, absl::StrCat(npz, " ", npz64, " ", st)));
  TALLY_ASSERT_OK_AND_ASSIGN(ModelFile back, ReadModelFile(npz64));  // Our zip64 reader too.
  EXPECT_EQ(back.params, params);
}

// Expects reading `bytes` as `name` to fail with INVALID_ARGUMENT naming the
// file and `problem`; ReadModelFileLayout too unless the problem is in the
// values, which it does not read.
enum class In { kLayout, kValues };
void ExpectInvalid(const std::string& name, const std::string& bytes, const std::string& problem,
                   In in = In::kLayout) {
  const std::string path = TempPath(name);
  WriteBytes(path, bytes);
  if (in == In::kValues) {
    EXPECT_THAT(ReadModelFileLayout(path), IsOk()) << name;
  }
  for (bool layout_only : {false, true}) {
    if (layout_only && in == In::kValues) continue;
    absl::StatusOr<ModelFile> read = layout_only ? ReadModelFileLayout(path) : ReadModelFile(path);
    EXPECT_THAT(read, StatusIs(absl::StatusCode::kInvalidArgument)) << name;
    EXPECT_THAT(std::string(read.status().message()), HasSubstr(path)) << name;
    EXPECT_THAT(std::string(read.status().message()), HasSubstr(problem)) << name;
  }
}

// One F32 tensor "t" of `shape` with offsets [b, e] over `data`.
std::string OneTensor(const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e,
                      const std::string& data) {
  return Safetensors(absl::StrCat(R"({"t":{"dtype":")", dtype, R"(","shape":)", shape,
                                  R"(,"data_offsets":[)", b, ",", e, "]}}"),
                     data);
}

TEST(ModelFileTest, MissingFileAndUnknownExtension) {
  EXPECT_THAT(ReadModelFile(TempPath("nope.safetensors")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ReadModelFileLayout(TempPath("nope.npz")), StatusIs(absl::StatusCode::kNotFound));
  ExpectInvalid("model.pt", "whatever", "unknown model file extension");
}

TEST(ModelFileTest, RejectsEmptyAndTruncatedFiles) {
  ExpectInvalid("empty.safetensors", "", "empty file");
  ExpectInvalid("empty.npz", "", "empty file");
  ExpectInvalid("short.safetensors", "abc", "truncated");
  const std::string good = OneTensor("F32", "[2]", 0, 8, Bytes<float>({1, 2}));
  ExpectInvalid("cut_data.safetensors", good.substr(0, good.size() - 3),
                "data_offsets [0, 8] run past the end of the data (5 bytes");
  ExpectInvalid("cut_header.safetensors", good.substr(0, 20), "exceeds the file");
  ExpectInvalid("not_zip.npz", std::string(100, 'x'), "not a ZIP archive");
}

TEST(ModelFileTest, RejectsMalformedSafetensorsHeaders) {
  const std::string data = Bytes<float>({1, 2});
  ExpectInvalid("huge_length.safetensors", Bytes<uint64_t>({1ULL << 62}) + "{}",
                "exceeds the limit");
  ExpectInvalid("not_json.safetensors", Safetensors("[1, 2]", data),
                "malformed safetensors header");
  ExpectInvalid("trailing_comma.safetensors",
                Safetensors(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})", data),
                "expected a string");
  ExpectInvalid("duplicate.safetensors",
                Safetensors(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                            data),
                "key 't' repeats");
  ExpectInvalid(
      "extra_key.safetensors",
      Safetensors(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":"1"}})", data),
      "unexpected key 'x'");
  ExpectInvalid("missing_key.safetensors",
                Safetensors(R"({"t":{"dtype":"F32","shape":[2]}})", data),
                "needs 'dtype', 'shape' and 'data_offsets'");
  ExpectInvalid("negative.safetensors", OneTensor("F32", "[-2]", 0, 8, data),
                "non-negative integer");
  ExpectInvalid("float_dim.safetensors", OneTensor("F32", "[2.0]", 0, 8, data), "expected ']'");
  ExpectInvalid("overflow.safetensors", OneTensor("F32", "[99999999999999999999]", 0, 8, data),
                "overflows 64 bits");
  ExpectInvalid("no_tensors.safetensors", Safetensors(R"({"__metadata__":{}})", ""),
                "holds no tensors");
  ExpectInvalid("bad_escape.safetensors",
                Safetensors(R"({"\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
                "unpaired surrogate");
}

TEST(ModelFileTest, RejectsUnsupportedDtypesAndLyingOffsets) {
  const std::string data = Bytes<float>({1, 2});
  ExpectInvalid("f8.safetensors", OneTensor("F8_E4M3", "[8]", 0, 8, data),
                "unsupported dtype 'F8_E4M3'");
  ExpectInvalid("past_end.safetensors", OneTensor("F32", "[4]", 0, 16, data),
                "run past the end of the data");
  ExpectInvalid("wrong_size.safetensors", OneTensor("F32", "[3]", 0, 8, data),
                "(8 bytes), but shape [3] of F32 needs 12 bytes");
  ExpectInvalid("backwards.safetensors", OneTensor("F16", "[2]", 8, 4, data),
                "data_offsets [8, 4] end before they begin");
  ExpectInvalid("gap.safetensors", OneTensor("F32", "[1]", 4, 8, data), "starts at data offset 4");
  ExpectInvalid("trailing.safetensors", OneTensor("F32", "[1]", 0, 4, data),
                "4 bytes after the last tensor");
  ExpectInvalid("overlap.safetensors",
                Safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            data),
                "starts at data offset 4, expected 8");
  // 2^40 x 2^40 elements overflows 64 bits when multiplied naively.
  ExpectInvalid("huge_shape.safetensors",
                OneTensor("F32", "[1099511627776,1099511627776]", 0, 8, data),
                "more than 2^34 elements");
  ExpectInvalid("zero_dim.safetensors", OneTensor("F32", "[0,2]", 0, 0, ""),
                "every dimension >= 1");
}

TEST(ModelFileTest, RejectsNonFiniteValuesAndInexactIntegers) {
  ExpectInvalid("nan.safetensors",
                OneTensor("F32", "[2]", 0, 8, Bytes<uint32_t>({0x3F800000, 0x7FC00000})),
                "tensor 't' element 1 is NaN", In::kValues);
  ExpectInvalid("inf16.safetensors", OneTensor("F16", "[1]", 0, 2, Bytes<uint16_t>({0x7C00})),
                "infinite", In::kValues);
  ExpectInvalid("f64_range.safetensors", OneTensor("F64", "[1]", 0, 8, Bytes<double>({1e300})),
                "beyond float32's range", In::kValues);
  ExpectInvalid("i64_big.safetensors", OneTensor("I64", "[1]", 0, 8, Bytes<int64_t>({16777217})),
                "element 0 (16777217) is beyond +-2^24", In::kValues);
  ExpectInvalid("u64_big.safetensors",
                OneTensor("U64", "[1]", 0, 8, Bytes<uint64_t>({~uint64_t{0}})),
                "(18446744073709551615) is beyond +-2^24", In::kValues);
}

TEST(ModelFileTest, RejectsNamesTallyCannotCarry) {
  const std::string data = Bytes<float>({1, 2});
  ExpectInvalid("colon.safetensors",
                Safetensors(R"({"a:b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
                "holds ';', ':' or ','");
  ExpectInvalid(
      "latin1.safetensors",
      Safetensors("{\"caf\xe9\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data),
      "not valid UTF-8");
}

// A numpy-written .npz, patched.
std::string NumpyNpz(bool compressed) {
  const std::string path = TempPath(compressed ? "patch_c.npz" : "patch_s.npz");
  constexpr char kScript[] = R"(
import sys
import numpy as np
a = {"w": np.arange(4, dtype=np.float32), "b": np.array([0.5, 0.25], dtype=np.float32)}
(np.savez_compressed if sys.argv[2] == "1" else np.savez)(sys.argv[1], **a)
)";
  EXPECT_TRUE(RunPython("patch", kScript, absl::StrCat(path, " ", compressed ? 1 : 0)));
  return ReadBytes(path);
}

// The offset of the `index`-th central directory record.
size_t CentralRecord(const std::string& zip, int index) {
  size_t at = 0;
  for (int i = 0; i <= index; ++i) at = zip.find("PK\x01\x02", i == 0 ? 0 : at + 4);
  return at;
}

void Patch32(std::string* bytes, size_t at, uint32_t value) {
  std::memcpy(bytes->data() + at, &value, 4);
}

TEST(ModelFileTest, RejectsMalformedNpz) {
  const std::string stored = NumpyNpz(false);
  const std::string compressed = NumpyNpz(true);
  ASSERT_FALSE(stored.empty());
  ExpectInvalid("cut.npz", stored.substr(0, stored.size() / 2), "no end of central directory");
  ExpectInvalid("cut_tail.npz", stored.substr(0, stored.size() - 1), "no end of central directory");
  std::string crc = stored;
  crc[crc.find("\x93NUMPY") + 128] ^= 1;  // A data byte of the first member.
  ExpectInvalid("crc.npz", crc, "CRC-32 mismatch", In::kValues);
  // The first record's uncompressed size (offset 24) claims 2000x the
  // compressed size: no deflate stream expands so much.
  std::string bomb = compressed;
  Patch32(&bomb, CentralRecord(bomb, 0) + 24, 0x7fffffff);
  ExpectInvalid("bomb.npz", bomb, "more than deflate can produce");
  // The second record's local header offset (offset 42) points at the
  // first member.
  std::string overlap = stored;
  Patch32(&overlap, CentralRecord(overlap, 1) + 42, 0);
  ExpectInvalid("overlap.npz", overlap, "does not match the central directory");
  std::string outside = stored;
  Patch32(&outside, CentralRecord(outside, 0) + 42, 0x7fffffff);
  ExpectInvalid("outside.npz", outside, "outside the archive");
  std::string method = compressed;
  method[CentralRecord(method, 0) + 10] = 12;  // bzip2.
  ExpectInvalid("bzip2.npz", method, "compression method 12");
  std::string deflate = compressed;
  deflate[deflate.find("PK\x03\x04") + 30 + 5 + 20 + 2] ^= 0x55;  // Inside the first stream.
  const std::string path = TempPath("deflate.npz");
  WriteBytes(path, deflate);
  EXPECT_THAT(ReadModelFile(path), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelFileTest, RejectsNpzMembersThatAreNotArraysTallyReads) {
  constexpr char kScript[] = R"(
import sys, zipfile
import numpy as np
np.savez(sys.argv[1], c=np.array([1 + 2j], dtype=np.complex64))
np.savez(sys.argv[2], a=np.zeros((2, 0), np.float32))
with zipfile.ZipFile(sys.argv[3], "w") as z:
    z.writestr("readme.txt", "hello")
with zipfile.ZipFile(sys.argv[4], "w") as z:
    z.writestr("w.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}")
np.savez(sys.argv[5], **{"a:b": np.zeros(2, np.float32)})
np.savez(sys.argv[6], x=np.array([2.0**30], np.float64), y=np.array([1 << 40]))
)";
  std::vector<std::string> paths;
  for (const char* name : {"complex", "zero", "text", "badnpy", "colon", "ints"}) {
    paths.push_back(TempPath(absl::StrCat("member_", name, ".npz")));
  }
  ASSERT_TRUE(RunPython("members", kScript, absl::StrJoin(paths, " ")));
  const std::pair<int, const char*> cases[] = {
      {0, "member 'c.npy': unsupported dtype '<c8'"},
      {1, "tensor 'a' has shape [2, 0]"},
      {2, "member 'readme.txt' is not a .npy array"},
      {3, "member 'w.npy': header has no 'fortran_order'"},
      {4, "holds ';', ':' or ','"},
      {5, "tensor 'y' element 0 (1099511627776) is beyond +-2^24"}};
  for (const auto& [index, problem] : cases) {
    absl::StatusOr<ModelFile> read = ReadModelFile(paths[index]);
    EXPECT_THAT(read, StatusIs(absl::StatusCode::kInvalidArgument)) << problem;
    EXPECT_THAT(std::string(read.status().message()), HasSubstr(problem));
  }
  // The big float64 is fine (a float, exactly 2^30); only the integer is refused,
  // and only once values are read.
  EXPECT_THAT(ReadModelFileLayout(paths[5]), IsOk());
}

}  // namespace
}  // namespace tally
