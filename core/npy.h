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
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
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

// The dict of a .npy header, parsed but not checked against what a reader
// supports.
struct NpyHeaderDict {
  std::string descr;  // e.g. "<f4", "|b1", ">i8".
  bool fortran_order = false;
  std::vector<uint64_t> shape;  // Empty: a 0-D array (one value).
};

// Parses a header dict, a Python literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }: exactly the
// three keys, each once, in any order, either quote style, any whitespace.
// INVALID_ARGUMENT naming the problem (not a file: the caller adds it).
absl::StatusOr<NpyHeaderDict> ParseNpyHeaderDict(absl::string_view text);

// The start of a .npy file: magic string, version (1.0 or 2.0) and the
// length of the header dict that follows.
inline constexpr size_t kNpyMaxPreambleSize = 12;     // Version 2.0's.
inline constexpr size_t kNpyMaxHeaderSize = 1 << 16;  // numpy's own limit is 10000.
struct NpyPreamble {
  size_t size = 0;         // 10 (version 1.0) or 12 (2.0) bytes.
  size_t header_size = 0;  // Bytes of the dict (with its padding), <= kNpyMaxHeaderSize.
};
// Parses the preamble from the first bytes of a file (at least
// kNpyMaxPreambleSize of them, or the whole file if shorter).
// INVALID_ARGUMENT (no file named) for a bad magic string, an unsupported
// version, a truncated preamble or an oversized header.
absl::StatusOr<NpyPreamble> ParseNpyPreamble(absl::string_view start);

// The bytes before the data of a format 1.0 '<f4' C-order array of `shape`
// (empty: 0-D), padded as numpy pads them (data aligned to 64 bytes).
std::string NpyF4Prefix(const std::vector<uint64_t>& shape);

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
