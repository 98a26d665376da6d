// The run history (docs/workflow.md#history): one record per completed
// round (or asynchronous model version) and per completed federated
// evaluation, kept in memory for Admin.GetHistory and appended to a JSON
// Lines file, one object per line, flushed as written.
#ifndef TALLY_CORE_RUN_HISTORY_H_
#define TALLY_CORE_RUN_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/sync.h"

namespace tally {

struct HistoryRecord {
  enum class Kind { kFit, kEvaluate };
  Kind kind = Kind::kFit;
  int64_t unix_ms = 0;         // When it completed.
  uint64_t round = 0;          // fit: the round; evaluate: rounds completed at model_version.
  uint64_t model_version = 0;  // fit: the version produced; evaluate: the version evaluated.
  uint32_t participants = 0;   // Updates aggregated / clients that reported.
  uint64_t bytes_received = 0;  // fit: update payload bytes.
  uint64_t num_examples = 0;    // Sum of the updates' num_samples / reports' num_examples.
  std::map<std::string, double> metrics;        // Aggregated client metrics.
  std::map<std::string, std::string> decisions;  // fit: what the rule decided, if it says.
  uint64_t evaluation_id = 0;                    // evaluate.

  bool operator==(const HistoryRecord& other) const;
};

// "fit" / "evaluate".
absl::string_view HistoryKindName(HistoryRecord::Kind kind);

// One JSON object without the newline, e.g.
// {"kind":"fit","time":"2026-12-08T01:02:03.456Z","unix_ms":...,"round":3,
//  "model_version":3,"participants":2,"bytes_received":320,
//  "num_examples":500,"metrics":{"loss":0.25},"decisions":{}}
// (evaluate records carry "evaluation_id" instead of "bytes_received" and
// "decisions"). Metric values must be finite.
std::string HistoryRecordToJson(const HistoryRecord& record);
// The inverse; INVALID_ARGUMENT naming the field for a malformed line.
// Unknown fields are ignored ("time" is derived from unix_ms).
absl::StatusOr<HistoryRecord> HistoryRecordFromJson(absl::string_view line);
// Every record of a history file; INVALID_ARGUMENT naming the line.
absl::StatusOr<std::vector<HistoryRecord>> ReadHistoryFile(const std::string& path);

// The history of one run. Thread-safe.
class RunHistory {
 public:
  // Keeps the newest `keep` records in memory (GetHistory); the file, when
  // `path` is set, keeps them all. An existing file is appended to; a last
  // line cut short (a crash mid-write) is removed first. Its records are
  // loaded into memory. Errors name the path.
  static absl::StatusOr<std::unique_ptr<RunHistory>> Open(const std::string& path,
                                                          size_t keep = 100000);
  ~RunHistory();

  // Appends and flushes one record; a write error is returned (the record
  // stays in memory).
  absl::Status Append(const HistoryRecord& record);

  // Records whose round > after_round, the newest `max_records` of them (0 =
  // all kept), oldest first.
  std::vector<HistoryRecord> Records(uint64_t after_round = 0, size_t max_records = 0) const;
  const std::string& path() const { return path_; }

 private:
  RunHistory(std::string path, std::FILE* file, size_t keep)
      : path_(std::move(path)), file_(file), keep_(keep) {}

  const std::string path_;
  mutable tally::Mutex mu_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_);  // Null without a path.
  const size_t keep_;
  std::deque<HistoryRecord> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally

#endif  // TALLY_CORE_RUN_HISTORY_H_
