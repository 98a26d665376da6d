// Model checkpoints: the global model (parameters, version, rounds completed)
// in one file, written atomically (temp file, fsync, rename, fsync of the
// directory) so that a crash leaves either the old or the new checkpoint,
// never a torn one. A SHA-256 over the whole content detects corruption.
//
// File layout (little-endian):
//   "TALLYCK1" | u64 version | u64 round | u64 layout_hash | u64 num_params |
//   f32 params[num_params] | 32-byte SHA-256 of everything before it.
//
// Optimizer, schedule and client-registry state join this file in later
// versions of the format (see the trust-and-survival issue).
#ifndef TALLY_SERVER_CHECKPOINT_H_
#define TALLY_SERVER_CHECKPOINT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_layout.h"
#include "core/model_store.h"

namespace tally::server {

inline constexpr char kCheckpointFileName[] = "model.tallyckpt";

struct LoadedCheckpoint {
  uint64_t version = 0;
  uint64_t round = 0;
  std::vector<float> params;
};

// Writes `snapshot` as dir/model.tallyckpt (creating `dir` if missing).
absl::Status WriteCheckpoint(const std::string& dir, const ModelLayout& layout,
                             const ModelSnapshot& snapshot);

// Reads dir/model.tallyckpt. nullopt if there is none; DATA_LOSS if it is
// corrupt; FAILED_PRECONDITION if it belongs to another model layout.
absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpoint(const std::string& dir,
                                                               const ModelLayout& layout);

}  // namespace tally::server

#endif  // TALLY_SERVER_CHECKPOINT_H_
