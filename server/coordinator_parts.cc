// Building the Coordinator: the one place where the plan decides which
// sink, driver and publisher run (docs/server.md, "Parts and seams").
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregators/rules/parallel.h"
#include "core/status_macros.h"
#include "server/buffered_sink.h"
#include "server/coordinator.h"
#include "server/coordinator_epoch.h"
#include "server/mean_sink.h"
#include "server/privacy_driver.h"
#include "server/private_sink.h"
#include "server/rounds_driver.h"
#include "server/row_sink.h"
#include "server/schedule_driver.h"

namespace tally::server {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(Options options) {
  if (options.plan.robust) aggregators::SetRuleThreads(options.plan.rule_threads);
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<aggregators::AggregationStep> step,
                         aggregators::AggregationStep::Create(options.plan.step));
  RestoreOptimizerState(*step, options.optimizer_state);
  std::unique_ptr<aggregators::Schedule> schedule;
  if (options.plan.schedule.has_value()) {
    TALLY_ASSIGN_OR_RETURN(schedule, aggregators::CreateSchedule(*options.plan.schedule));
  }
  std::shared_ptr<PrivacyState> privacy;
  if (options.plan.privacy.central) {
    // The checkpoint's ledger is parsed here: a damaged one or another
    // delta refuses the start (the epsilon spent must not be lost).
    TALLY_ASSIGN_OR_RETURN(privacy,
                           PrivacyState::Create(options.plan.privacy, options.privacy_state,
                                                privacy::NoiseRandomFromEnvironment()));
  }
  // Nothing below fails: the Coordinator is whole before it can be destroyed.
  auto coordinator = std::unique_ptr<Coordinator>(new Coordinator(options, std::move(step)));
  coordinator->privacy_ = std::move(privacy);
  coordinator->MakeParts(options, std::move(schedule));
  coordinator->worker_ = std::thread([c = coordinator.get()] { c->WorkerLoop(); });
  return coordinator;
}

Coordinator::Coordinator(Options& options, std::unique_ptr<aggregators::AggregationStep> step)
    : clock_(options.clock),
      metrics_(options.metrics),
      workflow_(options.workflow),
      store_(options.plan.layout, std::move(options.initial_params), clock_->Now(),
             options.initial_version, options.initial_round),
      codecs_(options.plan.uploads.codecs),
      limits_{options.plan.uploads.max_update_bytes, options.plan.uploads.max_num_samples,
              options.plan.uploads.max_chunk_bytes, options.plan.uploads.max_abs_value, &codecs_},
      pool_(std::make_shared<BufferPool>(options.plan.layout.NumParams(),
                                         options.plan.idle_buffers)),
      step_(std::move(step)),
      sessions_(options.plan.sessions, metrics_),
      admission_(options.plan.admission),
      epoch_(std::make_shared<Epoch>()) {
  store_.set_recycler(pool_);
  tally::MutexLock lock(&mu_);
  ledger_.Restore(options.applied_ids);
}

void Coordinator::MakeParts(Options& options, std::unique_ptr<aggregators::Schedule> schedule) {
  const ServerPlan& plan = options.plan;
  const size_t d = plan.layout.NumParams();
  const RuleRunner rule(step_.get(), metrics_);
  tally::MutexLock lock(&mu_);
  if (schedule != nullptr) {
    driver_ = std::make_unique<ScheduleDriver>(ScheduleDriver::Options{
        std::move(schedule), std::move(options.schedule_state), plan.max_staleness,
        plan.rounds.total_rounds, options.initial_version, options.initial_round, metrics_});
    sink_ = std::make_unique<BufferedSink>(
        BufferedSink::Options{d, plan.uploads.max_abs_value, plan.robust, pool_}, rule);
  } else {
    RoundsDriver::Options rounds{plan.rounds, plan.relay, options.initial_version,
                                 options.initial_round, metrics_};
    if (workflow_ != nullptr && workflow_->selects() && !plan.relay) {
      WorkflowRun* run = workflow_;
      rounds.select = [run](uint64_t round, const std::vector<std::string>& waiting) {
        return run->workflow().SelectForRound(round, waiting);
      };
      rounds.sample = run->samples();
      rounds.min_available = run->min_available();
      rounds.size_is_selection = run->poisson();
    }
    driver_ = std::make_unique<RoundsDriver>(std::move(rounds));
    if (plan.robust) {
      sink_ = std::make_unique<RowSink>(
          RowSink::Options{d, plan.rounds.selected_per_round, plan.uploads.max_abs_value,
                           plan.rounds.trusted_client, pool_},
          rule);
    } else {
      sink_ = std::make_unique<MeanSink>(MeanSink::Options{
          d, plan.uploads.max_abs_value, plan.uploads.undo_memory_bytes, plan.uploads.spool_dir,
          plan.admission.max_concurrent_uploads, clock_, pool_});
    }
  }
  if (privacy_ != nullptr) MakePrivateParts(options, rule);
  if (plan.relay) {
    publisher_ = std::make_unique<UpstreamPublisher>(&store_, plan.persist.final_model_path);
    return;
  }
  LocalPublisher::Options local;
  local.store = &store_;
  local.step = step_.get();
  local.clock = clock_;
  local.metrics = metrics_;
  local.persist = plan.persist;
  local.total_rounds = plan.rounds.total_rounds;
  local.initial_version = options.initial_version;
  local.restored = options.restored;
  local.gather = [this](CheckpointContents* contents) {
    tally::MutexLock lock(&mu_);
    contents->applied = ledger_.AppliedIds();
    contents->schedule = driver_->SaveState();
    if (privacy_ != nullptr) contents->privacy = privacy_->Save();
  };
  if (privacy_ != nullptr) {
    local.finish_reason = [privacy = privacy_] {
      return privacy->CanChargeStep()
                 ? std::string()
                 : absl::StrCat("privacy budget spent:", privacy->LogText());
    };
  }
  publisher_ = std::make_unique<LocalPublisher>(std::move(local));
}

void Coordinator::MakePrivateParts(Options& options, const RuleRunner& rule) {
  // Central DP (docs/privacy.md): the mean's sink becomes the clipping,
  // noising one, and the ledger wraps the driver. Validation allowed only
  // the mean with sync or fedbuff (ValidatePrivacyConfig).
  const ServerPlan& plan = options.plan;
  sink_ = std::make_unique<PrivateSink>(
      PrivateSink::Options{plan.layout.NumParams(), plan.uploads.max_abs_value,
                           plan.schedule.has_value(), pool_, privacy_},
      rule);
  driver_ = std::make_unique<PrivacyDriver>(std::move(driver_), privacy_, metrics_,
                                            plan.schedule.has_value());
}

}  // namespace tally::server
