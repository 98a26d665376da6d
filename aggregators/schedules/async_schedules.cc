// APPFL's FedAsync and FedBuff schedules (docs/algorithms.md#fedasync,
// docs/algorithms.md#fedbuff; APPFL
// src/appfl/algorithm/aggregator/{fedasync,fedbuff}_aggregator.py). Both
// weight an update by α_c = α · S(staleness) · weight_c and reply at once.
#include <utility>
#include <vector>

#include "aggregators/schedules/schedule_base.h"

namespace tally::aggregators {
namespace {

// Replies at once with the default plan; no timers.
class ImmediateSchedule : public ScheduleBase {
 public:
  using ScheduleBase::ScheduleBase;

  TaskPlan PlanFor(absl::string_view /*client_id*/, absl::Time now) override {
    now = Observe(now);
    return DefaultPlan(now);
  }

  absl::Time NextTimer() const override { return absl::InfiniteFuture(); }
  Decision OnTimer(absl::Time now) override {
    now = Observe(now);
    return {};
  }
};

// Every arrival is applied alone: w ← w + α_c Δ_c, one version per update.
class FedAsync final : public ImmediateSchedule {
 public:
  FedAsync(const ScheduleOptions& options, StalenessFunction s)
      : ImmediateSchedule("fedasync", options, s) {}

  absl::StatusOr<Decision> OnArrival(const Arrival& arrival, absl::Time now) override {
    now = Observe(now);
    Decision decision;
    EmitFlush({AppflWeighted(Accept(arrival))}, &decision);
    decision.assignments.push_back({arrival.client_id, DefaultPlan(now)});
    return decision;
  }
};

// Buffers K updates, then applies w ← w + Σ α_c Δ_c (no 1/K: α plays the
// server learning rate, as APPFL) as one version. The version only advances on
// flushes, so the staleness at arrival is also the staleness at the flush.
class FedBuff final : public ImmediateSchedule {
 public:
  FedBuff(const ScheduleOptions& options, StalenessFunction s)
      : ImmediateSchedule("fedbuff", options, s) {
    buffer_.reserve(options.buffer_size);
  }

  absl::StatusOr<Decision> OnArrival(const Arrival& arrival, absl::Time now) override {
    now = Observe(now);
    Decision decision;
    buffer_.push_back(Accept(arrival));
    if (buffer_.size() >= options().buffer_size) {
      // sample_size weights are evaluated at the flush, when every buffered
      // client's n_c is known.
      std::vector<WeightedUpdate> updates;
      AppendAppflWeighted(buffer_, &updates);
      buffer_.clear();
      EmitFlush(std::move(updates), &decision);
    }
    decision.assignments.push_back({arrival.client_id, DefaultPlan(now)});
    return decision;
  }

 private:
  std::vector<BufferedUpdate> buffer_;
};

}  // namespace

std::unique_ptr<Schedule> NewFedAsync(const ScheduleOptions& options, StalenessFunction s) {
  return std::make_unique<FedAsync>(options, s);
}

std::unique_ptr<Schedule> NewFedBuff(const ScheduleOptions& options, StalenessFunction s) {
  return std::make_unique<FedBuff>(options, s);
}

}  // namespace tally::aggregators
