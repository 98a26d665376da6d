// The codecs' hot loops over whole blocks: straight loops that GCC
// vectorises (built for AVX-512, AVX2 and baseline x86-64, chosen at load
// time). Internal to compress/. `accumulate` selects out[i] += weight * v
// (DecodeAccumulate) or out[i] = v (Decode), where v is the decoded value,
// computed the same way in both cases.
//
// Byte pointers may have any alignment; multi-byte values are little-endian.
#ifndef TALLY_COMPRESS_KERNELS_H_
#define TALLY_COMPRESS_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace tally::compress::internal {

// float32: v = the little-endian float at bytes + 4i.
void DecodeFloat32Bytes(const char* bytes, size_t n, float weight, bool accumulate, float* out);

// float16 / bfloat16: true iff none of the n values at `bytes` is inf/NaN.
bool HalfBytesFinite(const char* bytes, size_t n);
bool Bfloat16BytesFinite(const char* bytes, size_t n);
void DecodeHalfBytes(const char* bytes, size_t n, float weight, bool accumulate, float* out);
void DecodeBfloat16Bytes(const char* bytes, size_t n, float weight, bool accumulate, float* out);
// Converts n floats; returns the index of the first value that rounded to
// infinity, or n.
size_t EncodeHalfBytes(const float* x, size_t n, char* out);
size_t EncodeBfloat16Bytes(const float* x, size_t n, char* out);

// int8: true iff no byte is 0x80 (-128, which the encoder never emits).
bool Int8BytesValid(const char* q, size_t n);
// v = scale * q[i].
void DecodeInt8(const char* q, size_t n, float scale, float weight, bool accumulate, float* out);
// q[i] = round-half-even(x[i] / scale) clamped to [-127, 127]; scale > 0.
void EncodeInt8(const float* x, size_t n, float scale, char* q);
// max |x[i]| (0 for n = 0).
float MaxAbs(const float* x, size_t n);

// qsgd. u[i] = RngUniform(seed, first + i).
void FillUniforms(uint64_t seed, uint64_t first, size_t n, float* u);
// codes[i] = (level << 1) | negative for x[i] with uniform u[i] and
// factor = s / norm (qsgd_codec.cc has the formula).
void QsgdCodes(const float* x, const float* u, size_t n, double factor, uint32_t s,
               uint16_t* codes);
// Packs n codes of `width` (<= 16) bits, least significant bit first, into
// ceil(n · width / 8) bytes at out; Unpack reads them back. Groups of 8 codes
// are exactly `width` bytes, so n should be a multiple of 8 except at the end.
void PackCodes(const uint16_t* codes, size_t n, uint32_t width, char* out);
void UnpackCodes(const char* in, size_t n, uint32_t width, uint16_t* codes);
// True iff every code has level <= s and no sign on level 0.
bool QsgdCodesValid(const uint16_t* codes, size_t n, uint32_t s);
// v = ±scale · level.
void DecodeQsgdCodes(const uint16_t* codes, size_t n, float scale, float weight, bool accumulate,
                     float* out);

// sign. Sets bit i of `bits` (zeroed, least significant first) iff x[i] >= 0.
void EncodeSignBits(const float* x, size_t n, uint8_t* bits);
// v = bit (first + i) ? scale : −scale, for i < n.
void DecodeSignBits(const uint8_t* bits, size_t first, size_t n, float scale, float weight,
                    bool accumulate, float* out);

// randk: mask[i] = RngBits(seed, first + i) < threshold ? 1 : 0.
void RandkMask(uint64_t seed, uint64_t first, size_t n, uint64_t threshold, uint8_t* mask);

// spsa: tmp[i] += (bit i of the Rademacher words) ? -s : +s for i < 64·words,
// word w being RngBits(seed, first_word + w).
void AddRademacher(uint64_t seed, uint64_t first_word, size_t words, float s, float* tmp);
// out[i] = tmp[i] or out[i] += weight * tmp[i].
void StoreOrAccumulate(const float* tmp, size_t n, float weight, bool accumulate, float* out);

}  // namespace tally::compress::internal

#endif  // TALLY_COMPRESS_KERNELS_H_
