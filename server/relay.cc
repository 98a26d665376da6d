#include "server/relay.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/client_sampler.h"
#include "core/status_macros.h"
#include "server/log.h"

namespace tally::server {
namespace {

std::string DefaultRelayId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "relay";
  std::string id = absl::StrCat("relay-", host);
  // Client ids are [A-Za-z0-9._:@-]{1,128}.
  for (char& c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        std::string("._:@-").find(c) == std::string::npos) {
      c = '-';
    }
  }
  return id.substr(0, 128);
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("relay.auth_token_file: cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Upstream>> RelayLink::Connect(
    const tally::v1::RelayConfig& config) {
  ClientOptions options;
  options.target = config.upstream();
  options.client_id = config.id().empty() ? DefaultRelayId() : config.id();
  // A relay holds no data: the upstream never asks it to evaluate
  // (server/workflow.h).
  options.attributes[std::string(kRoleAttribute)] = std::string(kRelayRole);
  options.tls_ca_file = config.tls_ca_file();
  options.tls_server_name = config.tls_server_name();
  options.tls_cert_file = config.tls_cert_file();
  options.tls_key_file = config.tls_key_file();
  if (!config.auth_token_file().empty()) {
    TALLY_ASSIGN_OR_RETURN(options.auth_token, ReadToken(config.auth_token_file()));
  }
  // The exact model: the relay re-encodes it for its own clients.
  options.download_codecs = {"float32"};
  options.transfer_timeout = absl::Minutes(5);
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(options));
  TALLY_ASSIGN_OR_RETURN(JoinResult joined, client->Join());
  std::vector<ModelLayout::TensorDef> defs;
  for (const TensorInfo& t : joined.model.tensors) defs.push_back({t.name, t.shape});
  TALLY_ASSIGN_OR_RETURN(ModelLayout layout, ModelLayout::Create(defs));
  if (layout.Hash() != joined.model.layout_hash) {
    return absl::FailedPreconditionError(
        absl::StrCat("relay: the upstream's layout hash ", joined.model.layout_hash,
                     " is not that of the tensors it lists (", layout.Hash(), ")"));
  }
  TALLY_ASSIGN_OR_RETURN(Model model, client->PullModel());
  LogInfo(absl::StrCat("relay '", options.client_id, "' joined upstream ", config.upstream(),
                       ": model version ", model.version, ", ", layout.NumParams(), " parameters"));
  return std::unique_ptr<Upstream>(
      new RelayLink(std::move(client), std::move(layout), std::move(model)));
}

RelayLink::~RelayLink() { Stop(); }

void RelayLink::Start(Coordinator* coordinator, ServerMetrics* metrics) {
  coordinator_ = coordinator;
  metrics_ = metrics;
  thread_ = std::thread([this] { Run(); });
}

void RelayLink::Stop() {
  {
    tally::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool RelayLink::stopping() {
  tally::MutexLock lock(&mu_);
  return stopping_;
}

bool RelayLink::Serve(uint64_t version) {
  if (coordinator_->store().Current()->version < version) Sync();
  return coordinator_->store().Current()->version == version;
}

void RelayLink::Sync() {
  const uint64_t served = coordinator_->store().Current()->version;
  absl::StatusOr<Model> model = client_->PullModel();
  if (!model.ok()) {
    LogWarning(absl::StrCat("relay: cannot pull the upstream model: ", model.status().message()));
    return;
  }
  if (model->version > served) {
    coordinator_->PublishUpstream(model->version, model->round, std::move(model->params));
  }
}

void RelayLink::SyncIfNewer() {
  const uint64_t served = coordinator_->store().Current()->version;
  absl::StatusOr<uint64_t> newest = client_->WaitForVersion(served, absl::Milliseconds(50));
  if (newest.ok() && *newest > served) Sync();
}

void RelayLink::Run() {
  int failures = 0;
  while (!stopping()) {
    // Serve each new upstream version (the result of the last round, say)
    // even when no task follows.
    SyncIfNewer();
    absl::StatusOr<Task> task = client_->GetTask(absl::Seconds(2));
    if (!task.ok()) {
      // The SDK already retried; wait a little longer each time (at most 10 s).
      LogWarning(absl::StrCat("relay: upstream GetTask: ", task.status().message()));
      const absl::Time until =
          absl::Now() + absl::Seconds(std::min(10, 1 << std::min(failures++, 3)));
      while (!stopping() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(100));
      continue;
    }
    failures = 0;
    if (task->kind == Task::Kind::kDone) {
      LogInfo("relay: the upstream federation is done");
      Sync();
      coordinator_->FinishRelay();
      return;
    }
    if (task->kind != Task::Kind::kTrain || !Serve(task->model_version)) continue;
    coordinator_->OpenRelayRound(task->round);
    std::optional<Coordinator::RelayBatch> batch = coordinator_->AwaitRelayBatch();
    if (!batch.has_value()) return;  // Draining.
    if (batch->mean.empty()) {
      LogInfo(absl::StrCat("relay: round ", batch->round, " has no batch to forward (",
                           batch->updates, " update(s))"));
      continue;
    }
    Update update;
    update.round = batch->round;
    update.base_version = batch->base_version;
    update.num_samples = batch->weight;
    update.delta = batch->mean;
    update.metrics["relay_updates"] = batch->updates;
    absl::StatusOr<PushResult> pushed = client_->PushUpdate(update);
    if (pushed.ok()) {
      metrics_->relay_batches_forwarded.Increment();
      LogInfo(absl::StrCat("relay: forwarded round ", batch->round, ": ", batch->updates,
                           " update(s), weight ", batch->weight));
    } else {
      metrics_->relay_batches_lost.Increment();
      LogWarning(absl::StrCat("relay: round ", batch->round, "'s batch of ", batch->updates,
                              " update(s) is lost: ", pushed.status().message()));
    }
  }
}

}  // namespace tally::server
