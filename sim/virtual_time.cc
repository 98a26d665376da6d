#include "sim/virtual_time.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <queue>
#include <random>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "aggregators/step/aggregation_step.h"
#include "core/status_macros.h"
#include "core/vector_ops.h"
#include "sim/random.h"

namespace tally::sim {
namespace {

namespace agg = ::tally::aggregators;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Seed streams (see DeriveSeed); the client index is added. Distinct from
// federation.cc's so that nothing is shared by accident.
constexpr uint64_t kSpeedStream = uint64_t{0x56} << 32;
constexpr uint64_t kTaskDrawStream = uint64_t{0x57} << 32;
constexpr uint64_t kTrainStream = uint64_t{0x58} << 32;
constexpr uint64_t kSyncSampleStream = uint64_t{0x59} << 32;

// Virtual second t as the schedules' absl::Time.
absl::Time TimeAt(double t) { return absl::UnixEpoch() + absl::Seconds(t); }
double SecondsOf(absl::Time t) { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }

absl::Status Invalid(absl::string_view field, double got, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat(field, " = ", got, ": must be ", want));
}

absl::Status ValidateHeterogeneity(const HeterogeneityOptions& h) {
  if (!(h.mean_seconds_per_step > 0 && std::isfinite(h.mean_seconds_per_step))) {
    return Invalid("mean_seconds_per_step", h.mean_seconds_per_step, "finite and > 0");
  }
  if (!(h.stddev_seconds_per_step >= 0 && std::isfinite(h.stddev_seconds_per_step))) {
    return Invalid("stddev_seconds_per_step", h.stddev_seconds_per_step, "finite and >= 0");
  }
  if (!(h.min_fraction > 0 && h.min_fraction <= 1)) {
    return Invalid("min_fraction", h.min_fraction, "in (0, 1]");
  }
  if (!(h.jitter >= 0 && std::isfinite(h.jitter))) return Invalid("jitter", h.jitter, ">= 0");
  if (!(h.dropout >= 0 && h.dropout < 1)) return Invalid("dropout", h.dropout, "in [0, 1)");
  if (std::isnan(h.dropout_return_seconds)) {
    return Invalid("dropout_return_seconds", h.dropout_return_seconds, "a number");
  }
  return absl::OkStatus();
}

absl::Status Validate(const VirtualTimeOptions& o, const FederatedData& data) {
  if (data.clients.empty()) return absl::InvalidArgumentError("no clients");
  if (o.schedule != "sync") {
    agg::ScheduleOptions schedule = o.schedule_options;
    schedule.name = o.schedule;
    TALLY_RETURN_IF_ERROR(agg::ValidateScheduleOptions(schedule));
  } else if (o.schedule_options.local_steps < 1) {
    return Invalid("local_steps", o.schedule_options.local_steps, ">= 1");
  }
  if (o.sync_clients_per_round < 0) {
    return Invalid("sync_clients_per_round", o.sync_clients_per_round, ">= 0");
  }
  if (!(o.server_lr > 0 && std::isfinite(o.server_lr))) {
    return Invalid("server_lr", o.server_lr, "finite and > 0");
  }
  if (!(o.duration_seconds > 0 && std::isfinite(o.duration_seconds))) {
    return Invalid("duration_seconds", o.duration_seconds, "finite and > 0");
  }
  TrainOptions train = o.train;
  train.local_steps = 1;
  TALLY_RETURN_IF_ERROR(ValidateTrainOptions(train));
  TALLY_RETURN_IF_ERROR(ValidateHeterogeneity(o.heterogeneity));
  if (!o.seconds_per_step.empty()) {
    if (o.seconds_per_step.size() != data.clients.size()) {
      return Invalid("seconds_per_step.size()", o.seconds_per_step.size(),
                     absl::StrCat("the number of clients (", data.clients.size(), ")"));
    }
    for (double s : o.seconds_per_step) {
      if (!(s > 0 && std::isfinite(s))) return Invalid("seconds_per_step", s, "finite and > 0");
    }
  }
  return absl::OkStatus();
}

struct TaskOutcome {
  double duration = 0;      // Compute time of the task.
  bool dropped = false;     // The update never arrives.
  double return_after = 0;  // Dropped: seconds after `duration` until it is back.
};

// The state every mode shares: the global model, the clients' speeds and
// random draws, and what the run observed.
class World {
 public:
  World(const VirtualTimeOptions& options, const SoftmaxRegression& model,
        const FederatedData& data)
      : options_(options),
        model_(model),
        data_(data),
        params_(model.num_params(), 0.0f),
        aggregate_(model.num_params()),
        tasks_(data.clients.size(), 0) {
    aggregators::AggregationStepOptions step;
    step.optimizer.name = "sgd";
    step.optimizer.learning_rate = options.server_lr;
    step_ = aggregators::AggregationStep::Create(step).value();  // sgd takes any lr.
    speeds_ = options.seconds_per_step.empty()
                  ? DrawSecondsPerStep(options.heterogeneity, static_cast<int>(data.clients.size()),
                                       options.seed)
                  : options.seconds_per_step;
    for (size_t c = 0; c < data.clients.size(); ++c) {
      task_rngs_.emplace_back(DeriveSeed(options.seed, kTaskDrawStream + c));
    }
    result_.schedule = options.schedule;
  }

