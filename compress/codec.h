// Update codecs: a float32 vector of d entries (one model update, or the
// model) to bytes and back. Shared by the server (decode) and the client SDK
// (encode); pure C++ on spans of floats, no gRPC or protobuf types.
//
// The server's central operation is DecodeAccumulate:
//     acc[j] += weight * decoded[j]   for every j,
// in one pass over the payload and without a dense decoded d-vector for the
// sparse codecs (a top-k payload is a scatter-add of its k values). Non-linear
// rules use Decode (out = decoded, dense).
//
// Every decoder validates every byte and returns INVALID_ARGUMENT, with a
// message naming what is wrong, for any payload an encoder cannot produce
// (wrong length, index out of range, counts that disagree, non-finite
// scales or values, non-canonical varints, non-zero padding bits, trailing
// bytes); no input can make it read or write out of bounds, and on any error
// `acc` / `out` is left unchanged. Decoded values are always finite.
// Encoders reject non-finite input (INVALID_ARGUMENT naming the entry).
//
// Exact reproducibility: all arithmetic is IEEE float32/float64 in a fixed
// order without fused multiply-add (compress/ is built with
// -ffp-contract=off: GCC contracts into FMA in C++ even with -std=c++17
// wherever FMA is available; never -ffast-math), and nothing uses libm
// beyond sqrt/floor/fabs (exact everywhere). So DecodeAccumulate(acc) equals
// acc[j] + weight * Decode()[j] bit for bit, and encoders give the same bytes
// on every machine and SDK following the formulas in the codecs' .cc files.
//
// Codecs (wire formats byte by byte at the end of this file). Error bounds
// for x̂ = Decode(Encode(x)):
//  float32   exact.
//  float16   IEEE binary16, round to nearest even (numpy's astype(float16)):
//            |x − x̂| ≤ 2^-11·|x| for |x| ≥ 2^-14, ≤ 2^-25 below; encoding
//            fails if some |x| ≥ 65520 (it would round to infinity).
//  bfloat16  top 16 bits of the float32, round to nearest even:
//            |x − x̂| ≤ 2^-8·|x| for |x| ≥ 2^-126, ≤ 2^-134 below; encoding
//            fails if some |x| ≥ 0x1.ff8p127 (≈ 3.3961776e38).
//  int8      per block of block_size entries a float32 scale
//            s = max|x_block| / 127 and q = round-half-even(x / s) in
//            [-127, 127]: |x − x̂| ≤ max|x_block|·(1/254 + 2^-22) + 2^-140.
//  qsgd      docs/algorithms.md#qsgd, s = `levels`, buckets of block_size
//            entries, stochastic rounding from the codec RNG (seed):
//            unbiased, E[x̂] = x; per entry
//            |x − x̂| ≤ ‖x_bucket‖·(1/s + 2^-22)·(1 + 2^-23) + 2^-130;
//            E‖x̂ − x‖² ≤ min(n/s², √n/s)·‖x‖² per bucket of n entries.
//  sign      docs/algorithms.md#sign: x̂_j = +c if x_j ≥ 0 (zero counts as +), −c
//            otherwise, c = mean |x| of the block; deterministic, and
//            ‖x − x̂‖² = ‖x‖² − ‖x‖₁²/n ≤ (1 − 1/n)‖x‖² per block of n
//            (plus n·(c_float32 − c)² from rounding c).
//  topk      the k entries of largest |x| (ties: lowest index) exactly
//            (float32 values) or rounded to float16 (half_values); zero
//            elsewhere, so ‖x − x̂‖² ≤ (1 − k/d)‖x‖² with float32 values.
//  randk     entries chosen by the shared seed (Bernoulli, p = k/d; indices
//            not sent, see RandkSelected), values as topk; with `rescale`
//            the decoder multiplies them by d/k: unbiased, E[x̂] = x
//            (up to p's 2^-64 quantisation); without it x̂ = x on the chosen
//            entries and 0 elsewhere (biased, contractive: for error
//            feedback).
//  spsa      seeded perturbations (shared-randomness zeroth-order updates):
//            a list of (seed, scalar) pairs, x̂ = Σ scalar_i · z(seed_i) with
//            z(seed) ∈ {−1, +1}^d from the codec RNG (codec_rng.h). Clients
//            normally build the pairs themselves (EncodeSpsaPairs); Encode(x)
//            is the random projection x̂ = (1/k) Σ_i (z_i·x) z_i over k
//            perturbations with seeds RngBits(seed, i): unbiased, E‖x̂ − x‖²
//            = (d − 1)/k · ‖x‖².
// Any codec may be wrapped in one zstd frame (`zstd`); the decoder refuses a
// frame whose declared size exceeds the inner codec's MaxEncodedBytes before
// allocating anything.
//
// Thread safety: all functions are thread-safe (no shared mutable state).
#ifndef TALLY_COMPRESS_CODEC_H_
#define TALLY_COMPRESS_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tally::compress {

