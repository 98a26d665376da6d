// Hand-made malformed payloads for every decoder in compress/, each with the
// spec and d it is decoded with and a piece of the expected error message.
// Used by compress_malformed_test.cc (each must give INVALID_ARGUMENT and
// leave the accumulator unchanged) and by tests/fuzz/ as the fuzzers' seed
// corpus.
#ifndef TALLY_TESTS_COMPRESS_CORPUS_H_
#define TALLY_TESTS_COMPRESS_CORPUS_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "compress/codec.h"

namespace tally::compress::testing {

struct MalformedCase {
  std::string name;
  CodecSpec spec;
  size_t d;
  std::string payload;
  std::string expect;  // A substring of the error message.
};

inline std::string F32(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) out.append(reinterpret_cast<const char*>(&v), 4);
  return out;
}

inline std::string U16(std::initializer_list<uint16_t> values) {
  std::string out;
  for (uint16_t v : values) out.append(reinterpret_cast<const char*>(&v), 2);
  return out;
}

inline std::string U64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

inline std::string Bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

inline std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

inline CodecSpec Spec(CodecId id) { return DefaultSpec(id); }

// A zstd frame header by hand (RFC 8878 §3.1.1.1): magic, a descriptor with
// Single_Segment set and an 8-byte Frame_Content_Size, then one raw block.
inline std::string ZstdRawFrame(uint64_t declared_size, const std::string& content) {
  std::string out = Bytes({0x28, 0xb5, 0x2f, 0xfd, 0xe0});
  out += U64(declared_size);
  const uint32_t header = (static_cast<uint32_t>(content.size()) << 3) | 1u;  // Last, raw.
  out += Bytes({static_cast<int>(header & 0xff), static_cast<int>((header >> 8) & 0xff),
                static_cast<int>((header >> 16) & 0xff)});
  return out + content;
}