  int num_clients() const { return static_cast<int>(data_.clients.size()); }
  uint64_t version() const { return version_; }
  uint64_t num_samples(int c) const { return data_.clients[c].size(); }
  double end() const { return options_.duration_seconds; }

  // Client c trains its next task of `steps` steps on the current model; its
  // Δ = w_local − w goes to *delta.
  absl::StatusOr<TaskOutcome> Train(int c, uint32_t steps, std::vector<float>* delta) {
    // Every task makes the same three draws, whatever the options, so that
    // client c's k-th task looks the same under every schedule.
    std::mt19937_64& rng = task_rngs_[c];
    const double z = std::normal_distribution<double>(0.0, 1.0)(rng);
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const double e = std::exponential_distribution<double>(1.0)(rng);
    const HeterogeneityOptions& h = options_.heterogeneity;
    TaskOutcome outcome;
    outcome.duration = steps * speeds_[c] * std::max(0.1, 1.0 + h.jitter * z);
    outcome.dropped = u < h.dropout;
    outcome.return_after = h.dropout_return_seconds < 0 ? kInf : e * h.dropout_return_seconds;

    TrainOptions train = options_.train;
    train.local_steps = static_cast<int>(steps);
    train.seed = LocalTrainingSeed(options_.seed, c, tasks_[c]++);
    TALLY_RETURN_IF_ERROR(TrainDelta(model_, data_.clients[c], train, params_, delta).status());
    if (outcome.dropped) ++result_.dropouts;
    return outcome;
  }

  // Publishes one version at `time`: w ← w + server_lr · Σ weight_i Δ_i,
  // the sum exact as in the server (aggregators/step/aggregation_step.h).
  absl::Status Publish(double time, absl::Span<const std::pair<double, const float*>> terms,
                       std::vector<TraceUpdate> trace) {
    std::vector<double> weights;
    std::vector<const float*> deltas;
    for (const auto& [weight, delta] : terms) {
      weights.push_back(weight);
      deltas.push_back(delta);
    }
    TALLY_ASSIGN_OR_RETURN(aggregators::ExactCombination combination,
                           aggregators::ExactCombination::Create(weights));
    combination.Combine(deltas, aggregate_.size(), aggregate_.data());
    TALLY_RETURN_IF_ERROR(step_->Apply(params_, absl::MakeSpan(aggregate_)));
    params_.swap(aggregate_);
    ++version_;
    result_.updates += static_cast<int64_t>(terms.size());
    if (options_.record_trace) result_.trace.push_back({time, version_, std::move(trace)});
    return Record(time);
  }

  // The initial model's point of the curve.
  absl::Status Start() { return Record(0); }

  VirtualTimeResult Finish() && {
    result_.versions = version_;
    result_.model = std::move(params_);
    result_.late_accuracy_std = LateAccuracyStd(result_.curve, end());
    return std::move(result_);
  }

