// FedFix-Δt (Fraboni et al., JMLR 2023; docs/algorithms.md#fedfix). The server
// aggregates at fixed instants t_n = origin + (n+1)·Δt every update that
// arrived in (t_{n-1}, t_n] (an arrival exactly at t_n belongs to window n,
// as the reference's `return_time <= (n+1)Δt`):
//
//   θ^{n+1} = θ^n + η_g Σ_{i∈S_n} d_i Δ_i,   d_i = p_i · ⌈τ_i/Δt⌉,
//
// η_g being the optimizer's learning rate, p_i the client weight (1/N or
// n_i/Σn_j) and Δ_i = θ_i^loc − θ^{ρ_i(n)} the client's own delta (no
// staleness discount). Contributors wait for the window's end and restart
// on θ^{n+1}.
//
// τ_i is unknown to a real server. Estimator (an engineering adaptation,
// not from the paper): k_i = windows elapsed between the boundary at which
// the client (re)started and the boundary that aggregates its update. A
// client restarted at t_m and returning after a compute time τ_i lands in
// window m + ⌈τ_i/Δt⌉, so k_i = ⌈τ_i/Δt⌉ exactly when compute times are
// deterministic and replies are instant (the paper's setting and the worked
// example, docs/algorithms.md#fedfix-worked-example). A client's first task
// counts from the last boundary at or before its first GetTask (the origin
// for clients present from the start).
// k_i >= 1 always.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "aggregators/schedules/schedule_base.h"

namespace tally::aggregators {
namespace {

class FedFix final : public DeferringSchedule {
 public:
  FedFix(const ScheduleOptions& options, StalenessFunction s)
      : DeferringSchedule("fedfix", options, s) {}

  TaskPlan PlanFor(absl::string_view client_id, absl::Time now) override {
    now = Observe(now);
    auto [it, inserted] = clients_.try_emplace(client_id);
    if (inserted) it->second.start_window = LastBoundaryAtOrBefore(now);
    if (it->second.waiting) return WaitPlan();
    return DefaultPlan(now);
  }

  absl::Time NextTimer() const override {
    return buffer_.empty() ? absl::InfiniteFuture() : Boundary(buffer_window_);
  }

 protected:
  bool IsWaiting(absl::string_view client_id) const override {
    auto it = clients_.find(client_id);
    return it != clients_.end() && it->second.waiting;
  }

  void HandleArrival(const BufferedUpdate& update, absl::Time now, Decision*) override {
    // Unknown clients (no GetTask seen) count from the origin.
    ClientState& client = clients_.try_emplace(update.client_id).first->second;
    const int64_t window = WindowOf(now);
    buffer_.push_back({update, std::max<int64_t>(1, window - client.start_window)});
    buffer_window_ = window;
    client.waiting = true;
  }

 private:
  struct ClientState {
    int64_t start_window = -1;  // Boundary index it (re)started at; -1 = origin.
    bool waiting = false;       // Its update is in buffer_.
  };
  struct Entry {
    BufferedUpdate update;
    int64_t windows = 1;  // k_i, the estimate of ⌈τ_i/Δt⌉.
  };

  // t_n = origin + (n+1)Δt.
  absl::Time Boundary(int64_t n) const { return origin() + options().window * (n + 1); }
  // The window n with t_{n-1} < t <= t_n (0 for t = origin).
  int64_t WindowOf(absl::Time t) const {
    absl::Duration rem;
    const int64_t q = absl::IDivDuration(t - origin(), options().window, &rem);
    return rem == absl::ZeroDuration() ? std::max<int64_t>(0, q - 1) : q;
  }
  // The largest m with t_m <= t (-1 before the first boundary).
  int64_t LastBoundaryAtOrBefore(absl::Time t) const {
    absl::Duration rem;
    return absl::IDivDuration(t - origin(), options().window, &rem) - 1;
  }

  // Aggregates the buffered window if its boundary is before `now` (or at
  // it, when `inclusive`). All buffered updates share one window: a later
  // arrival first flushes the earlier window.
  void RunDue(absl::Time now, bool inclusive, Decision* decision) override {
    if (buffer_.empty()) return;
    const absl::Time boundary = Boundary(buffer_window_);
    if (boundary > now || (!inclusive && boundary == now)) return;
    std::vector<WeightedUpdate> updates;
    updates.reserve(buffer_.size());
    for (const Entry& e : buffer_) {
      const double d = ClientWeight(e.update.client_id) * static_cast<double>(e.windows);
      updates.push_back({e.update.handle, e.update.client_id, d, StalenessOf(e.update)});
    }
    EmitFlush(std::move(updates), decision);
    for (const Entry& e : buffer_) {
      ClientState& client = clients_[e.update.client_id];
      client.waiting = false;
      client.start_window = buffer_window_;
      decision->assignments.push_back({e.update.client_id, DefaultPlan(now)});
    }
    buffer_.clear();
  }

  absl::flat_hash_map<std::string, ClientState> clients_;
  std::vector<Entry> buffer_;
  int64_t buffer_window_ = 0;
};

}  // namespace

std::unique_ptr<Schedule> NewFedFix(const ScheduleOptions& options, StalenessFunction s) {
  return std::make_unique<FedFix>(options, s);
}

}  // namespace tally::aggregators
