// Virtual-time heterogeneous federated learning (issue 4): runs one workload
// under "sync" FedAvg rounds or one of the asynchronous Schedules
// (aggregators/schedules/schedule.h) as a discrete-event simulation. No gRPC
// and no server: the simulator holds the global model and every client's
// pending delta in memory, drives the Schedule object directly and does the
// O(d) flush arithmetic itself (g = Σ weight·Δ, w ← w + server_lr·g: the sgd
// optimizer).
//
// Time is virtual (seconds from 0). Client c needs s_c seconds per local
// step, drawn once per run from HeterogeneityOptions (or given explicitly);
// a task of Q steps takes Q·s_c·j seconds, j a per-task jitter factor.
// Replies are instant (no communication time). Events are processed in
// increasing virtual time; ties go to the lower client index, then to the
// event created first; a schedule timer due at the same instant as an
// arrival runs after it (the arrival is on time, schedule.h).
//
// Every random draw comes from streams derived from `seed`: a client's k-th
// task always gets the same local-training seed (LocalTrainingSeed), jitter
// and dropout draws whatever the schedule, so runs of different schedules
// see the same clients and the same data.
//
// Thread-compatible free functions; a run is deterministic for its options.
#ifndef TALLY_SIM_VIRTUAL_TIME_H_
#define TALLY_SIM_VIRTUAL_TIME_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "aggregators/schedules/schedule.h"
#include "sim/local_training.h"
#include "sim/softmax_model.h"
#include "sim/synthetic_data.h"

namespace tally::sim {

// How per-client seconds-per-step are drawn (after the FedCompass paper's
// "normal" and "exponential" heterogeneity settings; the parameters are ours,
// see docs/simulator.md#heterogeneous-clients-in-virtual-time---async_compare).
enum class SpeedDistribution {
  kNormal,       // s_c ~ N(mean, stddev²).
  kExponential,  // s_c ~ Exp(1/mean): a heavy tail of stragglers.
};

absl::StatusOr<SpeedDistribution> ParseSpeedDistribution(absl::string_view name);
absl::string_view SpeedDistributionName(SpeedDistribution distribution);

struct HeterogeneityOptions {
  SpeedDistribution distribution = SpeedDistribution::kNormal;
  double mean_seconds_per_step = 1.0;    // > 0.
  double stddev_seconds_per_step = 0.3;  // kNormal only; >= 0.
  // Every draw is floored at this fraction of the mean (default 0.1), so no
  // client is infinitely fast.
  double min_fraction = 0.1;
  // Per-task relative jitter: a task's duration is multiplied by
  // max(0.1, N(1, jitter²)). 0 (default) = deterministic speeds.
  double jitter = 0;
  // Probability in [0, 1) that a client vanishes during a task: its update
  // never arrives; it comes back (asks for a new task) an Exp-distributed time
  // with mean `dropout_return_seconds` after the instant it would have
  // arrived, or never if that is < 0. Default 0: nobody drops.
  double dropout = 0;
  double dropout_return_seconds = 600;
};

// The per-client seconds per step of a run: `num_clients` draws.
std::vector<double> DrawSecondsPerStep(const HeterogeneityOptions& options, int num_clients,
                                       uint64_t seed);

// The local-training seed of client `client`'s `task`-th task (0-based; in
// sync mode the task index is the round).
uint64_t LocalTrainingSeed(uint64_t seed, int client, int64_t task);

struct VirtualTimeOptions {
  // "sync" or a name CreateSchedule knows.
  std::string schedule = "sync";
  // The schedule's options (`name` is replaced by `schedule`). `local_steps`
  // is also sync's steps per round.
  aggregators::ScheduleOptions schedule_options;
  // sync: clients per round, sampled uniformly without replacement from the
  // clients present; 0 (default) = all of them.
  int sync_clients_per_round = 0;
  double server_lr = 1.0;  // sgd learning rate on the aggregate (> 0).
  // Local training: batch_size and learning_rate are used; local_steps comes
  // from the task, the seed from LocalTrainingSeed.
  TrainOptions train;
  uint64_t seed = 1;
  double duration_seconds = 3600;  // Virtual time simulated (> 0).
  double target_accuracy = 0.7;    // Test accuracy for time_to_target.
  HeterogeneityOptions heterogeneity;
  // Non-empty: exactly one seconds-per-step per client, used instead of
  // drawing them (tests).
  std::vector<double> seconds_per_step;
  bool record_trace = false;  // Fill VirtualTimeResult::trace.
};

struct TraceUpdate {
  int client = 0;
  double weight = 0;
  uint64_t staleness = 0;
};

// One new model version.
struct FlushTrace {
  double time = 0;
  uint64_t version = 0;  // The version it published (1, 2, ...).
  std::vector<TraceUpdate> updates;
};

struct CurvePoint {
  double time = 0;
  int64_t updates = 0;  // Client updates aggregated so far.
  double accuracy = 0;  // Test accuracy of the model current from `time` on.
};

struct VirtualTimeResult {
  std::string schedule;
  // First version whose test accuracy is >= the target: its time and the
  // client updates aggregated up to it; -1 if never reached.
  double time_to_target = -1;
  int64_t updates_to_target = -1;
  Evaluation final_test;  // The model at duration_seconds.
  // Standard deviation of the test accuracy sampled at 100 evenly spaced
  // instants over the second half of the run: how much the model wobbles.
  double late_accuracy_std = 0;
  int64_t updates = 0;            // Client updates aggregated in all.
  uint64_t versions = 0;          // Model versions published.
  int64_t dropouts = 0;           // Tasks whose update never arrived.
  std::vector<CurvePoint> curve;  // curve[0] is the initial model at time 0.
  std::vector<FlushTrace> trace;  // If record_trace.
  std::vector<float> model;       // Final parameters.
};

// Runs `data.clients.size()` clients from an all-zero model for
// options.duration_seconds of virtual time. INVALID_ARGUMENT names a bad
// option.
absl::StatusOr<VirtualTimeResult> RunVirtualTime(const VirtualTimeOptions& options,
                                                 const SoftmaxRegression& model,
                                                 const FederatedData& data);

// One row per result: time and updates to the target, final accuracy, late
// accuracy std, versions.
std::string FormatVirtualTimeTable(absl::Span<const VirtualTimeResult> results,
                                   double target_accuracy);

}  // namespace tally::sim

#endif  // TALLY_SIM_VIRTUAL_TIME_H_
