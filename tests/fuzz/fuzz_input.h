// The codec fuzzer's input format, shared by the fuzzer and the corpus
// generator: an 18-byte header choosing the codec and its spec, then the
// payload (decode mode) or the float32 vector to encode (encode mode).
//   byte 0      codec id (CodecId; unknown ids are rejected by ValidateSpec)
//   byte 1      flags: bit 0 zstd, bit 1 half_values, bit 2 rescale,
//               bit 7 encode mode
//   bytes 2-3   d − 1 (uint16, little-endian; d <= 4096, taken mod 4096)
//   bytes 4-5   block_size (uint16)
//   bytes 6-7   levels (uint16)
//   bytes 8-9   k (uint16; 0 = ratio 0.05)
//   bytes 10-17 seed (uint64)
#ifndef TALLY_TESTS_FUZZ_FUZZ_INPUT_H_
#define TALLY_TESTS_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "compress/codec.h"

namespace tally::compress::fuzz {

inline constexpr size_t kHeaderBytes = 18;
inline constexpr size_t kMaxFuzzDim = 4096;
inline constexpr uint8_t kEncodeMode = 0x80;

struct FuzzInput {
  CodecSpec spec;
  size_t d = 0;
  bool encode = false;
  const uint8_t* body = nullptr;
  size_t body_size = 0;
};

inline bool ParseFuzzInput(const uint8_t* data, size_t size, FuzzInput* in) {
  if (size < kHeaderBytes) return false;
  auto u16 = [&](size_t at) { return static_cast<uint32_t>(data[at] | (data[at + 1] << 8)); };
  in->spec = CodecSpec();
  in->spec.id = static_cast<CodecId>(data[0]);
  in->spec.zstd = (data[1] & 1) != 0;
  in->spec.half_values = (data[1] & 2) != 0;
  in->spec.rescale = (data[1] & 4) != 0;
  in->encode = (data[1] & kEncodeMode) != 0;
  in->d = 1 + u16(2) % kMaxFuzzDim;
  in->spec.block_size = u16(4);
  in->spec.levels = u16(6);
  in->spec.k = u16(8);
  in->spec.ratio = 0.05f;
  std::memcpy(&in->spec.seed, data + 10, 8);
  in->body = data + kHeaderBytes;
  in->body_size = size - kHeaderBytes;
  return true;
}

// The header for (spec, d); the caller appends the body. Requires the spec's
// fields to fit the format (d <= 4096, k, block_size, levels < 2^16, default
// ratio and zstd level).
inline std::string FuzzHeader(const CodecSpec& spec, size_t d, bool encode) {
  std::string h(kHeaderBytes, '\0');
  auto put16 = [&](size_t at, uint32_t v) {
    h[at] = static_cast<char>(v & 0xff);
    h[at + 1] = static_cast<char>((v >> 8) & 0xff);
  };
  h[0] = static_cast<char>(spec.id);
  h[1] = static_cast<char>((spec.zstd ? 1 : 0) | (spec.half_values ? 2 : 0) |
                           (spec.rescale ? 4 : 0) | (encode ? kEncodeMode : 0));
  put16(2, static_cast<uint32_t>(d - 1));
  put16(4, spec.block_size);
  put16(6, spec.levels);
  put16(8, static_cast<uint32_t>(spec.k));
  std::memcpy(&h[10], &spec.seed, 8);
  return h;
}

}  // namespace tally::compress::fuzz

#endif  // TALLY_TESTS_FUZZ_FUZZ_INPUT_H_
