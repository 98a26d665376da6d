// Relay mode (config.relay): a tally-server that terminates clients and is
// itself one client of an upstream server (through the C++ SDK). Library
// tally_relay, linked by tally-server and the tests only: the server library
// knows the relay as an Upstream (server/upstream.h) and never links the SDK.
//
// RelayLink joins the upstream, mirrors its model (each version pulled once,
// published in the relay's store under the upstream's version number), and
// runs one thread that, per upstream TRAIN task for round R:
//   1. makes sure the relay serves the task's model version,
//   2. opens round R in the relay's coordinator (its clients get tasks),
//   3. waits for that round to close and pushes its batch upstream: the
//      weighted mean of the clients' updates with num_samples = their total,
//      so the upstream's weighted mean over relays equals the mean over all
//      clients (a robust upstream rule sees one bucket mean per relay).
// A batch whose push fails for good (the upstream closed the round, or is
// gone) is lost: the relay keeps nothing a restart cannot rebuild.
#ifndef TALLY_SERVER_RELAY_H_
#define TALLY_SERVER_RELAY_H_

#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_layout.h"
#include "core/sync.h"
#include "server/coordinator.h"
#include "server/metrics.h"
#include "server/upstream.h"
#include "tally/client.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

class RelayLink : public Upstream {
 public:
  // Joins the upstream and pulls its current model. UNAVAILABLE (with the
  // SDK's retries spent) if it cannot be reached. An UpstreamConnector
  // (ServerOptions::connect_upstream).
  static absl::StatusOr<std::unique_ptr<Upstream>> Connect(const tally::v1::RelayConfig& config);
  ~RelayLink() override;  // Stop()s.

  // The upstream's layout and the model it had at Connect.
  const ModelLayout& layout() const override { return layout_; }
  UpstreamModel TakeInitialModel() override {
    return {initial_.version, initial_.round, std::move(initial_.params)};
  }

  // Starts the thread driving `coordinator` (Options.relay, built on
  // TakeInitialModel()'s version). Both must outlive Stop().
  void Start(Coordinator* coordinator, ServerMetrics* metrics) override;
  // Ends the thread (call after Coordinator::BeginDrain, so that a thread
  // waiting for a batch returns). Idempotent.
  void Stop() override;

 private:
  RelayLink(std::unique_ptr<Client> client, ModelLayout layout, Model initial)
      : client_(std::move(client)), layout_(std::move(layout)), initial_(std::move(initial)) {}
  void Run();
  // Makes the coordinator serve upstream `version`; false if the upstream
  // has already moved past it.
  bool Serve(uint64_t version);
  // Pulls the upstream's current model and serves it if newer.
  void Sync();
  // Sync() if the upstream has a version newer than the one served.
  void SyncIfNewer();
  bool stopping();

  const std::unique_ptr<Client> client_;
  const ModelLayout layout_;
  Model initial_;
  Coordinator* coordinator_ = nullptr;
  ServerMetrics* metrics_ = nullptr;
  std::thread thread_;
  tally::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_RELAY_H_
