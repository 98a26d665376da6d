// What a call does when it cannot reach the server: waits for the channel to
// connect (a server that is not up yet, or restarting) for up to
// ClientOptions.connect_timeout, and fails at once, saying what to change,
// when a probe (client/connect_probe.h) shows the connection can never work:
// TLS on one side only, a server certificate this client refuses, a client
// certificate the server refuses. Internal to client/.
//
// Thread-safe: the channel is; the rest is immutable.
#ifndef TALLY_CLIENT_CONNECTION_H_
#define TALLY_CLIENT_CONNECTION_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/connect_probe.h"

namespace tally {
namespace client_internal {

// How often a waiting call probes the server again, and the most gRPC waits
// between two connection attempts (its channel argument).
inline constexpr absl::Duration kConnectRetryInterval = absl::Seconds(2);

class ConnectionWaiter {
 public:
  ConnectionWaiter(std::shared_ptr<grpc::Channel> channel, std::string target,
                   absl::Duration connect_timeout, ProbeCredentials credentials);

  // True when `status` (UNAVAILABLE or DEADLINE_EXCEEDED) came with the
  // channel not connected: the call did not reach the server.
  bool IsConnectionFailure(const absl::Status& status) const;

  // After such a failure of `rpc`: OK once the channel is connected. Else
  // UNAVAILABLE, at once when a probe shows what is wrong, or at `deadline`
  // with what the last probe saw and `failure`'s message.
  absl::Status Await(absl::string_view rpc, const absl::Status& failure, absl::Time deadline) const;

  absl::Duration connect_timeout() const { return connect_timeout_; }

 private:
  // UNAVAILABLE saying what to change when `probe` shows the connection
  // cannot work as configured; OK when waiting may help.
  absl::Status Diagnose(absl::string_view rpc, const ProbeResult& probe) const;
  absl::Status NoConnection(absl::string_view rpc, const absl::Status& failure,
                            const ProbeResult& probe) const;

  const std::shared_ptr<grpc::Channel> channel_;
  const std::string target_;
  const absl::Duration connect_timeout_;
  const ProbeCredentials credentials_;
};

// The connect deadline of one call: connect_timeout from the start of an
// outage. A connection that then stayed up for connect_timeout ends the
// outage (the next failure starts a new one); one that drops sooner does
// not, so a server that accepts and drops connections cannot hold a call
// forever.
class OutageClock {
 public:
  explicit OutageClock(absl::Duration connect_timeout) : timeout_(connect_timeout) {}

  // A connection failure at `now`: the deadline of its outage.
  absl::Time Failed(absl::Time now);
  void Connected(absl::Time now) { connected_at_ = now; }

 private:
  const absl::Duration timeout_;
  absl::Time started_ = absl::InfiniteFuture();  // No outage yet.
  absl::Time connected_at_ = absl::InfinitePast();
};

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_CONNECTION_H_
