#include "core/model_layout.h"

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tally {

uint64_t Fnv1a64(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

absl::StatusOr<ModelLayout> ModelLayout::Create(const std::vector<TensorDef>& tensors) {
  constexpr uint64_t kMaxParams = uint64_t{1} << 34;
  if (tensors.empty()) {
    return absl::InvalidArgumentError("model: at least one tensor is required");
  }
  ModelLayout layout;
  absl::flat_hash_set<std::string> names;
  for (const TensorDef& def : tensors) {
    if (def.name.empty() || def.name.size() > 256 ||
        def.name.find_first_of(";:,") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("model.tensors.name: invalid tensor name '",
                                                     def.name,
                                                     "' (1..256 chars, no ';', ':' or ',')"));
    }
    if (!names.insert(def.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.tensors.name: duplicate tensor name '", def.name, "'"));
    }
    uint64_t size = 1;
    for (int64_t dim : def.shape) {
      if (dim < 1) {
        return absl::InvalidArgumentError(absl::StrCat("model.tensors.shape: tensor '", def.name,
                                                       "' has dimension ", dim, " < 1"));
      }
      if (static_cast<uint64_t>(dim) > kMaxParams ||
          size > kMaxParams / static_cast<uint64_t>(dim)) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.tensors.shape: tensor '", def.name, "' is too large"));
      }
      size *= static_cast<uint64_t>(dim);
    }
    TensorLayout t;
    t.name = def.name;
    t.shape = def.shape;
    t.offset = layout.num_params_;
    t.size = size;
    layout.num_params_ += size;
    if (layout.num_params_ > kMaxParams) {
      return absl::InvalidArgumentError("model: more than 2^34 parameters");
    }
    layout.tensors_.push_back(std::move(t));
  }
  const std::string canonical = layout.CanonicalString();
  layout.hash_ = Fnv1a64(canonical.data(), canonical.size());
  return layout;
}

std::string ModelLayout::CanonicalString() const {
  std::string out;
  for (const TensorLayout& t : tensors_) {
    absl::StrAppend(&out, t.name, ":f32:", absl::StrJoin(t.shape, ","), ";");
  }
  return out;
}

}  // namespace tally
