#include "server/server.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "prometheus/registry.h"
#include "server/checkpoint.h"
#include "server/config.h"
#include "server/coordinator.h"
#include "server/plan.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_init.h"
#include "server/upstream.h"
#include "server/service.h"
#include "server/workflow_run.h"

namespace tally::server {
namespace {

class ServerImpl final : public Server {
 public:
  ServerImpl(tally::v1::ServerConfig config, std::shared_ptr<prometheus::Registry> registry,
             bool start_fresh_if_corrupt)
      : config_(std::move(config)),
        registry_(std::move(registry)),
        metrics_(*registry_),
        start_fresh_if_corrupt_(start_fresh_if_corrupt) {}

  ~ServerImpl() override { Shutdown(absl::Seconds(1)); }

  absl::Status Start(ServerPlan plan, Clock* clock, std::unique_ptr<Upstream> relay) {
    relay_ = std::move(relay);
    DownloadCodecs downloads = plan.downloads;
    const std::string strategy_label = plan.strategy_label;
    // Before the coordinator: an unwritable history.path refuses the start.
    TALLY_ASSIGN_OR_RETURN(workflow_, WorkflowRun::Create(config_, clock, *registry_));
    TALLY_RETURN_IF_ERROR(StartCoordinator(std::move(plan), clock));
    TALLY_ASSIGN_OR_RETURN(auth_, Authenticator::Create(config_));
    TALLY_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           ServerCredentialsFromConfig(config_.tls()));
    if (!auth_->enabled()) {
      LogWarning(config_.tls().cert_file().empty()
                     ? "no TLS and no client authentication: any caller can act as any "
                       "client; run on a trusted network or configure tls and auth"
                     : "TLS without client authentication: any caller can act as any client "
                       "(set tls.client_ca_file or auth.tokens_file)");
    }
    aggregator_ = std::make_unique<AggregatorService>(coordinator_.get(), &metrics_, &config_,
                                                      std::move(downloads), auth_.get(), clock);
    admin_ = std::make_unique<AdminService>(coordinator_.get(), &metrics_, strategy_label,
                                            auth_.get(), absl::Now(), restored_);

    server_ = BuildGrpcServer(credentials);
    if (server_ == nullptr || port_ == 0) {
      coordinator_->Stop();
      return absl::UnavailableError(
          absl::StrCat("listen_address: cannot listen on '", config_.listen_address(),
                       "' (is another process using the port? see the gRPC error above)"));
    }
    server_->GetHealthCheckService()->SetServingStatus(true);
    if (relay_ != nullptr) relay_->Start(coordinator_.get(), &metrics_);
    LogListening();
    return absl::OkStatus();
  }

  // The Coordinator on the plan, from the relay's model, a checkpoint or
  // model.init.
  absl::Status StartCoordinator(ServerPlan plan, Clock* clock) {
    Coordinator::Options options;
    options.clock = clock;
    options.metrics = &metrics_;
    options.workflow = workflow_.get();
    if (relay_ != nullptr) {
      // The upstream's model, under its version number.
      UpstreamModel model = relay_->TakeInitialModel();
      options.initial_version = model.version;
      options.initial_round = model.round;
      options.initial_params = std::move(model.params);
    }
    const ModelLayout& layout = plan.layout;
    if (!config_.checkpoint_dir().empty()) TALLY_RETURN_IF_ERROR(Restore(layout, &options));
    metrics_.checkpoint_restored_version.Set(static_cast<double>(restored_.version));
    metrics_.checkpoint_restored_clients.Set(static_cast<double>(restored_.clients));
    if (options.initial_params.empty()) {
      TALLY_ASSIGN_OR_RETURN(options.initial_params,
                             InitialParams(layout, config_.model().init()));
    } else if (!config_.model().init().file().empty() && relay_ == nullptr) {
      LogInfo(absl::StrCat("model.init.file ", config_.model().init().file(),
                           " not read: the checkpoint's model wins"));
    }
    options.plan = std::move(plan);
    TALLY_ASSIGN_OR_RETURN(coordinator_, Coordinator::Create(std::move(options)));
    return absl::OkStatus();
  }