 private:
  absl::Status Record(double time) {
    TALLY_ASSIGN_OR_RETURN(Evaluation test, model_.Evaluate(params_, data_.test));
    result_.final_test = test;
    result_.curve.push_back({time, result_.updates, test.accuracy});
    if (result_.time_to_target < 0 && test.accuracy >= options_.target_accuracy) {
      result_.time_to_target = time;
      result_.updates_to_target = result_.updates;
    }
    return absl::OkStatus();
  }

  // Population std of the piecewise-constant accuracy sampled at 100 instants
  // evenly spread over [end/2, end).
  static double LateAccuracyStd(const std::vector<CurvePoint>& curve, double end) {
    constexpr int kSamples = 100;
    std::vector<double> samples;
    size_t i = 0;
    for (int k = 0; k < kSamples; ++k) {
      const double t = end / 2 + k * (end / 2) / kSamples;
      while (i + 1 < curve.size() && curve[i + 1].time <= t) ++i;
      samples.push_back(curve[i].accuracy);
    }
    const double mean = std::accumulate(samples.begin(), samples.end(), 0.0) / kSamples;
    double var = 0;
    for (double s : samples) var += (s - mean) * (s - mean);
    return std::sqrt(var / kSamples);
  }

  const VirtualTimeOptions& options_;
  const SoftmaxRegression& model_;
  const FederatedData& data_;
  std::vector<double> speeds_;
  std::vector<std::mt19937_64> task_rngs_;
  std::vector<float> params_;
  std::vector<float> aggregate_;  // g, then the next model (swapped with params_).
  std::unique_ptr<aggregators::AggregationStep> step_;  // sgd at server_lr.
  std::vector<int64_t> tasks_;    // Tasks started per client.
  uint64_t version_ = 0;
  VirtualTimeResult result_;
};

// ---- asynchronous schedules --------------------------------------------------

class ScheduleDriver {
 public:
  ScheduleDriver(World* world, agg::Schedule* schedule) : world_(world), schedule_(schedule) {
    for (int c = 0; c < world->num_clients(); ++c) {
      ids_.push_back(absl::StrCat("client-", c));
      index_[ids_.back()] = c;
    }
  }

  absl::Status Run() {
    for (int c = 0; c < world_->num_clients(); ++c) TALLY_RETURN_IF_ERROR(AskForTask(c, 0));
    const absl::Time end = TimeAt(world_->end());
    for (;;) {
      const absl::Time timer = schedule_->NextTimer();
      const absl::Time next = events_.empty() ? absl::InfiniteFuture() : TimeAt(events_.top().time);
      if (timer < next) {  // An arrival at the timer's instant goes first.
        if (timer > end) return absl::OkStatus();
        TALLY_RETURN_IF_ERROR(Execute(schedule_->OnTimer(timer), SecondsOf(timer)));
        if (schedule_->NextTimer() <= timer) {
          return absl::InternalError(absl::StrCat(schedule_->name(), ": timer did not advance"));
        }
        continue;
      }
      if (next > end) return absl::OkStatus();
      const Event event = events_.top();
      events_.pop();
      if (event.kind == Event::kReturn) {
        TALLY_RETURN_IF_ERROR(AskForTask(event.client, event.time));
      } else {
        TALLY_RETURN_IF_ERROR(Arrive(event));
      }
    }
  }