// Stable wire ids (tally.v1.Codec mirrors them; float32 = CODEC_DENSE_F32).
enum class CodecId : uint8_t {
  kFloat32 = 1,
  kFloat16 = 2,
  kBfloat16 = 3,
  kInt8 = 4,
  kQsgd = 5,
  kSign = 6,
  kTopK = 7,
  kRandK = 8,
  kSpsa = 9,
};

// Largest d any codec accepts (keeps every size computation far from
// overflow).
inline constexpr uint64_t kMaxDim = uint64_t{1} << 40;

// A codec and its parameters; the update (or model) header carries it, so
// encoder and decoder see the same one. Fields a codec does not use are
// ignored. The defaults named below are DefaultSpec(id)'s; a plain
// CodecSpec{} has zeros and false (zstd_level 3): valid for the dense
// codecs, int8 and sign (one block), while qsgd, topk, randk and spsa need
// levels / k or ratio set.
struct CodecSpec {
  CodecId id = CodecId::kFloat32;
  // int8, qsgd, sign: entries per block (one scale / norm per block); blocks
  // are consecutive ranges of the flat vector, the last one may be shorter;
  // 0 = the whole vector is one block. Defaults: int8 256, qsgd 512, sign 0.
  uint32_t block_size = 0;
  // qsgd: number of levels s, 1..32767 (default 7: 4 bits per entry).
  uint32_t levels = 0;
  // topk, randk: number of entries k, 1..d; 0 = derive it from `ratio`.
  // spsa: the most (seed, scalar) pairs a payload may hold, 1..2^20, and the
  // number Encode produces (default 1).
  uint64_t k = 0;
  // topk, randk when k == 0: k = min(d, max(1, ceil(double(ratio) · d))),
  // ratio in (0, 1] (default 0.01).
  float ratio = 0.0f;
  // topk, randk: values as float16 instead of float32 (default false).
  bool half_values = false;
  // randk: the decoder multiplies values by float32(d / k) (default true).
  bool rescale = false;
  // qsgd: seed of the encoder's stochastic rounding (the decoder ignores
  // it); randk: the shared seed choosing the entries (both sides);
  // spsa: Encode's perturbation seeds are RngBits(seed, i). Clients must use
  // a fresh seed per update (e.g. derived from client id and update id), or
  // the rounding / selection errors correlate across clients and rounds.
  uint64_t seed = 0;
  // Wrap the payload in one zstd frame at `zstd_level` (default 3).
  bool zstd = false;
  int32_t zstd_level = 3;
};

// What a codec is, for registries and negotiation.
struct CodecInfo {
  CodecId id;
  const char* name;  // "float32", "float16", "bfloat16", "int8", "qsgd",
                     // "sign", "topk", "randk", "spsa".
  // DecodeAccumulate writes only the entries the payload names (topk,
  // randk); the others write all d.
  bool sparse;
  bool lossless;  // Only float32.
  // The encoder uses CodecSpec::seed (qsgd, randk, spsa).
  bool seeded;
};