  std::unique_ptr<grpc::Server> BuildGrpcServer(
      const std::shared_ptr<grpc::ServerCredentials>& credentials) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config_.listen_address(), credentials, &port_);
    // gRPC sets SO_REUSEPORT by default: a second server on a busy port
    // would then bind too and the kernel would split the clients between
    // the two federations. Without it, binding a busy port fails.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, config_.grpc().bdp_probe() ? 1 : 0);
    if (config_.grpc().memory_bytes() > 0) {
      grpc_quota_ = std::make_unique<grpc::ResourceQuota>("tally-server");
      grpc_quota_->Resize(static_cast<size_t>(config_.grpc().memory_bytes()));
      builder.SetResourceQuota(*grpc_quota_);
    }
    builder.SetMaxReceiveMessageSize(
        static_cast<int>(config_.limits().max_receive_message_bytes()));
    // Keepalive on (gRPC's 2 h server default period) turns on the sockets'
    // TCP_USER_TIMEOUT, here limits.download_stall_timeout_ms: a connection
    // whose client takes no bytes for that long is closed, releasing what is
    // queued on it (a cut stream's last writes still pin their model).
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 2 * 3600 * 1000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               static_cast<int>(config_.limits().download_stall_timeout_ms()));
    builder.RegisterService(aggregator_.get());
    builder.RegisterService(admin_.get());
    return builder.BuildAndStart();
  }

  void LogListening() const {
    const std::string schedule =
        IsAsyncSchedule(config_.schedule())
            ? absl::StrCat("schedule ", config_.schedule().name())
            : absl::StrCat(config_.rounds().clients_per_round(), " clients per round");
    std::string security = config_.tls().cert_file().empty() ? "plaintext" : "TLS";
    if (!config_.tls().client_ca_file().empty())
      absl::StrAppend(&security, ", client certificates");
    if (!config_.auth().tokens_file().empty()) absl::StrAppend(&security, ", bearer tokens");
    LogInfo(absl::StrCat("tally-server ", relay_ != nullptr ? "(relay) " : "", "listening on ",
                         config_.listen_address(), " (port ", port_, ", ", security, "), model ",
                         coordinator_->store().layout().NumParams(), " parameters, ", schedule,
                         relay_ != nullptr ? absl::StrCat(", upstream ", config_.relay().upstream())
                                           : absl::StrCat(", rule ", config_.strategy().rule())));
  }

  // Resumes from the newest valid checkpoint into `options`. Corrupt files
  // and no valid one refuse the start, unless start_fresh_if_corrupt_.
  absl::Status Restore(const ModelLayout& layout, Coordinator::Options* options) {
    const std::string& dir = config_.checkpoint_dir();
    TALLY_ASSIGN_OR_RETURN(RestoredCheckpoint restored, RestoreCheckpoint(dir, layout));
    for (const SkippedCheckpoint& skipped : restored.skipped) {
      LogError(absl::StrCat("skipping a corrupt checkpoint: ", skipped.why));
    }
    if (!restored.checkpoint.has_value()) {
      if (restored.skipped.empty()) return absl::OkStatus();  // A first start.
      if (!start_fresh_if_corrupt_) return NoValidCheckpointError(dir, restored);
      TALLY_RETURN_IF_ERROR(SetAsideCorruptCheckpoints(restored));
      LogWarning(absl::StrCat("no valid checkpoint in ", dir,
                              "; starting from the initial model (--start_fresh_if_corrupt), "
                              "the corrupt files renamed *.corrupt"));
      return absl::OkStatus();
    }
    restored_ = ReportOf(restored);
    LoadedCheckpoint& ckpt = *restored.checkpoint;
    LogInfo(absl::StrCat("resumed from checkpoint ", restored.path, ": model version ",
                         ckpt.version, ", ", ckpt.round, " rounds completed, records of ",
                         restored_.clients, " client(s)"));
    options->initial_version = ckpt.version;
    options->initial_round = ckpt.round;
    options->restored = true;
    options->initial_params = std::move(ckpt.params);
    options->optimizer_state = std::move(ckpt.optimizer);
    options->applied_ids = std::move(ckpt.applied);
    options->schedule_state = std::move(ckpt.schedule);
    options->privacy_state = std::move(ckpt.privacy);
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  const tally::v1::ServerConfig& config() const override { return config_; }
  const ModelStore& model_store() const override { return coordinator_->store(); }
  bool RunFinished() const override { return coordinator_->RunFinished(); }

  void Shutdown(absl::Duration grace) override {
    {
      tally::MutexLock lock(&mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    // Drain: NOT_SERVING for load balancers; new uploads refused and
    // long-polls answered (so they do not hold the drain); uploads already
    // running may finish within `grace`, later ones are cancelled (and undone).
    if (server_ != nullptr) {
      server_->GetHealthCheckService()->SetServingStatus(false);
    }
    if (coordinator_ != nullptr) coordinator_->BeginDrain();
    // A relay's batch in the making is not forwarded (it is lost, as the
    // clients' retries through another relay expect).
    if (relay_ != nullptr) relay_->Stop();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(absl::ToInt64Milliseconds(grace)));
      server_->Wait();
      LogDebug("shutdown: gRPC server drained");
    }
    // Every upload is committed or aborted now: apply and checkpoint.
    if (coordinator_ != nullptr) coordinator_->Stop();
    LogDebug("shutdown: coordinator stopped");
    done_.Notify();
  }

  void Wait() override { done_.WaitForNotification(); }

 private:
  const tally::v1::ServerConfig config_;
  std::shared_ptr<prometheus::Registry> registry_;
  ServerMetrics metrics_;
  const bool start_fresh_if_corrupt_;
  std::unique_ptr<WorkflowRun> workflow_;  // Outlives the coordinator.
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<Upstream> relay_;  // Relay mode.
  RestoreReport restored_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<AggregatorService> aggregator_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<grpc::ResourceQuota> grpc_quota_;  // grpc.memory_bytes.
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  tally::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  tally::Notification done_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  tally::v1::ServerConfig config = std::move(options.config);
  std::unique_ptr<Upstream> relay;
  if (!config.relay().upstream().empty()) {
    // Check what can be checked before reaching out, then take the
    // upstream's layout as the model.
    tally::v1::ServerConfig check = config;
    ApplyDefaults(&check);
    TALLY_RETURN_IF_ERROR(ValidateConfig(check));
    if (!options.connect_upstream) {
      return absl::UnimplementedError(
          "relay.upstream: this program has no relay mode (ServerOptions::connect_upstream, "
          "server/relay.h)");
    }
    TALLY_ASSIGN_OR_RETURN(relay, options.connect_upstream(config.relay()));
    tally::v1::ModelConfig* model = config.mutable_model();
    model->clear_tensors();
    for (const TensorLayout& t : relay->layout().tensors()) {
      tally::v1::TensorConfig* tensor = model->add_tensors();
      tensor->set_name(t.name);
      for (int64_t d : t.shape) tensor->add_shape(d);
    }
    // ApplyDefaults leaves a relay's model-derived limits to this point.
    if (config.limits().max_update_bytes() == 0) {
      config.mutable_limits()->set_max_update_bytes(
          DefaultMaxUpdateBytes(config, relay->layout().NumParams()));
    }
  }
  ApplyDefaults(&config);
  if (config.spool_dir().empty()) {
    const char* tmp = std::getenv("TMPDIR");
    config.set_spool_dir(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
  }
  TALLY_ASSIGN_OR_RETURN(ServerPlan plan, MakePlan(config));
  std::shared_ptr<prometheus::Registry> registry = options.registry;
  if (registry == nullptr) registry = std::make_shared<prometheus::Registry>();
  auto server = std::make_unique<ServerImpl>(std::move(config), std::move(registry),
                                             options.start_fresh_if_corrupt);
  TALLY_RETURN_IF_ERROR(server->Start(std::move(plan), options.clock, std::move(relay)));
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace tally::server
