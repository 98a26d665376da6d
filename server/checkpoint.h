// Model checkpoints: the global model (parameters, version, rounds completed)
// in one file, written atomically (temp file, fsync, rename, fsync of the
// directory) so that a crash leaves either the old or the new checkpoint,
// never a torn one. A SHA-256 over the whole content detects corruption.
//
// File layout (little-endian), version 3:
//   "TALLYCK3" | u64 version | u64 round | u64 layout_hash | u64 num_params |
//   f32 params[num_params] |
//   u32 optimizer name length | name | u32 state tensor count |
//     per tensor: u32 key length | key | u64 count | f32 values[count] |
//   u32 client count | per client: u32 id length | id | u32 update count |
//     per update: u32 length | update id |
//   32-byte SHA-256 of everything before it.
// The update ids are those of the updates the checkpointed model contains
// (the newest few per client), so that duplicate detection survives a
// restart. Version 2 ("TALLYCK2") lacks the ids, version 1 ("TALLYCK1") the
// optimizer section too; both are still read. Schedule state joins later.
#ifndef TALLY_SERVER_CHECKPOINT_H_
#define TALLY_SERVER_CHECKPOINT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_layout.h"
#include "core/model_store.h"

namespace tally::server {

inline constexpr char kCheckpointFileName[] = "model.tallyckpt";
// The checkpoint before the newest, kept as a fallback: writing moves the
// newest here before the new one takes its name.
inline constexpr char kPreviousCheckpointFileName[] = "model.tallyckpt.prev";

// The server optimizer's state: its name and named state tensors.
struct OptimizerState {
  std::string name;
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
};

// Per client, the ids of its updates the model contains, oldest first.
using AppliedUpdateIds = std::vector<std::pair<std::string, std::vector<std::string>>>;

struct LoadedCheckpoint {
  uint64_t version = 0;
  uint64_t round = 0;
  std::vector<float> params;
  OptimizerState optimizer;  // Empty name for a version-1 checkpoint.
  AppliedUpdateIds applied;  // Empty before version 3.
};

// Writes `snapshot` and the optimizer state as dir/model.tallyckpt (creating
// `dir` if missing), keeping the one it replaces as model.tallyckpt.prev.
// `optimizer_tensors` point at the optimizer's own state.
absl::Status WriteCheckpoint(
    const std::string& dir, const ModelLayout& layout, const ModelSnapshot& snapshot,
    const std::string& optimizer_name = "",
    const std::vector<std::pair<std::string, std::vector<float>*>>& optimizer_tensors = {},
    const AppliedUpdateIds& applied = {});

// Reads dir/model.tallyckpt. nullopt if there is none; DATA_LOSS if it is
// corrupt; FAILED_PRECONDITION if it belongs to another model layout.
absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpoint(const std::string& dir,
                                                               const ModelLayout& layout);

// What start-up restores: the newest valid checkpoint of `dir` (the newest
// file, else the previous one), the file it came from, and why the files
// passed over were skipped (corrupt: DATA_LOSS). No checkpoint at all is not
// an error; one for another model layout is (FAILED_PRECONDITION).
struct RestoredCheckpoint {
  std::optional<LoadedCheckpoint> checkpoint;
  std::string path;
  std::vector<std::string> skipped;
};
absl::StatusOr<RestoredCheckpoint> RestoreCheckpoint(const std::string& dir,
                                                     const ModelLayout& layout);

}  // namespace tally::server

#endif  // TALLY_SERVER_CHECKPOINT_H_