// nullptr if unknown.
const CodecInfo* FindCodec(absl::string_view name);
const CodecInfo* FindCodec(CodecId id);
// All codecs, in id order.
absl::Span<const CodecInfo> AllCodecs();
std::vector<std::string> CodecNames();

// The spec with `id` and that codec's defaults.
CodecSpec DefaultSpec(CodecId id);

// Raw little-endian float32 without a zstd frame: the payload is the vector's
// own bytes (the server folds such updates in chunk by chunk).
inline bool IsPlainFloat32(const CodecSpec& spec) {
  return spec.id == CodecId::kFloat32 && !spec.zstd;
}

// OK iff `spec` is usable for vectors of d entries; INVALID_ARGUMENT naming
// the field otherwise (unknown id, d = 0 or > kMaxDim, k > d, ratio outside
// (0, 1], levels outside 1..32767, zstd_level outside zstd's range, ...).
absl::Status ValidateSpec(const CodecSpec& spec, size_t d);

// The number of entries topk / randk aim for (k, or from ratio); spsa: the
// pair limit. Requires ValidateSpec(spec, d).ok().
uint64_t EffectiveK(const CodecSpec& spec, size_t d);

// An upper bound on Encode's output size for any input of d entries (exact
// for the fixed-size codecs: float32/16, bfloat16, int8, qsgd, sign;
// ZSTD_compressBound of it with zstd). Requires ValidateSpec(spec, d).ok().
size_t MaxEncodedBytes(const CodecSpec& spec, size_t d);

// The largest MaxEncodedBytes over every spec of codec `id` a client may
// send for d entries, each parameter at its most expensive: a zstd frame
// around the payload (ZSTD_compressBound of it); topk and randk k = d with
// float32 values (topk: every index a varint of d − 1's length); int8, qsgd
// and sign one block per entry; qsgd 32767 levels (16 bits per entry). A
// server whose update limit is at least this admits every update of that
// codec. spsa's size depends on its pair count, not on d: `spsa_pairs`
// (the pair limit the server configured) is used. For d = 2410: float32
// 9736, topk 14574 (the largest).
size_t WorstCaseEncodedBytes(CodecId id, size_t d, uint64_t spsa_pairs = 1);

// Encodes x (d = x.size()) into *out (replacing its contents).
// INVALID_ARGUMENT for an invalid spec, a non-finite entry, or a value the
// format cannot hold (float16 / bfloat16 overflow, a qsgd bucket norm above
// FLT_MAX, a randk value whose rescaled value overflows, spsa projections
// summing above 2^127).
absl::Status Encode(const CodecSpec& spec, absl::Span<const float> x, std::string* out);

// acc[j] += weight * decoded[j] for j < d = acc.size(). `weight` must be
// finite. On error acc is unchanged.
absl::Status DecodeAccumulate(const CodecSpec& spec, absl::string_view payload, float weight,
                              absl::Span<float> acc);

// out[j] = decoded[j] for j < d = out.size() (zeros where a sparse payload
// has no entry). On error out is unchanged.
absl::Status Decode(const CodecSpec& spec, absl::string_view payload, absl::Span<float> out);

// --- spsa --------------------------------------------------------------------

// One seeded perturbation: the update is scalar · z(seed).
struct SpsaPair {
  uint64_t seed = 0;
  float scalar = 0.0f;
};

// The spsa payload for `pairs` (at most spec.k of them, finite scalars, and
// Σ|scalar| ≤ 2^127 so every decoded entry is finite); framed if spec.zstd.
absl::Status EncodeSpsaPairs(const CodecSpec& spec, absl::Span<const SpsaPair> pairs,
                             std::string* out);

// --- topk --------------------------------------------------------------------

