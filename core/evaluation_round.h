// One federated evaluation (docs/workflow.md#evaluation): which clients
// were asked to evaluate which model version, who reported what, and the
// aggregate once every asked client reported or at the deadline.
// Thread-compatible: the owner (the server's round driver) serializes calls.
#ifndef TALLY_CORE_EVALUATION_ROUND_H_
#define TALLY_CORE_EVALUATION_ROUND_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/metrics_aggregator.h"

namespace tally {

// Whether the model of `rounds_completed` completed rounds (asynchronous
// schedules: versions) is evaluated: every `every_rounds` (0 = never), and
// the last one (rounds_completed == total_rounds != 0) if `at_end`.
bool EvaluationDue(uint64_t rounds_completed, uint32_t every_rounds, bool at_end,
                   uint64_t total_rounds);

struct EvaluationResult {
  uint64_t evaluation_id = 0;
  uint64_t model_version = 0;
  uint64_t round = 0;           // Rounds completed at model_version.
  uint32_t asked = 0;           // Clients sampled.
  uint32_t reported = 0;        // Clients whose report was taken.
  uint64_t num_examples = 0;    // Sum over the reports.
  std::map<std::string, double> metrics;  // Aggregated (empty: nobody reported).
  bool timed_out = false;       // Closed at the deadline with reports missing.
};

class EvaluationRound {
 public:
  // `asked`: the sampled client ids (unique). `metrics` (not owned, outlives
  // this) combines the reports; it keeps the names admitted over the run.
  EvaluationRound(uint64_t evaluation_id, uint64_t model_version, uint64_t round,
                  const std::vector<std::string>& asked, absl::Time deadline,
                  MetricsAggregator* metrics);

  uint64_t evaluation_id() const { return evaluation_id_; }
  uint64_t model_version() const { return model_version_; }
  absl::Time deadline() const { return deadline_; }

  // True when `client_id` should get (again: a lost answer) this
  // evaluation's EVALUATE task: asked, not reported, not forgotten, open.
  bool ShouldEvaluate(const std::string& client_id) const;

  // Takes one client's report. Errors (nothing is recorded):
  //   ABORTED: another evaluation id, or this one has closed;
  //   FAILED_PRECONDITION: the client was not asked (or left);
  //   ALREADY_EXISTS: it already reported;
  //   INVALID_ARGUMENT: another model_version, num_examples 0, metrics that
  //   ValidateMetrics refuses (at most max_metric_names entries).
  // Returns the number of reports taken, this one included.
  absl::StatusOr<uint32_t> Report(const std::string& client_id, uint64_t evaluation_id,
                                  uint64_t model_version, uint64_t num_examples,
                                  const std::map<std::string, double>& metrics,
                                  size_t max_metric_names);

  // A client that left is no longer waited for.
  void Forget(const std::string& client_id);

  // Every asked client reported or was forgotten, or `now` >= deadline.
  bool Complete(absl::Time now) const;

  // Closes the evaluation (later reports get ABORTED) and aggregates.
  EvaluationResult Finish(absl::Time now);

 private:
  enum class State { kAsked, kReported, kGone };

  const uint64_t evaluation_id_;
  const uint64_t model_version_;
  const uint64_t round_;
  const absl::Time deadline_;
  MetricsAggregator* const metrics_;
  std::map<std::string, State> clients_;
  size_t waiting_ = 0;  // Clients in kAsked.
  uint32_t reported_ = 0;
  uint64_t num_examples_ = 0;
  bool closed_ = false;
};

}  // namespace tally

#endif  // TALLY_CORE_EVALUATION_ROUND_H_
