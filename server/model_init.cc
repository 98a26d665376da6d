#include "server/model_init.h"

#include <algorithm>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model_file.h"
#include "core/status_macros.h"
#include "server/config.h"
#include "server/log.h"

namespace tally::server {
namespace {

std::string TensorText(const std::string& name, const std::vector<int64_t>& shape) {
  return absl::StrCat("'", name, "' [", absl::StrJoin(shape, ", "), "]");
}

// The first difference between the config's tensors and the file's, or OK.
absl::Status CompareLayouts(const ModelLayout& config, const ModelLayout& file,
                            const std::string& path) {
  const auto& want = config.tensors();
  const auto& have = file.tensors();
  const std::string hint = " (leave model.tensors unset to take the file's layout)";
  for (size_t i = 0; i < std::min(want.size(), have.size()); ++i) {
    if (want[i].name != have[i].name || want[i].shape != have[i].shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.tensors[", i, "]: the config lists ",
                       TensorText(want[i].name, want[i].shape), ", model.init.file '", path,
                       "' has ", TensorText(have[i].name, have[i].shape), " there", hint));
    }
  }
  if (want.size() == have.size()) return absl::OkStatus();
  const bool config_longer = want.size() > have.size();
  const TensorLayout& first = config_longer ? want[have.size()] : have[want.size()];
  return absl::InvalidArgumentError(
      absl::StrCat("model.tensors: the config lists ", want.size(), " tensors, model.init.file '",
                   path, "' has ", have.size(), "; the first ",
                   config_longer ? "not in the file" : "not in the config", " is ",
                   TensorText(first.name, first.shape), hint));
}

std::vector<float> RandomParams(const ModelLayout& layout, const tally::v1::ModelInit& init) {
  std::vector<float> params(layout.NumParams(), 0.0f);
  if (init.kind() == tally::v1::ModelInit::ZEROS) return params;
  std::mt19937_64 rng(init.seed());
  if (init.kind() == tally::v1::ModelInit::UNIFORM) {
    std::uniform_real_distribution<float> dist(static_cast<float>(-init.scale()),
                                               static_cast<float>(init.scale()));
    for (float& p : params) p = dist(rng);
  } else {
    std::normal_distribution<float> dist(0.0f, static_cast<float>(init.scale()));
    for (float& p : params) p = dist(rng);
  }
  return params;
}

}  // namespace

void TensorsFromInitFile(tally::v1::ModelConfig* model) {
  if (model->init().file().empty() || model->tensors_size() > 0) return;
  absl::StatusOr<ModelFile> file = ReadModelFileLayout(model->init().file());
  if (!file.ok()) return;
  for (const TensorLayout& t : file->layout.tensors()) {
    tally::v1::TensorConfig* tensor = model->add_tensors();
    tensor->set_name(t.name);
    for (int64_t d : t.shape) tensor->add_shape(d);
  }
}

absl::Status ValidateModelInit(const tally::v1::ServerConfig& config) {
  const tally::v1::ModelInit& init = config.model().init();
  if (init.file().empty()) return absl::OkStatus();
  if (!config.relay().upstream().empty()) {
    return absl::InvalidArgumentError(
        "model.init.file: a relay serves the upstream's model; leave it unset");
  }
  if (init.kind() != tally::v1::ModelInit::ZEROS) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.init.kind: ", tally::v1::ModelInit::Kind_Name(init.kind()),
                     " does not apply with model.init.file (the file holds the initial values)"));
  }
  absl::StatusOr<ModelFile> file = ReadModelFileLayout(init.file());
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("model.init.file: ", file.status().message()));
  }
  TALLY_ASSIGN_OR_RETURN(const ModelLayout layout, LayoutFromConfig(config.model()));
  return CompareLayouts(layout, file->layout, init.file());
}

absl::StatusOr<std::vector<float>> InitialParams(const ModelLayout& layout,
                                                 const tally::v1::ModelInit& init) {
  if (init.file().empty()) return RandomParams(layout, init);
  absl::StatusOr<ModelFile> file = ReadModelFile(init.file());
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("model.init.file: ", file.status().message()));
  }
  if (file->layout.Hash() != layout.Hash()) {
    return absl::FailedPreconditionError(
        absl::StrCat("model.init.file: '", init.file(),
                     "' no longer has the layout it had when the config was checked (was it "
                     "replaced while the server started?)"));
  }
  std::string integers;
  if (!file->integer_tensors.empty()) {
    const size_t shown = std::min<size_t>(file->integer_tensors.size(), 3);
    integers = absl::StrCat(
        "; ", file->integer_tensors.size(), " integer entries kept as exact float32 (",
        absl::StrJoin(file->integer_tensors.begin(), file->integer_tensors.begin() + shown, ", "),
        file->integer_tensors.size() > shown ? ", ..." : "", ")");
  }
  LogInfo(absl::StrCat("initial model from ", init.file(), ": ", layout.tensors().size(),
                       " tensors, ", layout.NumParams(), " parameters", integers));
  return std::move(file->params);
}

}  // namespace tally::server
