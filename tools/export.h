// `tally export`: the global model of a server's checkpoint directory
// written as a .safetensors or .npz file (core/model_file.h) with its
// tensor names and shapes, for the tools outside tally (docs/models.md).
//
// Thread safety: no shared state.
#ifndef TALLY_TOOLS_EXPORT_H_
#define TALLY_TOOLS_EXPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::tools {

struct ExportOptions {
  std::string checkpoint_dir;
  std::string out;             // .safetensors or .npz.
  uint64_t model_version = 0;  // 0: the newest valid checkpoint.
  // A model file whose tensors name the parameters of a checkpoint written
  // before format 5 (which holds no layout); optional otherwise, and then
  // it must agree with the checkpoint's.
  std::string layout_from;
};

struct ExportReport {
  std::string summary;                // One line: what was written from where.
  std::vector<std::string> warnings;  // Corrupt checkpoint files passed over.
};

// Exports from the server's checkpoint files: model.tallyckpt (the newest)
// and model.tallyckpt.prev (the one before; a server keeps no others).
// NOT_FOUND for no checkpoint or a version that is not kept (naming the
// kept ones); FAILED_PRECONDITION for a layout that is missing or disagrees.
absl::StatusOr<ExportReport> ExportCheckpoint(const ExportOptions& options);

}  // namespace tally::tools

#endif  // TALLY_TOOLS_EXPORT_H_