 private:
  struct Event {
    enum Kind { kArrival, kReturn };
    double time = 0;
    int client = 0;
    uint64_t seq = 0;  // Creation order.
    Kind kind = kArrival;
    agg::UpdateHandle handle = 0;
  };
  // Min-heap on (time, client, seq).
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      if (a.time != b.time) return a.time > b.time;
      if (a.client != b.client) return a.client > b.client;
      return a.seq > b.seq;
    }
  };
  struct Stored {
    int client = 0;
    uint64_t base_version = 0;
    std::vector<float> delta;
  };

  absl::Status AskForTask(int c, double t) {
    const agg::TaskPlan plan = schedule_->PlanFor(ids_[c], TimeAt(t));
    if (plan.wait) return absl::OkStatus();  // An Assignment will name it.
    return StartTask(c, plan.local_steps, t);
  }

  absl::Status StartTask(int c, uint32_t steps, double t) {
    Stored stored{c, world_->version(), {}};
    TALLY_ASSIGN_OR_RETURN(TaskOutcome outcome, world_->Train(c, steps, &stored.delta));
    Event event{t + outcome.duration, c, next_seq_++, Event::kArrival, 0};
    if (outcome.dropped) {
      if (std::isinf(outcome.return_after)) return absl::OkStatus();
      event.time += outcome.return_after;
      event.kind = Event::kReturn;
    } else {
      event.handle = next_handle_++;
      updates_[event.handle] = std::move(stored);
    }
    events_.push(event);
    return absl::OkStatus();
  }

  absl::Status Arrive(const Event& event) {
    const Stored& stored = updates_.at(event.handle);
    agg::Arrival arrival;
    arrival.client_id = ids_[event.client];
    arrival.handle = event.handle;
    arrival.staleness = world_->version() - stored.base_version;
    arrival.num_samples = world_->num_samples(event.client);
    TALLY_ASSIGN_OR_RETURN(agg::Decision decision,
                           schedule_->OnArrival(arrival, TimeAt(event.time)));
    return Execute(decision, event.time);
  }

  // schedule.h's Execute: flushes in order, free dropped, start assignments.
  absl::Status Execute(const agg::Decision& decision, double t) {
    for (const agg::Flush& flush : decision.flushes) {
      std::vector<std::pair<double, const float*>> terms;
      std::vector<TraceUpdate> trace;
      for (const agg::WeightedUpdate& u : flush.updates) {
        const Stored& stored = updates_.at(u.handle);
        terms.emplace_back(u.weight, stored.delta.data());
        trace.push_back({stored.client, u.weight, u.staleness});
      }
      TALLY_RETURN_IF_ERROR(world_->Publish(t, terms, std::move(trace)));
      for (const agg::WeightedUpdate& u : flush.updates) updates_.erase(u.handle);
    }
    for (agg::UpdateHandle h : decision.dropped) updates_.erase(h);
    for (const agg::Assignment& a : decision.assignments) {
      if (a.plan.wait) continue;
      TALLY_RETURN_IF_ERROR(StartTask(index_.at(a.client_id), a.plan.local_steps, t));
    }
    return absl::OkStatus();
  }

  World* world_;
  agg::Schedule* schedule_;
  std::vector<std::string> ids_;
  absl::flat_hash_map<std::string, int> index_;
  std::priority_queue<Event, std::vector<Event>, Later> events_;
  uint64_t next_seq_ = 0;
  agg::UpdateHandle next_handle_ = 1;
  absl::flat_hash_map<agg::UpdateHandle, Stored> updates_;
};

// ---- sync: FedAvg rounds -------------------------------------------------------

