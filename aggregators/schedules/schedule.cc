#include "aggregators/schedules/schedule.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "aggregators/schedules/schedule_base.h"
#include "core/status_macros.h"

namespace tally::aggregators {
namespace {

using Factory = std::unique_ptr<Schedule> (*)(const ScheduleOptions&, StalenessFunction);

struct ScheduleEntry {
  const char* name;
  Factory create;
};

// The explicit registry (no static registrars: they are dropped from static
// libraries).
const std::vector<ScheduleEntry>& ScheduleTable() {
  static const auto* table = new std::vector<ScheduleEntry>{
      {"fedasync", &NewFedAsync},
      {"fedbuff", &NewFedBuff},
      {"fedfix", &NewFedFix},
      {"fedcompass", &NewFedCompass},
  };
  return *table;
}

absl::Status FieldError(absl::string_view field, absl::string_view requirement, double got) {
  return absl::InvalidArgumentError(
      absl::StrCat("schedule.", field, " must be ", requirement, ", got ", got));
}

absl::Status CheckDuration(absl::string_view field, absl::Duration d, bool allow_infinite) {
  if (d <= absl::ZeroDuration() || (!allow_infinite && d == absl::InfiniteDuration())) {
    return absl::InvalidArgumentError(absl::StrCat("schedule.", field, " must be > 0",
                                                   allow_infinite ? "" : " and finite", ", got ",
                                                   absl::FormatDuration(d)));
  }
  return absl::OkStatus();
}

absl::Status ValidateCompass(const ScheduleOptions& o) {
  if (o.min_local_steps < 1) return FieldError("min_local_steps", ">= 1", o.min_local_steps);
  if (o.max_local_steps < o.min_local_steps) {
    return FieldError("max_local_steps", absl::StrCat(">= min_local_steps (", o.min_local_steps, ")"),
                      o.max_local_steps);
  }
  if (!(o.speed_momentum > 0.0 && o.speed_momentum <= 1.0)) {
    return FieldError("speed_momentum", "in (0, 1]", o.speed_momentum);
  }
  if (!(std::isfinite(o.latest_time_factor) && o.latest_time_factor >= 1.0)) {
    return FieldError("latest_time_factor", "finite and >= 1", o.latest_time_factor);
  }
  return absl::OkStatus();
}

// The table entry named `name`, or null.
const ScheduleEntry* FindSchedule(const std::string& name) {
  for (const ScheduleEntry& e : ScheduleTable()) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

}  // namespace

const std::vector<std::string>& ScheduleNames() {
  static const auto* names = [] {
    auto* out = new std::vector<std::string>;
    for (const ScheduleEntry& e : ScheduleTable()) out->push_back(e.name);
    return out;
  }();
  return *names;
}

absl::Status ValidateScheduleOptions(const ScheduleOptions& o) {
  if (o.name == "sync") {
    return absl::InvalidArgumentError(
        "schedule.name: 'sync' is the coordinator's synchronous rounds, not a Schedule");
  }
  if (FindSchedule(o.name) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("schedule.name: unknown '", o.name,
                                                   "' (known: sync, ",
                                                   absl::StrJoin(ScheduleNames(), ", "), ")"));
  }
  if (!(std::isfinite(o.alpha) && o.alpha > 0.0)) return FieldError("alpha", "finite and > 0", o.alpha);
  if (o.client_weights != "equal" && o.client_weights != "sample_size") {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule.client_weights: unknown '", o.client_weights, "' (known: equal, sample_size)"));
  }
  if (o.num_clients < 1) return FieldError("num_clients", ">= 1", o.num_clients);
  TALLY_RETURN_IF_ERROR(StalenessFunction::Create(o.staleness, "schedule.staleness").status());
  if (o.local_steps < 1) return FieldError("local_steps", ">= 1", o.local_steps);
  TALLY_RETURN_IF_ERROR(CheckDuration("task_timeout", o.task_timeout, /*allow_infinite=*/true));
  if (o.name == "fedbuff" && o.buffer_size < 1) return FieldError("buffer_size", ">= 1", o.buffer_size);
  if (o.name == "fedfix") {
    TALLY_RETURN_IF_ERROR(CheckDuration("window", o.window, /*allow_infinite=*/false));
  }
  if (o.name == "fedcompass") TALLY_RETURN_IF_ERROR(ValidateCompass(o));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Schedule>> CreateSchedule(const ScheduleOptions& options) {
  TALLY_RETURN_IF_ERROR(ValidateScheduleOptions(options));
  TALLY_ASSIGN_OR_RETURN(StalenessFunction staleness,
                         StalenessFunction::Create(options.staleness, "schedule.staleness"));
  return FindSchedule(options.name)->create(options, staleness);  // Validated above.
}

// ---- ScheduleBase ----------------------------------------------------------

ScheduleBase::ScheduleBase(std::string name, const ScheduleOptions& options,
                           StalenessFunction staleness)
    : name_(std::move(name)), options_(options), staleness_(staleness) {}

absl::Time ScheduleBase::Observe(absl::Time now) {
  if (!started_) {
    started_ = true;
    origin_ = now;
    last_now_ = now;
  }
  last_now_ = std::max(last_now_, now);
  return last_now_;
}

BufferedUpdate ScheduleBase::Accept(const Arrival& arrival) {
  uint64_t& n = samples_[arrival.client_id];
  total_samples_ = total_samples_ - n + arrival.num_samples;
  n = arrival.num_samples;
  return BufferedUpdate{arrival.client_id, arrival.handle,
                        flushes_ - static_cast<int64_t>(arrival.staleness)};
}

ScheduleState ScheduleBase::SaveState() const {
  ScheduleState state;
  for (const auto& [client_id, n] : samples_) state.clients.push_back({client_id, n, 0});
  std::sort(state.clients.begin(), state.clients.end(),
            [](const ClientRecord& a, const ClientRecord& b) { return a.client_id < b.client_id; });
  return state;
}

void ScheduleBase::RestoreState(const ScheduleState& state) {
  for (const ClientRecord& record : state.clients) {
    if (record.num_samples == 0) continue;
    uint64_t& n = samples_[record.client_id];
    total_samples_ = total_samples_ - n + record.num_samples;
    n = record.num_samples;
  }
}

uint64_t ScheduleBase::StalenessOf(const BufferedUpdate& update) const {
  return static_cast<uint64_t>(flushes_ - update.base_tick);
}

double ScheduleBase::ClientWeight(absl::string_view client_id) const {
  if (options_.client_weights == "sample_size" && total_samples_ > 0) {
    auto it = samples_.find(client_id);
    const uint64_t n = it == samples_.end() ? 0 : it->second;
    return static_cast<double>(n) / static_cast<double>(total_samples_);
  }
  return 1.0 / options_.num_clients;
}

WeightedUpdate ScheduleBase::AppflWeighted(const BufferedUpdate& update) const {
  const uint64_t staleness = StalenessOf(update);
  return WeightedUpdate{update.handle, update.client_id,
                        options_.alpha * staleness_(staleness) * ClientWeight(update.client_id),
                        staleness};
}

void ScheduleBase::AppendAppflWeighted(absl::Span<const BufferedUpdate> updates,
                                       std::vector<WeightedUpdate>* out) const {
  out->reserve(out->size() + updates.size());
  for (const BufferedUpdate& u : updates) out->push_back(AppflWeighted(u));
}

void ScheduleBase::EmitFlush(std::vector<WeightedUpdate> updates, Decision* decision) {
  decision->flushes.push_back(Flush{std::move(updates)});
  ++flushes_;
}

TaskPlan ScheduleBase::DefaultPlan(absl::Time now) const {
  TaskPlan plan;
  plan.local_steps = options_.local_steps;
  plan.deadline = now + options_.task_timeout;
  return plan;
}

// ---- DeferringSchedule -----------------------------------------------------

absl::StatusOr<Decision> DeferringSchedule::OnArrival(const Arrival& arrival, absl::Time now) {
  if (IsWaiting(arrival.client_id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        name(), ": client '", arrival.client_id,
        "' pushed an update while its previous one is still waiting to be aggregated"));
  }
  const BufferedUpdate update = Accept(arrival);
  now = Observe(now);
  Decision decision;
  RunDue(now, /*inclusive=*/false, &decision);
  HandleArrival(update, now, &decision);
  return decision;
}

Decision DeferringSchedule::OnTimer(absl::Time now) {
  now = Observe(now);
  Decision decision;
  RunDue(now, /*inclusive=*/true, &decision);
  return decision;
}

}  // namespace tally::aggregators
