#include "sim/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tally::sim {

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1000) return absl::StrCat(bytes, " B");
  const char* units[] = {"kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes) / 1000;
  int unit = 0;
  while (value >= 1000 && unit < 3) {
    value /= 1000;
    ++unit;
  }
  return absl::StrFormat("%.2f %s", value, units[unit]);
}

std::string FormatRoundHeader() {
  return absl::StrFormat("%7s  %8s  %9s  %12s  %10s", "round", "test_acc", "test_loss",
                         "bytes_recv", "round_time");
}

std::string FormatRoundLine(const RoundRecord& r) {
  const std::string time =
      r.round == 0 ? "-" : absl::StrFormat("%.3f s", absl::ToDoubleSeconds(r.wall_time));
  const std::string bytes = r.round == 0 ? "-" : FormatBytes(r.bytes_received);
  const std::string round = r.rounds_covered > 1
                                ? absl::StrCat(r.round - r.rounds_covered + 1, "-", r.round)
                                : absl::StrCat(r.round);
  return absl::StrFormat("%7s  %8.4f  %9.4f  %12s  %10s", round, r.test.accuracy, r.test.loss,
                         bytes, time);
}

Summary Summarize(absl::Span<const RoundRecord> rounds, absl::Duration total_time) {
  Summary s;
  s.total_time = total_time;
  if (rounds.empty()) return s;
  // A record may cover several rounds if versions were published faster than
  // the driver looked.
  s.rounds = rounds.back().round - rounds.front().round;
  s.initial_accuracy = rounds.front().test.accuracy;
  s.initial_loss = rounds.front().test.loss;
  s.final_accuracy = rounds.back().test.accuracy;
  s.final_loss = rounds.back().test.loss;
  s.best_accuracy = s.initial_accuracy;
  absl::Duration round_time_sum;
  for (const RoundRecord& r : rounds) {
    if (r.test.accuracy > s.best_accuracy) {
      s.best_accuracy = r.test.accuracy;
      s.best_round = r.round;
    }
    if (r.round == 0) continue;
    s.total_bytes += r.bytes_received;
    round_time_sum += r.wall_time;
  }
  if (s.rounds > 0) s.mean_round_time = round_time_sum / s.rounds;
  return s;
}

std::string FormatSummary(const Summary& s) {
  std::string out = "\nsummary\n";
  auto row = [&out](const std::string& name, const std::string& value) {
    absl::StrAppendFormat(&out, "  %-18s %s\n", name, value);
  };
  row("initial accuracy", absl::StrFormat("%.4f (loss %.4f)", s.initial_accuracy, s.initial_loss));
  row("final accuracy", absl::StrFormat("%.4f (loss %.4f)", s.final_accuracy, s.final_loss));
  row("best accuracy", absl::StrFormat("%.4f (round %d)", s.best_accuracy, s.best_round));
  row("rounds", absl::StrCat(s.rounds));
  row("bytes received", FormatBytes(s.total_bytes));
  row("total time", absl::StrFormat("%.3f s", absl::ToDoubleSeconds(s.total_time)));
  row("mean round time", absl::StrFormat("%.3f s", absl::ToDoubleSeconds(s.mean_round_time)));
  return out;
}

int RoundsToTarget(absl::Span<const RoundRecord> rounds, double target) {
  for (const RoundRecord& r : rounds) {
    if (r.test.accuracy >= target) return r.round;
  }
  return -1;
}

}  // namespace tally::sim