// Each round, the clients present (or a uniform sample of them) train
// local_steps from the current model; the round ends when the slowest one
// that did not drop out finishes (a dropped client is assumed detected at
// once); the new model adds the sample-weighted mean of their deltas.
absl::Status RunSync(const VirtualTimeOptions& options, World* world) {
  const int n = world->num_clients();
  const uint32_t steps = options.schedule_options.local_steps;
  std::vector<double> back_at(n, 0);  // When a dropped client is present again.
  std::mt19937_64 sample_rng(DeriveSeed(options.seed, kSyncSampleStream));
  std::vector<std::vector<float>> deltas(n);
  double t = 0;
  while (t < world->end()) {
    std::vector<int> present;
    for (int c = 0; c < n; ++c) {
      if (back_at[c] <= t) present.push_back(c);
    }
    if (present.empty()) {
      t = *std::min_element(back_at.begin(), back_at.end());
      continue;
    }
    const int m = options.sync_clients_per_round;
    if (m > 0 && m < static_cast<int>(present.size())) {
      std::shuffle(present.begin(), present.end(), sample_rng);
      present.resize(m);
      std::sort(present.begin(), present.end());
    }
    double round_end = t;
    double last_finish = t;  // Of any participant, if all of them drop.
    std::vector<int> finished;
    for (int c : present) {
      TALLY_ASSIGN_OR_RETURN(TaskOutcome outcome, world->Train(c, steps, &deltas[c]));
      last_finish = std::max(last_finish, t + outcome.duration);
      if (outcome.dropped) {
        back_at[c] = t + outcome.duration + outcome.return_after;
      } else {
        round_end = std::max(round_end, t + outcome.duration);
        finished.push_back(c);
      }
    }
    if (finished.empty()) round_end = last_finish;
    if (round_end > world->end()) break;
    if (!finished.empty()) {
      double total = 0;
      for (int c : finished) total += static_cast<double>(world->num_samples(c));
      std::vector<std::pair<double, const float*>> terms;
      std::vector<TraceUpdate> trace;
      for (int c : finished) {
        const double weight = static_cast<double>(world->num_samples(c)) / total;
        terms.emplace_back(weight, deltas[c].data());
        trace.push_back({c, weight, 0});
      }
      TALLY_RETURN_IF_ERROR(world->Publish(round_end, terms, std::move(trace)));
    }
    t = round_end;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpeedDistribution> ParseSpeedDistribution(absl::string_view name) {
  if (name == "normal") return SpeedDistribution::kNormal;
  if (name == "exponential") return SpeedDistribution::kExponential;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown speed distribution '", name, "' (known: normal, exponential)"));
}

absl::string_view SpeedDistributionName(SpeedDistribution distribution) {
  return distribution == SpeedDistribution::kNormal ? "normal" : "exponential";
}

std::vector<double> DrawSecondsPerStep(const HeterogeneityOptions& options, int num_clients,
                                       uint64_t seed) {
  std::vector<double> speeds;
  const double mean = options.mean_seconds_per_step;
  for (int c = 0; c < num_clients; ++c) {
    std::mt19937_64 rng(DeriveSeed(seed, kSpeedStream + c));
    const double s =
        options.distribution == SpeedDistribution::kNormal
            ? std::normal_distribution<double>(mean, options.stddev_seconds_per_step)(rng)
            : std::exponential_distribution<double>(1.0 / mean)(rng);
    speeds.push_back(std::max(s, options.min_fraction * mean));
  }
  return speeds;
}

uint64_t LocalTrainingSeed(uint64_t seed, int client, int64_t task) {
  return DeriveSeed(DeriveSeed(seed, kTrainStream + static_cast<uint64_t>(client)),
                    static_cast<uint64_t>(task));
}

absl::StatusOr<VirtualTimeResult> RunVirtualTime(const VirtualTimeOptions& options,
                                                 const SoftmaxRegression& model,
                                                 const FederatedData& data) {
  TALLY_RETURN_IF_ERROR(Validate(options, data));
  World world(options, model, data);
  TALLY_RETURN_IF_ERROR(world.Start());
  if (options.schedule == "sync") {
    TALLY_RETURN_IF_ERROR(RunSync(options, &world));
  } else {
    agg::ScheduleOptions schedule_options = options.schedule_options;
    schedule_options.name = options.schedule;
    TALLY_ASSIGN_OR_RETURN(std::unique_ptr<agg::Schedule> schedule,
                           agg::CreateSchedule(schedule_options));
    ScheduleDriver driver(&world, schedule.get());
    TALLY_RETURN_IF_ERROR(driver.Run());
  }
  return std::move(world).Finish();
}

std::string FormatVirtualTimeTable(absl::Span<const VirtualTimeResult> results,
                                   double target_accuracy) {
  const std::string to = absl::StrFormat("%.2f", target_accuracy);
  std::string out = absl::StrFormat("%-11s  %12s  %12s  %9s  %12s  %8s  %8s  %8s\n", "schedule",
                                    absl::StrCat("time_to_", to), absl::StrCat("upd_to_", to),
                                    "final_acc", "late_acc_std", "versions", "updates", "dropouts");
  for (const VirtualTimeResult& r : results) {
    const bool reached = r.time_to_target >= 0;
    absl::StrAppendFormat(
        &out, "%-11s  %12s  %12s  %9.4f  %12.4f  %8d  %8d  %8d\n", r.schedule,
        reached ? absl::StrFormat("%.0f s", r.time_to_target) : std::string("never"),
        reached ? absl::StrCat(r.updates_to_target) : std::string("-"), r.final_test.accuracy,
        r.late_accuracy_std, r.versions, r.updates, r.dropouts);
  }
  return out;
}

}  // namespace tally::sim
