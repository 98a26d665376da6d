// libFuzzer target for every decoder in compress/ (and, in encode mode, every
// encoder), built with clang -fsanitize=fuzzer,address,undefined by
// scripts/fuzz.sh. The input's header (fuzz_input.h) picks the codec and
// spec; TALLY_FUZZ_CODEC=<name> in the environment forces the codec, so each
// decoder can be given its own time budget.
//
// Decode mode checks, beyond ASan/UBSan's out-of-bounds and UB reports:
//  - an error is INVALID_ARGUMENT and leaves acc / out bit for bit unchanged;
//  - Decode and DecodeAccumulate agree on whether the payload is valid;
//  - on success every decoded value is finite and
//    DecodeAccumulate(acc) == acc + weight * Decode() exactly.
// Encode mode: the body's floats (non-finite ones replaced by 0) encode
// (or are refused with INVALID_ARGUMENT), then decode, to finite values.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using tally::compress::CodecSpec;

const tally::compress::CodecInfo* g_forced = nullptr;

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "codec_fuzzer: %s\n", what);
    abort();
  }
}

std::vector<float> Pattern(size_t d) {
  std::vector<float> v(d);
  for (size_t j = 0; j < d; ++j) v[j] = 0.5f * static_cast<float>(j % 17) - 3.0f;
  return v;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void FuzzDecode(const CodecSpec& spec, size_t d, const std::string& payload) {
  const std::vector<float> before = Pattern(d);
  constexpr float kWeight = 0.75f;
  std::vector<float> acc = before;
  const absl::Status accumulated =
      tally::compress::DecodeAccumulate(spec, payload, kWeight, absl::MakeSpan(acc));
  std::vector<float> out = before;
  const absl::Status decoded = tally::compress::Decode(spec, payload, absl::MakeSpan(out));
  Check(accumulated.ok() == decoded.ok(), "Decode and DecodeAccumulate disagree");
  if (!accumulated.ok()) {
    Check(accumulated.code() == absl::StatusCode::kInvalidArgument,
          "error is not INVALID_ARGUMENT");
    Check(decoded.code() == absl::StatusCode::kInvalidArgument, "error is not INVALID_ARGUMENT");
    Check(SameBits(acc, before), "a failed DecodeAccumulate changed acc");
    Check(SameBits(out, before), "a failed Decode changed out");
    return;
  }
  for (size_t j = 0; j < d; ++j) {
    Check(std::isfinite(out[j]), "a decoded value is not finite");
    Check(acc[j] == before[j] + kWeight * out[j], "DecodeAccumulate != acc + w * Decode");
  }
}

void FuzzEncode(const CodecSpec& spec, size_t d, const uint8_t* body, size_t size) {
  std::vector<float> x(d, 0.0f);
  for (size_t j = 0; j < d && 4 * j + 4 <= size; ++j) {
    std::memcpy(&x[j], body + 4 * j, 4);
    if (!std::isfinite(x[j])) x[j] = 0.0f;
  }
  std::string payload;
  const absl::Status encoded = tally::compress::Encode(spec, x, &payload);
  if (!encoded.ok()) {
    // float16 / bfloat16 overflow, a qsgd norm above FLT_MAX, spsa projections.
    Check(encoded.code() == absl::StatusCode::kInvalidArgument,
          "encode error is not INVALID_ARGUMENT");
    return;
  }
  Check(payload.size() <= tally::compress::MaxEncodedBytes(spec, d), "payload > MaxEncodedBytes");
  std::vector<float> y(d);
  Check(tally::compress::Decode(spec, payload, absl::MakeSpan(y)).ok(), "own payload refused");
  for (size_t j = 0; j < d; ++j) Check(std::isfinite(y[j]), "round trip not finite");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* name = std::getenv("TALLY_FUZZ_CODEC")) {
    g_forced = tally::compress::FindCodec(name);
    Check(g_forced != nullptr, "TALLY_FUZZ_CODEC names no codec");
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::compress::fuzz::FuzzInput in;
  if (!tally::compress::fuzz::ParseFuzzInput(data, size, &in)) return 0;
  if (g_forced != nullptr) in.spec.id = g_forced->id;
  if (!tally::compress::ValidateSpec(in.spec, in.d).ok()) return 0;
  if (in.encode) {
    // spsa's Encode costs O(k·d): keep the projection count small.
    if (in.spec.id == tally::compress::CodecId::kSpsa) in.spec.k = 1 + in.spec.k % 4;
    FuzzEncode(in.spec, in.d, in.body, in.body_size);
  } else {
    FuzzDecode(in.spec, in.d, std::string(reinterpret_cast<const char*>(in.body), in.body_size));
  }
  return 0;
}
