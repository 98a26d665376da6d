// Upstream: what a relay's server (config.relay) drives to follow its
// upstream server. The implementation, RelayLink (server/relay.h, library
// tally_relay), is a client of the upstream through the C++ SDK; this
// interface keeps the SDK out of the server library: a program that runs
// relays (tally-server, the tests) hands Server::Create a connector
// (ServerOptions::connect_upstream).
#ifndef TALLY_SERVER_UPSTREAM_H_
#define TALLY_SERVER_UPSTREAM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model_layout.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

class Coordinator;
class ServerMetrics;

// A model of the upstream, under its version and round numbers.
struct UpstreamModel {
  uint64_t version = 0;
  uint64_t round = 0;
  std::vector<float> params;
};

// Thread safety: Start and Stop from the server's thread; the rest before
// Start.
class Upstream {
 public:
  virtual ~Upstream() = default;

  // The upstream's layout and the model it had when connected (taken once).
  virtual const ModelLayout& layout() const = 0;
  virtual UpstreamModel TakeInitialModel() = 0;

  // Starts following the upstream with `coordinator` (built in relay mode on
  // TakeInitialModel()'s version). Both must outlive Stop().
  virtual void Start(Coordinator* coordinator, ServerMetrics* metrics) = 0;
  // Stops (after Coordinator::BeginDrain, so that a wait for a batch
  // returns). Idempotent.
  virtual void Stop() = 0;
};

// Connects to the upstream config.relay names.
using UpstreamConnector =
    std::function<absl::StatusOr<std::unique_ptr<Upstream>>(const tally::v1::RelayConfig&)>;

}  // namespace tally::server

#endif  // TALLY_SERVER_UPSTREAM_H_