// The topk payload of a sparse vector given explicitly (DGC's selection,
// compress/dgc.h): values[i] at indices[i], zero elsewhere. Indices strictly
// increasing and < d, values finite (and below float16's range with
// half_values), at most EffectiveK(spec, d) entries — set spec.k to the
// number of entries to declare exactly that; framed if spec.zstd. Decode
// gives back the values (rounded to float16 with half_values) at the indices.
absl::Status EncodeSparse(const CodecSpec& spec, absl::Span<const uint64_t> indices,
                          absl::Span<const float> values, size_t d, std::string* out);

// --- randk -------------------------------------------------------------------

// True iff randk with `seed` selects entry j of a d-vector for k entries:
// RngBits(seed, j) < floor(k · 2^64 / d) (every entry when k = d).
bool RandkSelected(uint64_t seed, uint64_t k, uint64_t d, uint64_t j);

// --- Wire formats ------------------------------------------------------------
// Multi-byte numbers little-endian; f32 / f16 = IEEE binary32 / binary16;
// bf16 = the top 16 bits of a binary32; varint = unsigned LEB128 (protobuf's
// varint), canonical: at most 10 bytes, no trailing 0x00 byte after the
// first, no bits above 2^64. nb = number of blocks = 1 if block_size = 0,
// else ceil(d / block_size); block b is entries [b·block_size, ...).
//
//  float32  d × f32.                                         4·d bytes
//  float16  d × f16, round to nearest even.                  2·d
//  bfloat16 d × bf16, round to nearest even.                 2·d
//  int8     nb × f32 scale, then d × int8 q in [-127, 127];  4·nb + d
//           x̂_j = scale_b · q_j.
//  qsgd     nb × f32 bucket norm, then a bit stream of d codes of
//           w = 1 + ceil(log2(s + 1)) bits (s = levels), zero-padded to a
//           whole byte: 4·nb + ceil(d·w / 8). code_j = (level_j << 1) |
//           negative_j, level <= s, negative only if level > 0; code j
//           occupies stream bits j·w .. j·w + w − 1, least significant first,
//           stream bit p being bit (p mod 8) of byte p / 8. (8 codes are
//           exactly w bytes.) x̂_j = ±(norm_b / f32(s)) · f32(level_j).
//  sign     nb × f32 scale (mean |x| of the block), then ceil(d / 8) bytes:
//           entry j is bit (j mod 8) of byte j / 8, 1 = (x_j >= 0), padding
//           bits 0: 4·nb + ceil(d / 8). x̂_j = bit ? +scale_b : −scale_b.
//  topk     varint n (n <= k), then n varints: the first index, then each
//           index minus the previous one minus 1 (indices strictly
//           increasing, < d), then n values (f32, or f16 if half_values).
//           Example (k = 2): indices 1, 5, values −0.5, 0.3 →
//           02 01 03 | f32(−0.5) f32(0.3).
//  randk    varint n, then n values (f32, or f16 if half_values) of the
//           entries the seed selects (RandkSelected), ascending; n must
//           equal the number selected. x̂_j = value · f32(d / k) if rescale.
//  spsa     n <= k pairs (u64 seed, f32 scalar): 12·n bytes.
//  zstd     (any codec, `zstd` set) exactly one zstd frame (RFC 8878) whose
//           header declares its content size (<= the inner codec's
//           MaxEncodedBytes); the content is the inner codec's payload.
//
// How decoders keep acc / out unchanged on error:
//  validate-then-write (everything checked in a first pass, then a second
//  pass writes): float32, float16, bfloat16, int8, qsgd, sign, topk, spsa.
//  decode-to-temp: randk (regenerates the selected indices into a list of at
//  most n, checks the count, then scatters); zstd (decompresses into a
//  buffer of the declared size, then the inner decoder).

}  // namespace tally::compress

#endif  // TALLY_COMPRESS_CODEC_H_
