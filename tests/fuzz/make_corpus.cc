// Writes the codec fuzzer's seed corpus into the directory given as argv[1]:
// every hand-made malformed payload of tests/compress_corpus.h, valid
// payloads of every codec (several specs and dimensions, with and without
// zstd), and encode-mode inputs.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "tests/compress_corpus.h"
#include "tests/fuzz/fuzz_input.h"

namespace tc = tally::compress;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int written = 0;
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
    ++written;
  };
  for (const tc::testing::MalformedCase& c : tc::testing::MalformedCorpus()) {
    write("bad_" + c.name, tc::fuzz::FuzzHeader(c.spec, c.d, false) + c.payload);
  }
  for (const tc::CodecInfo& info : tc::AllCodecs()) {
    for (size_t d : {size_t{1}, size_t{9}, size_t{64}, size_t{300}}) {
      for (int variant = 0; variant < 4; ++variant) {
        tc::CodecSpec spec = tc::DefaultSpec(info.id);
        spec.zstd = (variant & 1) != 0;
        spec.half_values = (variant & 2) != 0;
        spec.block_size = variant >= 2 ? 7 : spec.block_size;
        spec.levels = info.id == tc::CodecId::kQsgd && variant >= 2 ? 3 : spec.levels;
        spec.k = info.id == tc::CodecId::kSpsa ? 2 : 0;
        spec.ratio = 0.05f;
        spec.seed = 17 + variant;
        std::vector<float> x(d);
        for (size_t j = 0; j < d; ++j) x[j] = std::sin(0.7f * j) * (j % 4 == 0 ? 0.0f : 3.0f);
        std::string payload;
        if (!tc::Encode(spec, x, &payload).ok()) continue;
        const std::string name =
            std::string(info.name) + "_d" + std::to_string(d) + "_v" + std::to_string(variant);
        write("ok_" + name, tc::fuzz::FuzzHeader(spec, d, false) + payload);
        write("enc_" + name, tc::fuzz::FuzzHeader(spec, d, true) +
                                 std::string(reinterpret_cast<const char*>(x.data()), 4 * d));
      }
    }
  }
  std::printf("make_codec_corpus: %d inputs in %s\n", written, dir.c_str());
  return 0;
}
