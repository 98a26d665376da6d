// libFuzzer target for the model file readers (core/model_file.h), built
// with clang -fsanitize=fuzzer,address,undefined by scripts/fuzz.sh. The
// input is a file's bytes; TALLY_FUZZ_FORMAT=safetensors|npz picks the
// reader (default: the input's first byte, even = safetensors). Given
// `--seeds=DIR` instead of fuzzing, it writes valid seed files there.
//
// Beyond ASan/UBSan's reports it checks that
//  - a refusal is INVALID_ARGUMENT (never a crash, a hang or a huge
//    allocation: run with -rss_limit_mb);
//  - a file whose values read also reads as a layout, the same one;
//  - values that read are layout.NumParams() finite floats, and write back
//    (WriteModelFile) to a file that reads back bit for bit.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/model_file.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "model_file_fuzzer: %s\n", what);
    std::abort();
  }
}

// Under $TMPDIR (scripts/fuzz.sh points it into the build directory).
std::string Path(const char* ext) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/model_file_fuzz_" +
         std::to_string(::getpid()) + ext;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const forced = std::getenv("TALLY_FUZZ_FORMAT");
  bool safetensors = size > 0 && data[0] % 2 == 0;
  if (forced != nullptr) safetensors = std::strcmp(forced, "safetensors") == 0;
  const std::string path = Path(safetensors ? ".safetensors" : ".npz");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  absl::StatusOr<tally::ModelFile> layout = tally::ReadModelFileLayout(path);
  absl::StatusOr<tally::ModelFile> full = tally::ReadModelFile(path);
  if (!layout.ok()) {
    Check(layout.status().code() == absl::StatusCode::kInvalidArgument,
          "layout: not INVALID_ARGUMENT");
  }
  if (!full.ok()) {
    Check(full.status().code() == absl::StatusCode::kInvalidArgument, "full: not INVALID_ARGUMENT");
    return 0;
  }
  Check(layout.ok(), "values read but the layout did not");
  Check(layout->layout.Hash() == full->layout.Hash(), "layouts differ");
  Check(full->params.size() == full->layout.NumParams(), "wrong parameter count");
  for (float v : full->params) Check(std::isfinite(v), "non-finite value");
  const std::string copy = Path(safetensors ? ".copy.npz" : ".copy.safetensors");
  Check(tally::WriteModelFile(copy, full->layout, full->params).ok(), "write back failed");
  absl::StatusOr<tally::ModelFile> back = tally::ReadModelFile(copy);
  Check(back.ok() && back->layout.Hash() == full->layout.Hash() &&
            std::memcmp(back->params.data(), full->params.data(), 4 * full->params.size()) == 0,
        "write back does not read back");
  return 0;
}

// Seeds: `model_file_fuzzer --seeds=DIR` (libFuzzer's own flags start with
// '-' too, but never "--seeds=").
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.rfind("--seeds=", 0) != 0) continue;
    const std::string dir = arg.substr(8);
    absl::StatusOr<tally::ModelLayout> layout =
        tally::ModelLayout::Create({{"conv.weight", {2, 3}}, {"bias", {3}}, {"scale", {}}});
    Check(layout.ok(), "seed layout");
    const std::vector<float> params = {1, -2, 0.5f, 3, 4, 5, 6, 7, 8, 9};
    tally::WriteModelFileOptions zip64;
    zip64.force_zip64 = true;
    const struct {
      const char* name;
      tally::WriteModelFileOptions options;
    } seeds[] = {{"seed.safetensors", {}}, {"seed.npz", {}}, {"seed64.npz", zip64}};
    for (const auto& seed : seeds) {
      Check(tally::WriteModelFile(dir + "/" + seed.name, *layout, params, seed.options).ok(),
            "seed write");
    }
    std::exit(0);
  }
  return 0;
}
