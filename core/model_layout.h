// ModelLayout: the ordered list of named float32 tensors that make up a model,
// flattened row-major, tensor after tensor, into one vector of NumParams()
// floats. Its hash (LayoutHash) is carried by every update so that a client
// trained on a different architecture is rejected before its payload is used.
//
// Immutable value type; thread-compatible.
#ifndef TALLY_CORE_MODEL_LAYOUT_H_
#define TALLY_CORE_MODEL_LAYOUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tally {

struct TensorLayout {
  std::string name;
  std::vector<int64_t> shape;  // Empty = scalar.
  uint64_t offset = 0;         // First element within the flat vector.
  uint64_t size = 1;           // Number of elements.
};

class ModelLayout {
 public:
  struct TensorDef {
    std::string name;
    std::vector<int64_t> shape;
  };

  // Validates names (non-empty, unique, <= 256 bytes, no ';' ':' ',') and
  // shapes (every dim >= 1, total < 2^34 elements).
  static absl::StatusOr<ModelLayout> Create(const std::vector<TensorDef>& tensors);

  ModelLayout() = default;

  const std::vector<TensorLayout>& tensors() const { return tensors_; }
  uint64_t NumParams() const { return num_params_; }
  uint64_t Hash() const { return hash_; }

  // The canonical string hashed by Hash():
  //   for each tensor "<name>:f32:<d0>,<d1>,...;" (scalar: "<name>:f32:;").
  std::string CanonicalString() const;

 private:
  std::vector<TensorLayout> tensors_;
  uint64_t num_params_ = 0;
  uint64_t hash_ = 0;
};

// FNV-1a, 64 bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t Fnv1a64(const void* data, size_t size);

}  // namespace tally

#endif  // TALLY_CORE_MODEL_LAYOUT_H_