inline std::vector<MalformedCase> MalformedCorpus() {
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  const float kInf = std::numeric_limits<float>::infinity();
  const float kMax = std::numeric_limits<float>::max();
  std::vector<MalformedCase> cases;
  auto add = [&](std::string name, CodecSpec spec, size_t d, std::string payload,
                 std::string expect) {
    cases.push_back({std::move(name), spec, d, std::move(payload), std::move(expect)});
  };

  // float32, d = 4: 16 bytes.
  const CodecSpec f32 = Spec(CodecId::kFloat32);
  add("f32_empty", f32, 4, "", "truncated");
  add("f32_truncated", f32, 4, F32({1, 2, 3}) + "\x01", "truncated");
  add("f32_trailing", f32, 4, F32({1, 2, 3, 4}) + Bytes({0}), "trailing");
  add("f32_nan", f32, 4, F32({1, kNaN, 3, 4}), "value 1");
  add("f32_inf", f32, 4, F32({1, 2, 3, -kInf}), "value 3");

  // float16 / bfloat16, d = 4: 8 bytes.
  const CodecSpec f16 = Spec(CodecId::kFloat16);
  add("f16_truncated", f16, 4, U16({0x3c00, 0x3c00, 0x3c00}), "truncated");
  add("f16_trailing", f16, 4, U16({0x3c00, 0x3c00, 0x3c00, 0x3c00, 0}), "trailing");
  add("f16_inf", f16, 4, U16({0x3c00, 0x7c00, 0, 0}), "value 1");
  add("f16_neg_inf", f16, 4, U16({0x3c00, 0, 0, 0xfc00}), "value 3");
  add("f16_nan", f16, 4, U16({0x7e00, 0, 0, 0}), "value 0");
  add("f16_nan_payload", f16, 4, U16({0, 0, 0x7c01, 0}), "value 2");
  const CodecSpec bf16 = Spec(CodecId::kBfloat16);
  add("bf16_truncated", bf16, 4, U16({0x3f80}), "truncated");
  add("bf16_inf", bf16, 4, U16({0x3f80, 0x7f80, 0, 0}), "value 1");
  add("bf16_nan", bf16, 4, U16({0x3f80, 0, 0xffc1, 0}), "value 2");

  // int8, d = 10, blocks of 4: 3 scales + 10 bytes = 22 bytes.
  CodecSpec i8 = Spec(CodecId::kInt8);
  i8.block_size = 4;
  const std::string q10 = Bytes({1, -1, 127, -127, 0, 5, 6, 7, 8, 9});
  add("int8_truncated", i8, 10, F32({1, 1, 1}) + q10.substr(0, 9), "truncated");
  add("int8_trailing", i8, 10, F32({1, 1, 1}) + q10 + Bytes({0}), "trailing");
  add("int8_scales_only", i8, 10, F32({1, 1, 1}), "truncated");
  add("int8_nan_scale", i8, 10, F32({1, kNaN, 1}) + q10, "block 1");
  add("int8_inf_scale", i8, 10, F32({1, 1, kInf}) + q10, "block 2");
  add("int8_negative_scale", i8, 10, F32({-1, 1, 1}) + q10, "block 0");
  add("int8_scale_overflows", i8, 10, F32({kMax, 1, 1}) + q10, "block 0");
  add("int8_minus_128", i8, 10, F32({1, 1, 1}) + Bytes({1, 2, 3, 4, 5, 6, -128, 0, 0, 0}),
      "value 6");

  // qsgd, s = 4 (4-bit codes), one bucket, d = 4: 4 + 2 bytes.
  CodecSpec qs = Spec(CodecId::kQsgd);
  qs.levels = 4;
  qs.block_size = 0;
  add("qsgd_truncated", qs, 4, F32({1.3f}) + Bytes({0x32}), "truncated");
  add("qsgd_trailing", qs, 4, F32({1.3f}) + Bytes({0x32, 0x80, 0}), "trailing");
  add("qsgd_nan_norm", qs, 4, F32({kNaN}) + Bytes({0x32, 0x80}), "bucket 0");
  add("qsgd_inf_norm", qs, 4, F32({kInf}) + Bytes({0x32, 0x80}), "bucket 0");
  add("qsgd_negative_norm", qs, 4, F32({-1.3f}) + Bytes({0x32, 0x80}), "bucket 0");
  add("qsgd_level_above_s", qs, 4, F32({1.3f}) + Bytes({0x32, 0xa0}), "level 5 of entry 3");
  add("qsgd_signed_zero_level", qs, 4, F32({1.3f}) + Bytes({0x32, 0x81}), "entry 2 has level 0");
  // d = 3: 12 bits of codes, the top 4 bits of byte 1 are padding.
  add("qsgd_padding", qs, 3, F32({1.3f}) + Bytes({0x32, 0x10}), "padding");

  // sign, one block, d = 4: 4 + 1 bytes; d = 12: blocks of 8 -> 8 + 2.
  const CodecSpec sg = Spec(CodecId::kSign);
  add("sign_truncated", sg, 4, F32({0.4375f}), "truncated");
  add("sign_trailing", sg, 4, F32({0.4375f}) + Bytes({0x0d, 0}), "trailing");
  add("sign_nan_scale", sg, 4, F32({kNaN}) + Bytes({0x0d}), "block 0");
  add("sign_inf_scale", sg, 4, F32({kInf}) + Bytes({0x0d}), "block 0");
  add("sign_negative_scale", sg, 4, F32({-0.5f}) + Bytes({0x0d}), "block 0");
  add("sign_padding", sg, 4, F32({0.4375f}) + Bytes({0x1d}), "padding");
  CodecSpec sg8 = sg;
  sg8.block_size = 8;
  add("sign_second_block_nan", sg8, 12, F32({1, kNaN}) + Bytes({0xff, 0x0f}), "block 1");

  // topk, d = 10, k = 3, float32 / float16 values.
  CodecSpec tk = Spec(CodecId::kTopK);
  tk.k = 3;
  CodecSpec tk16 = tk;
  tk16.half_values = true;
  const std::string v3 = F32({1, 2, 3});
  add("topk_empty", tk, 10, "", "count: truncated varint");
  add("topk_count_above_k", tk, 10, Bytes({4, 0, 0, 0, 0}) + F32({1, 2, 3, 4}), "exceeds k");
  add("topk_count_overlong", tk, 10, Bytes({0x83, 0x00, 0, 0, 0}) + v3, "overlong");
  add("topk_count_overflow", tk, 10,
      Bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}), "overflows");
  add("topk_count_eleven_bytes", tk, 10, Repeat("\xff", 10) + Bytes({0x01}), "overflows");
  add("topk_count_beyond_bytes", tk, 10, Bytes({3, 0}), "cannot hold 3 indices");
  add("topk_index_equals_d", tk, 10, Bytes({1, 10}) + F32({1}), "out of range");
  add("topk_index_above_d", tk, 10, Bytes({1, 0x80, 0x01}) + F32({1}), "out of range");
  add("topk_second_index_equals_d", tk, 10, Bytes({2, 5, 4}) + F32({1, 2}), "index 1");
  // Gap 2^64 - 1 after index 5 would wrap around to index 5 (a duplicate) or
  // below (decreasing) in a decoder that added without checking.
  add("topk_wrapping_gap_duplicate", tk, 10,
      Bytes({2, 5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) + F32({1, 2}),
      "index 1 is out of range");
  add("topk_wrapping_gap_decreasing", tk, 10,
      Bytes({2, 5, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) + F32({1, 2}),
      "index 1 is out of range");
  add("topk_index_overlong", tk, 10, Bytes({1, 0x81, 0x00}) + F32({1}), "overlong");
  add("topk_index_truncated_varint", tk, 10, Bytes({2, 1, 0x80}), "index 1: truncated varint");
  add("topk_values_truncated", tk, 10, Bytes({3, 0, 0, 0}) + F32({1, 2}), "truncated");
  add("topk_values_trailing", tk, 10, Bytes({3, 0, 0, 0}) + v3 + Bytes({0}), "trailing");
  add("topk_nan_value", tk, 10, Bytes({3, 0, 0, 0}) + F32({1, kNaN, 3}), "value 1");
  add("topk_inf_half", tk16, 10, Bytes({3, 0, 0, 0}) + U16({0x3c00, 0x3c00, 0xfc00}), "value 2");
  add("topk_nan_half", tk16, 10, Bytes({2, 0, 0}) + U16({0x7e00, 0x3c00}), "value 0");
  add("topk_half_trailing", tk16, 10, Bytes({2, 0, 0}) + U16({0x3c00, 0x3c00, 0}), "trailing");

  // randk, d = 20, k = 5, seed 5: selects entries 2, 3, 4, 11, 18 (computed
  // with an independent SplitMix64 in Python).
  CodecSpec rk = Spec(CodecId::kRandK);
  rk.k = 5;
  rk.seed = 5;
  CodecSpec rk16 = rk;
  rk16.half_values = true;
  add("randk_empty", rk, 20, "", "count: truncated varint");
  add("randk_count_too_small", rk, 20, Bytes({4}) + F32({1, 2, 3, 4}), "but seed 5 selects");
  add("randk_count_too_large", rk, 20, Bytes({6}) + F32({1, 2, 3, 4, 5, 6}), "but seed 5 selects");
  add("randk_count_above_d", rk, 20, Bytes({21}) + Repeat(F32({1}), 21), "exceeds d");
  add("randk_truncated", rk, 20, Bytes({5}) + F32({1, 2, 3, 4}), "value bytes");
  add("randk_trailing", rk, 20, Bytes({5}) + F32({1, 2, 3, 4, 5}) + Bytes({0}), "value bytes");
  add("randk_overlong_count", rk, 20, Bytes({0x85, 0x00}) + F32({1, 2, 3, 4, 5}), "overlong");
  add("randk_nan_value", rk, 20, Bytes({5}) + F32({1, 2, kNaN, 4, 5}), "value 2");
  add("randk_inf_half", rk16, 20, Bytes({5}) + U16({0, 0, 0, 0, 0x7c00}), "value 4");
  // Finite, but times d/k = 4 it overflows.
  add("randk_rescaled_overflow", rk, 20, Bytes({5}) + F32({1, 2, 3e38f, 4, 5}), "value 2");

  // spsa, at most 2 pairs of 12 bytes.
  CodecSpec sp = Spec(CodecId::kSpsa);
  sp.k = 2;
  const std::string pair = U64(7) + F32({0.5f});
  add("spsa_partial_pair", sp, 70, pair.substr(0, 11), "12-byte pairs");
  add("spsa_trailing", sp, 70, pair + Bytes({0}), "12-byte pairs");
  add("spsa_too_many_pairs", sp, 70, pair + pair + pair, "exceed k");
  add("spsa_nan_scalar", sp, 70, U64(1) + F32({kNaN}), "scalar 0");
  add("spsa_inf_scalar", sp, 70, pair + U64(1) + F32({-kInf}), "scalar 1");
  add("spsa_scalar_sum_overflows", sp, 70, U64(1) + F32({3e38f}) + U64(2) + F32({-3e38f}),
      "exceeds 2^127");

  // zstd around float32 (d = 4: the inner maximum is 16 bytes).
  CodecSpec zf = Spec(CodecId::kFloat32);
  zf.zstd = true;
  add("zstd_not_a_frame", zf, 4, F32({1, 2, 3, 4}), "not a zstd frame");
  add("zstd_empty", zf, 4, "", "not a zstd frame");
  add("zstd_bomb_declares_2_40", zf, 4, ZstdRawFrame(uint64_t{1} << 40, ""), "exceeds");
  add("zstd_bomb_declares_17", zf, 4, ZstdRawFrame(17, Repeat(Bytes({0}), 17)), "exceeds");
  add("zstd_declares_less_than_content", zf, 4, ZstdRawFrame(12, F32({1, 2, 3, 4})),
      "decompression failed");
  add("zstd_declares_more_than_content", zf, 4, ZstdRawFrame(16, F32({1, 2, 3})),
      "decompression failed");
  add("zstd_trailing", zf, 4, ZstdRawFrame(16, F32({1, 2, 3, 4})) + Bytes({0}), "trailing");
  add("zstd_truncated", zf, 4, ZstdRawFrame(16, F32({1, 2, 3, 4})).substr(0, 20), "malformed");
  // Descriptor 0x00: no content size (and a window descriptor byte).
  add("zstd_no_content_size", zf, 4, Bytes({0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0, 0}),
      "does not declare");
  add("zstd_skippable_frame", zf, 4, Bytes({0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}),
      "not a zstd frame");
  add("zstd_inner_nan", zf, 4, ZstdRawFrame(16, F32({1, 2, kNaN, 4})), "float32 payload");
  add("zstd_inner_truncated", zf, 4, ZstdRawFrame(12, F32({1, 2, 3})), "float32 payload");
  CodecSpec ztk = tk;
  ztk.zstd = true;
  add("zstd_topk_index_equals_d", ztk, 10, ZstdRawFrame(6, Bytes({1, 10}) + F32({1})),
      "out of range");
  return cases;
}

}  // namespace tally::compress::testing

#endif  // TALLY_TESTS_COMPRESS_CORPUS_H_
