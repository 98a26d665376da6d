// tally C++ SDK: model files. Writes what a client holds as a float32
// .safetensors or NumPy .npz file (by the path's extension): the files
// tally-server starts from (model { init { file } }) and that numpy,
// safetensors and PyTorch load. See docs/models.md.
//
// This header needs only the C++ standard library and Abseil.
// Thread safety: the functions share no state.
#ifndef TALLY_CLIENT_MODEL_FILE_H_
#define TALLY_CLIENT_MODEL_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "tally/client.h"

namespace tally {

// One tensor to write: its values are not owned and must outlive the call.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;      // Empty: a scalar.
  absl::Span<const float> values;  // The product of `shape` floats, row-major.
};

// Writes `tensors` in order (written to `path`.tmp, then renamed).
// INVALID_ARGUMENT for an unknown extension, names or shapes a tally model
// cannot have (names of 1..256 bytes without ';', ':' or ',', unique, and
// UTF-8 for the server to read them back; every dimension >= 1), a value
// count that is not the shape's, or a NaN or infinite value; the errno's
// code for a file that cannot be written.
absl::Status WriteModelFile(const std::string& path, const std::vector<NamedTensor>& tensors);

// Writes a model as PullModel returned it, with its tensor names and shapes.
absl::Status WriteModelFile(const std::string& path, const Model& model);

}  // namespace tally

#endif  // TALLY_CLIENT_MODEL_FILE_H_
