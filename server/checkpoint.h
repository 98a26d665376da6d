// Model checkpoints: the global model (parameters, version, rounds completed),
// the optimizer's state, the ids of the updates the model contains and the
// schedule's client records, in one file, written atomically (temp file,
// fsync, rename, fsync of the directory) so that a crash leaves either the
// old or the new checkpoint, never a torn one. A SHA-256 over the whole
// content (header included) detects corruption; it is checked before any
// field is believed, so a flipped bit anywhere makes the file corrupt
// (DATA_LOSS) rather than "for another model".
//
// File layout (little-endian), version 6:
//   "TALLYCK6" | u64 version | u64 round | u64 layout_hash | u64 num_params |
//   f32 params[num_params] |
//   u32 optimizer name length | name | u32 state tensor count |
//     per tensor: u32 key length | key | u64 count | f32 values[count] |
//   u32 client count | per client: u32 id length | id | u32 update count |
//     per update: u32 length | update id |
//   u32 schedule name length | name | u32 record count |
//     per record: u32 id length | id | u64 num_samples | f64 seconds_per_step |
//   u32 tensor count | per tensor: u32 name length | name | u32 rank |
//     i64 dims[rank] |
//   u32 privacy ledger length | ledger bytes | f64 clip_norm |
//   32-byte SHA-256 of everything before it.
// The update ids are those of the updates the checkpointed model contains
// (the newest few per client), so that duplicate detection survives a
// restart. The layout (names and shapes, whose hash is the header's) lets
// tools read a checkpoint without the server's config (tally export).
// The privacy ledger makes the epsilon spent survive restarts
// (docs/privacy.md). Older files are still read: version 5 lacks the
// privacy section (no ledger), version 4 ("TALLYCK4") lacks the layout
// section, version 3 the schedule section too, version 2 the ids, version 1
// the optimizer section.
#ifndef TALLY_SERVER_CHECKPOINT_H_
#define TALLY_SERVER_CHECKPOINT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregators/schedules/schedule.h"
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

// The asynchronous schedule's durable state (schedule.h, ScheduleState).
struct ScheduleCheckpoint {
  std::string name;  // Empty: synchronous rounds, or a file before version 4.
  aggregators::ScheduleState state;
};

// Central DP's durable state (server/privacy_state.h): the privacy ledger's
// bytes (core/privacy/ledger.h, PrivacyLedger::Serialize) and the clip norm
// (adaptive clipping). Empty ledger: none (DP off, or a file before
// version 6).
struct PrivacyCheckpoint {
  std::string ledger;
  double clip_norm = 0;
};

struct LoadedCheckpoint {
  uint64_t version = 0;
  uint64_t round = 0;
  uint64_t layout_hash = 0;           // The header's.
  std::optional<ModelLayout> layout;  // Empty before version 5.
  std::vector<float> params;
  OptimizerState optimizer;  // Empty name for a version-1 checkpoint.
  AppliedUpdateIds applied;  // Empty before version 3.
  ScheduleCheckpoint schedule;
  PrivacyCheckpoint privacy;  // Empty before version 6.
};

// What a checkpoint holds besides the model snapshot.
struct CheckpointContents {
  std::string optimizer_name;
  // Point at the optimizer's own state tensors (no copy).
  std::vector<std::pair<std::string, std::vector<float>*>> optimizer_tensors;
  AppliedUpdateIds applied;
  ScheduleCheckpoint schedule;
  PrivacyCheckpoint privacy;
};

// Writes `snapshot` and `contents` as dir/model.tallyckpt (creating `dir` if
// missing), keeping the one it replaces as model.tallyckpt.prev.
absl::Status WriteCheckpoint(const std::string& dir, const ModelLayout& layout,
                             const ModelSnapshot& snapshot,
                             const CheckpointContents& contents = {});

// Reads dir/model.tallyckpt. nullopt if there is none; DATA_LOSS if it is
// corrupt; FAILED_PRECONDITION if it belongs to another model layout.
absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpoint(const std::string& dir,
                                                               const ModelLayout& layout);

// Reads the checkpoint file `path` whatever model it is for (for tools:
// tally export). nullopt if it does not exist; DATA_LOSS if it is corrupt.
absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpointFileAnyModel(const std::string& path);

// What start-up restores: the newest valid checkpoint of `dir` (the newest
// file, else the previous one), the file it came from, and the files passed
// over as corrupt (DATA_LOSS) with why. No checkpoint file at all is not an
// error; a valid one for another model layout is (FAILED_PRECONDITION).
// Corrupt files and no valid one: see NoValidCheckpointError.
struct SkippedCheckpoint {
  std::string path;
  std::string why;  // The DATA_LOSS message (it names the file).
};
struct RestoredCheckpoint {
  std::optional<LoadedCheckpoint> checkpoint;
  std::string path;
  std::vector<SkippedCheckpoint> skipped;
};
absl::StatusOr<RestoredCheckpoint> RestoreCheckpoint(const std::string& dir,
                                                     const ModelLayout& layout);

// Checkpoint files exist in `dir` but none is valid (`restored.skipped`, no
// checkpoint): the DATA_LOSS refusal to start, naming each file and why, and
// what the operator can do.
absl::Status NoValidCheckpointError(const std::string& dir, const RestoredCheckpoint& restored);

// The operator chose to start from the initial model over corrupt
// checkpoints: each skipped file is renamed <name>.corrupt (replacing an
// older one), so the next checkpoint writes do not overwrite the evidence.
absl::Status SetAsideCorruptCheckpoints(const RestoredCheckpoint& restored);

// What start-up restored, as Admin.GetStatus reports it.
struct RestoreReport {
  uint64_t version = 0;  // 0: started from the initial model.
  std::string from;      // The checkpoint file.
  uint64_t clients = 0;  // Clients with a record (applied ids, schedule state).
};
RestoreReport ReportOf(const RestoredCheckpoint& restored);

}  // namespace tally::server

#endif  // TALLY_SERVER_CHECKPOINT_H_
