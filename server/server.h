// tally::server::Server: the tally gRPC server (Aggregator + Admin services,
// grpc.health.v1, server reflection) around one synchronous FedAvg
// coordinator.
//
// Usage:
//   TALLY_ASSIGN_OR_RETURN(auto server, Server::Create(options));
//   ... server->port() ...
//   server->Shutdown(absl::Seconds(5));
//
// Create() validates the whole config before binding anything. The server
// owns its gRPC server, coordinator and threads; the prometheus Registry is
// shared with the caller (who owns the Exposer). Thread-safe.
#ifndef TALLY_SERVER_SERVER_H_
#define TALLY_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/model_store.h"
#include "server/upstream.h"
#include "tally/v1/config.pb.h"

namespace prometheus {
class Registry;
}

namespace tally::server {

struct ServerOptions {
  // Complete or partial config; missing fields take their defaults.
  tally::v1::ServerConfig config;
  // Metrics are registered here. Null = a private registry (not exported).
  std::shared_ptr<prometheus::Registry> registry;
  Clock* clock = RealClock::Get();  // Not owned.
  // When checkpoint_dir holds checkpoint files but none is valid: false (the
  // default) refuses to start (DATA_LOSS, naming the files); true renames
  // them *.corrupt and starts from the initial model. An operator's one-off
  // decision (tally-server --start_fresh_if_corrupt), deliberately not a
  // ServerConfig field that could stay set. A valid checkpoint is always
  // resumed.
  bool start_fresh_if_corrupt = false;
  // Relay mode (config.relay.upstream set): how to reach the upstream.
  // Programs that run relays set RelayLink::Connect (server/relay.h, library
  // tally_relay, which links the C++ SDK); without a connector a relay
  // config fails with UNIMPLEMENTED.
  UpstreamConnector connect_upstream;
};

struct ServerStats;  // See server/coordinator.h.

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  virtual ~Server() = default;

  // The bound gRPC port (useful with listen_address "127.0.0.1:0").
  virtual int port() const = 0;
  // The effective config, defaults applied.
  virtual const tally::v1::ServerConfig& config() const = 0;
  // The versioned global model (read-only use from outside).
  virtual const ModelStore& model_store() const = 0;

  // Stops accepting calls, cancels what is still running after `grace`, and
  // joins every thread. Idempotent.
  virtual void Shutdown(absl::Duration grace) = 0;
  // Blocks until Shutdown() has completed.
  virtual void Wait() = 0;
  // True once rounds.total_rounds was reached and the final checkpoint and
  // model (final_model_path) are written (tally-server --exit_when_done).
  virtual bool RunFinished() const = 0;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_SERVER_H_
