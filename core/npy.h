// NumPy .npy files of float arrays: what `tally aggregate` reads (a batch of
// client updates, one row per client) and writes (the aggregate).
//
// Reads format versions 1.0 and 2.0 of 1-D or 2-D C-order arrays of
// little-endian float32 ('<f4') or float64 ('<f8'; converted to float).
// Writes format 1.0, '<f4'. Anything else (Fortran order, other dtypes,
// big-endian data, 0-D or 3-D and higher shapes, truncated or trailing data,
// sizes that overflow, a malformed header) is INVALID_ARGUMENT with a message
// that names the file and the problem. Failing to open, read or write a file
// maps errno to a status code (e.g. NOT_FOUND).
//
// Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//
// Thread safety: the functions share no state; concurrent calls on different
// files are safe.
#ifndef TALLY_CORE_NPY_H_
#define TALLY_CORE_NPY_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tally {

// A 1-D or 2-D float array in row-major order. A 1-D file of shape (d,) reads
// as rows = 1, cols = d, ndim = 1.
struct NpyMatrix {
  size_t rows = 0;
  size_t cols = 0;
  int ndim = 2;             // Dimensions of the array in the file: 1 or 2.
  std::vector<float> data;  // rows * cols floats.
};

// Reads `path` (format 1.0 or 2.0; '<f4' or '<f8'; 1-D or 2-D; C order).
absl::StatusOr<NpyMatrix> ReadNpy(const std::string& path);

// Writes `data` (rows * cols floats, row-major) to `path` as a 2-D '<f4'
// array of shape (rows, cols), format 1.0, replacing any existing file.
absl::Status WriteNpy(const std::string& path, size_t rows, size_t cols,
                      absl::Span<const float> data);

// Writes `data` to `path` as a 1-D '<f4' array of shape (data.size(),).
absl::Status WriteNpyVector(const std::string& path, absl::Span<const float> data);

}  // namespace tally

#endif  // TALLY_CORE_NPY_H_
