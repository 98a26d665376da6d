#include "tally/model_file.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/model_file.h"
#include "core/model_layout.h"
#include "core/status_macros.h"

namespace tally {

absl::Status WriteModelFile(const std::string& path, const std::vector<NamedTensor>& tensors) {
  std::vector<ModelLayout::TensorDef> defs;
  for (const NamedTensor& t : tensors) defs.push_back({t.name, t.shape});
  absl::StatusOr<ModelLayout> layout = ModelLayout::Create(defs);
  if (!layout.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", layout.status().message()));
  }
  std::vector<float> params;
  params.reserve(layout->NumParams());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    if (t.values.size() != layout->tensors()[i].size) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' has ",
                                                     t.values.size(), " values, its shape ",
                                                     layout->tensors()[i].size));
    }
    for (size_t k = 0; k < t.values.size(); ++k) {
      if (!std::isfinite(t.values[k])) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' element ", k,
                                                       " is not finite (a model must be)"));
      }
    }
    params.insert(params.end(), t.values.begin(), t.values.end());
  }
  return WriteModelFile(path, *layout, params);
}

absl::Status WriteModelFile(const std::string& path, const Model& model) {
  std::vector<NamedTensor> tensors;
  for (const TensorInfo& t : model.info.tensors) {
    if (t.offset > model.params.size() || t.size > model.params.size() - t.offset) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' lies outside the model's parameters"));
    }
    tensors.push_back(
        {t.name, t.shape, absl::MakeConstSpan(model.params).subspan(t.offset, t.size)});
  }
  return WriteModelFile(path, tensors);
}

}  // namespace tally
