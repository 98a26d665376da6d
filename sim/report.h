// The text tally-sim prints: one line per round and a closing summary table.
//
// Pure formatting over plain records; thread-compatible.
#ifndef TALLY_SIM_REPORT_H_
#define TALLY_SIM_REPORT_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "sim/softmax_model.h"

namespace tally::sim {

// What the driver observed about one global model version.
struct RoundRecord {
  int round = 0;  // 0 = the initial model.
  uint64_t model_version = 0;
  Evaluation test;              // On the held-out test set.
  uint64_t bytes_received = 0;  // By the server during this round.
  absl::Duration wall_time;     // From the previous version to this one.
  // Rounds since the previous record: more than 1 when the server published
  // several versions before the driver looked (only the newest is evaluated;
  // bytes and time cover them all).
  int rounds_covered = 1;
};

struct Summary {
  int rounds = 0;  // Completed rounds: last record's round - first's.
  double initial_accuracy = 0;
  double final_accuracy = 0;
  double best_accuracy = 0;
  int best_round = 0;
  double initial_loss = 0;
  double final_loss = 0;
  uint64_t total_bytes = 0;
  absl::Duration total_time;
  absl::Duration mean_round_time;
};

// "1.23 MB" style (powers of 1000, as network rates are quoted).
std::string FormatBytes(uint64_t bytes);

std::string FormatRoundHeader();
std::string FormatRoundLine(const RoundRecord& record);

// `rounds` starts with round 0; empty input gives an all-zero summary.
Summary Summarize(absl::Span<const RoundRecord> rounds, absl::Duration total_time);
std::string FormatSummary(const Summary& summary);

// The round of the first record whose test accuracy is >= `target`; -1 if
// none. A record covering several rounds counts as its last one.
int RoundsToTarget(absl::Span<const RoundRecord> rounds, double target);

}  // namespace tally::sim

#endif  // TALLY_SIM_REPORT_H_
