// Dense float kernels used on the hot paths (validation and accumulation of
// update chunks). Plain loops written so that GCC vectorises them at -O2/-O3.
#ifndef TALLY_CORE_VECTOR_OPS_H_
#define TALLY_CORE_VECTOR_OPS_H_

#include <cstddef>

namespace tally {

// True iff no element is NaN or +-Inf.
bool AllFinite(const float* x, size_t n);

// y[i] += a * x[i].
void Axpy(float a, const float* x, float* y, size_t n);

// Like Axpy, but x is read from possibly unaligned little-endian bytes
// (4 * n of them), as they arrive off the wire.
void AxpyBytes(float a, const char* x_bytes, float* y, size_t n);

// True iff the n floats stored in `bytes` are all finite.
bool AllFiniteBytes(const char* bytes, size_t n);

// Copies n little-endian floats from `bytes` to `out` and returns whether
// all were finite, in one pass. On false, `out` holds an unspecified prefix.
bool CopyAllFiniteBytes(const char* bytes, float* out, size_t n);

// The largest |x| of the n floats stored in `bytes` (0 for n = 0): +Inf if
// one is infinite and no NaN, a NaN if one is NaN.
float MaxAbsBytes(const char* bytes, size_t n);

// True iff every one of the n floats stored in `bytes` is finite with
// |x| <= max_abs (max_abs >= 0). NaN and +-Inf fail.
bool AllWithinBytes(const char* bytes, size_t n, float max_abs);

// CopyAllFiniteBytes with the AllWithinBytes test.
bool CopyAllWithinBytes(const char* bytes, float* out, size_t n, float max_abs);

// The index of the first of the n floats at `bytes` that is not finite or
// has |x| > max_abs, or n if there is none.
size_t FirstOutsideBytes(const char* bytes, size_t n, float max_abs);

}  // namespace tally

#endif  // TALLY_CORE_VECTOR_OPS_H_
