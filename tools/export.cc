#include "tools/export.h"

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model_file.h"
#include "core/status_macros.h"
#include "server/checkpoint.h"

namespace tally::tools {
namespace {

// The checkpoint chosen and what the directory keeps.
struct Chosen {
  std::optional<server::LoadedCheckpoint> checkpoint;
  std::string path;
  std::vector<std::string> kept;  // "12 (model.tallyckpt)", ...
};

absl::StatusOr<Chosen> Choose(const ExportOptions& options, ExportReport* report) {
  Chosen chosen;
  for (const char* name : {server::kCheckpointFileName, server::kPreviousCheckpointFileName}) {
    const std::string path = absl::StrCat(options.checkpoint_dir, "/", name);
    absl::StatusOr<std::optional<server::LoadedCheckpoint>> read =
        server::ReadCheckpointFileAnyModel(path);
    if (!read.ok()) {
      if (read.status().code() != absl::StatusCode::kDataLoss) return read.status();
      report->warnings.push_back(
          absl::StrCat("skipping a corrupt checkpoint: ", read.status().message()));
      continue;
    }
    if (!read->has_value()) continue;
    const uint64_t version = (*read)->version;
    chosen.kept.push_back(absl::StrCat(version, " (", name, ")"));
    if (!chosen.checkpoint.has_value() &&
        (options.model_version == 0 || options.model_version == version)) {
      chosen.checkpoint = *std::move(read);
      chosen.path = path;
    }
  }
  if (chosen.checkpoint.has_value()) return chosen;
  if (chosen.kept.empty()) {
    return absl::NotFoundError(absl::StrCat("no ", report->warnings.empty() ? "" : "valid ",
                                            "checkpoint in '", options.checkpoint_dir, "' (",
                                            server::kCheckpointFileName, ")"));
  }
  return absl::NotFoundError(
      absl::StrCat("version ", options.model_version, " is not kept in '", options.checkpoint_dir,
                   "', which holds version ", absl::StrJoin(chosen.kept, " and "),
                   ": the server keeps its newest checkpoint and the one before it"));
}

// The checkpoint's layout, or --layout_from's (which must agree with it).
absl::StatusOr<ModelLayout> LayoutOf(const ExportOptions& options, const Chosen& chosen) {
  const server::LoadedCheckpoint& ckpt = *chosen.checkpoint;
  if (options.layout_from.empty()) {
    if (ckpt.layout.has_value()) return *ckpt.layout;
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint '", chosen.path,
        "' was written before format 5 and holds no tensor names: pass "
        "--layout_from=FILE (a .safetensors or .npz with the model's tensors, e.g. its "
        "model.init.file), or run the server once more so that it writes a new checkpoint"));
  }
  TALLY_ASSIGN_OR_RETURN(ModelFile file, ReadModelFileLayout(options.layout_from));
  if (file.layout.Hash() != ckpt.layout_hash || file.layout.NumParams() != ckpt.params.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--layout_from: '", options.layout_from, "' describes another model (",
                     file.layout.NumParams(), " parameters, layout hash ",
                     absl::Hex(file.layout.Hash()), ") than checkpoint '", chosen.path, "' (",
                     ckpt.params.size(), " parameters, hash ", absl::Hex(ckpt.layout_hash), ")"));
  }
  return std::move(file.layout);
}

}  // namespace

absl::StatusOr<ExportReport> ExportCheckpoint(const ExportOptions& options) {
  TALLY_RETURN_IF_ERROR(ModelFileFormatOf(options.out).status());
  ExportReport report;
  TALLY_ASSIGN_OR_RETURN(const Chosen chosen, Choose(options, &report));
  TALLY_ASSIGN_OR_RETURN(const ModelLayout layout, LayoutOf(options, chosen));
  const server::LoadedCheckpoint& ckpt = *chosen.checkpoint;
  WriteModelFileOptions write;
  write.metadata = {{"tally_model_version", absl::StrCat(ckpt.version)},
                    {"tally_rounds_completed", absl::StrCat(ckpt.round)}};
  TALLY_RETURN_IF_ERROR(WriteModelFile(options.out, layout, ckpt.params, write));
  report.summary =
      absl::StrCat("model version ", ckpt.version, " (", ckpt.round, " rounds completed) from ",
                   chosen.path, ": ", layout.tensors().size(), " tensors, ", layout.NumParams(),
                   " parameters -> ", options.out);
  return report;
}

}  // namespace tally::tools
