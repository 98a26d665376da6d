// Model files: a model's named tensors in the two formats other tools read
// and write, so that a federation can start from a pretrained model and its
// result can leave tally (docs/models.md).
//
//   .safetensors  https://huggingface.co/docs/safetensors: an 8-byte
//                 little-endian header length N, N bytes of JSON
//                 {"<name>": {"dtype": "F32", "shape": [2, 3],
//                 "data_offsets": [begin, end]}, ..., "__metadata__":
//                 {"key": "value"}} (padded with spaces), then the data.
//   .npz          a ZIP archive of .npy members "<name>.npy", as np.savez
//                 (stored) and np.savez_compressed (deflate) write them.
//
// Reading. Names, shapes and order come from the file: safetensors tensors
// in the order of their data offsets, .npz members in the order of the
// central directory (the order np.savez wrote them). Every value becomes a
// float32:
//   - float16, bfloat16 (safetensors), float32, float64: converted (float64
//     rounded to nearest); a NaN or infinity, or a float64 beyond float32's
//     range, is refused (a model must be finite);
//   - integers (I8..I64, U8..U64) and bools (e.g. BatchNorm's
//     num_batches_tracked): kept as float32 tensors, exactly, so the layout
//     is the whole state_dict as the Python SDK's ModelLayout flattens it;
//     a value beyond +-2^24 (not exact in float32) is refused, naming the
//     tensor;
//   - any other dtype (F8_*, complex, strings, objects) is refused.
// Every dimension must be >= 1 (a model tensor holds values), names must be
// valid UTF-8 without ';', ':' or ',' (core/model_layout.h).
// The file is untrusted input: every length and offset is checked against
// the file's size before it is used (safetensors offsets must tile the data
// exactly; .npz members are read through the central directory, zip64
// included, must not overlap, and are checked against their CRC-32), sizes
// are computed with overflow checks, and nothing is allocated beyond what
// the file can hold (a deflated member may claim at most deflate's maximum
// expansion of its compressed bytes). Errors are INVALID_ARGUMENT naming the
// file and the problem (NOT_FOUND etc. for a file that cannot be opened).
//
// Writing. float32 only: safetensors (dtype F32, header padded to 8 bytes,
// metadata "format": "pt" plus the caller's) or .npz (stored members,
// format 1.0 '<f4' .npy, zip64 when a size or offset needs it), written to
// <path>.tmp and renamed into place.
//
// Thread safety: the functions share no state.
#ifndef TALLY_CORE_MODEL_FILE_H_
#define TALLY_CORE_MODEL_FILE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/model_layout.h"

namespace tally {

enum class ModelFileFormat { kSafetensors, kNpz };

// The format a path's extension names (".safetensors", ".npz", any case);
// INVALID_ARGUMENT for any other.
absl::StatusOr<ModelFileFormat> ModelFileFormatOf(const std::string& path);

struct ModelFile {
  ModelLayout layout;  // Names and shapes, in the file's order.
  // Per tensor, the dtype as the file spells it: "BF16", "I64" (safetensors),
  // "<f8", "|b1" (.npz).
  std::vector<std::string> dtypes;
  // Tensors whose values were integers or bools (converted exactly).
  std::vector<std::string> integer_tensors;
  // layout.NumParams() floats; empty after ReadModelFileLayout.
  std::vector<float> params;
  // safetensors "__metadata__" in the file's order; empty for .npz.
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Reads a model file (format from its extension).
absl::StatusOr<ModelFile> ReadModelFile(const std::string& path);

// The same checks on everything but the values, which are not read (for
// .npz, each member's .npy header is): cheap enough to call at start-up to
// learn the layout.
absl::StatusOr<ModelFile> ReadModelFileLayout(const std::string& path);

struct WriteModelFileOptions {
  // safetensors "__metadata__" entries after "format": "pt" (ignored for .npz).
  std::vector<std::pair<std::string, std::string>> metadata;
  // .npz: zip64 records even where 32-bit fields would do (tests).
  bool force_zip64 = false;
};

// Writes `params` (layout.NumParams() floats) with the layout's names and
// shapes as float32 (format from the extension).
absl::Status WriteModelFile(const std::string& path, const ModelLayout& layout,
                            absl::Span<const float> params,
                            const WriteModelFileOptions& options = {});

}  // namespace tally

#endif  // TALLY_CORE_MODEL_FILE_H_
