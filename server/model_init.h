// The initial global model a ServerConfig describes (ModelConfig.init):
// zeros, seeded random values, or a model file (core/model_file.h) whose
// tensors are then the layout (docs/models.md).
//
// Thread safety: the functions share no state.
#ifndef TALLY_SERVER_MODEL_INIT_H_
#define TALLY_SERVER_MODEL_INIT_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_layout.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

// With model.init.file set and no tensors listed, lists the file's tensors
// as model.tensors. Leaves the config as it is if the file cannot be read
// (ValidateModelInit reports why).
void TensorsFromInitFile(tally::v1::ModelConfig* model);

// model.init as a whole: with a file, the file's layout must be readable
// and equal to model.tensors (INVALID_ARGUMENT naming the first difference;
// the file's own error, prefixed "model.init.file: ", if it cannot be read),
// kind must stay ZEROS and the server must not be a relay.
absl::Status ValidateModelInit(const tally::v1::ServerConfig& config);

// The initial parameters of `layout`: read from model.init.file (which must
// still have that layout), else zeros or seeded random values. Logs what a
// file held.
absl::StatusOr<std::vector<float>> InitialParams(const ModelLayout& layout,
                                                 const tally::v1::ModelInit& init);

}  // namespace tally::server

#endif  // TALLY_SERVER_MODEL_INIT_H_
