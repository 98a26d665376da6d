#include "client/connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace tally {
namespace client_internal {
namespace {

using Kind = ProbeResult::Kind;

// A probe may take this long (one connection and a handshake on a network).
constexpr absl::Duration kProbeTimeout = absl::Seconds(3);

std::string InParentheses(const std::string& detail) {
  return detail.empty() ? "" : absl::StrCat(" (", detail, ")");
}

}  // namespace

ConnectionWaiter::ConnectionWaiter(std::shared_ptr<grpc::Channel> channel, std::string target,
                                   absl::Duration connect_timeout, ProbeCredentials credentials)
    : channel_(std::move(channel)),
      target_(std::move(target)),
      connect_timeout_(connect_timeout),
      credentials_(std::move(credentials)) {}

bool ConnectionWaiter::IsConnectionFailure(const absl::Status& status) const {
  return (status.code() == absl::StatusCode::kUnavailable ||
          status.code() == absl::StatusCode::kDeadlineExceeded) &&
         channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY;
}

absl::Status ConnectionWaiter::Await(absl::string_view rpc, const absl::Status& failure,
                                     absl::Time deadline) const {
  for (;;) {
    const ProbeResult probe =
        ProbeServer(target_, credentials_, std::min(deadline, absl::Now() + kProbeTimeout));
    if (absl::Status wrong = Diagnose(rpc, probe); !wrong.ok()) return wrong;
    const absl::Time until = std::min(deadline, absl::Now() + kConnectRetryInterval);
    if (channel_->WaitForConnected(absl::ToChronoTime(until))) return absl::OkStatus();
    if (absl::Now() >= deadline) return NoConnection(rpc, failure, probe);
  }
}

absl::Status ConnectionWaiter::Diagnose(absl::string_view rpc, const ProbeResult& probe) const {
  const std::string server = absl::StrCat(rpc, ": the server at ", target_);
  const std::string& name = credentials_.server_name;
  switch (probe.kind) {
    case Kind::kTlsServer:
      if (credentials_.tls) return absl::OkStatus();
      return absl::UnavailableError(absl::StrCat(
          server,
          " speaks TLS and this client plaintext: set ClientOptions.tls_ca_file to the "
          "PEM certificate of the CA that signed the server's certificate"));
    case Kind::kPlaintextServer:
      if (!credentials_.tls) return absl::OkStatus();
      return absl::UnavailableError(absl::StrCat(
          server, " does not speak TLS", InParentheses(probe.detail),
          " and this client does (ClientOptions.tls_ca_file is set): the server is plaintext "
          "(no tls block in its config); leave tls_ca_file empty, or turn on TLS in the "
          "server's config"));
    case Kind::kServerCertificateRefused:
      return absl::UnavailableError(
          absl::StrCat(rpc, ": this client refused the certificate of the server at ", target_,
                       ": ", probe.detail,
                       ". ClientOptions.tls_ca_file must hold the CA that signed it, and it "
                       "must name ",
                       name.empty() ? "the target's host" : absl::StrCat("'", name, "'"),
                       " (ClientOptions.tls_server_name sets the name checked)"));
    case Kind::kClientCertificateRefused:
      if (credentials_.cert_chain_pem.empty()) {
        return absl::UnavailableError(
            absl::StrCat(server, " requires a client certificate", InParentheses(probe.detail),
                         ": set ClientOptions.tls_cert_file and tls_key_file (mutual TLS)"));
      }
      return absl::UnavailableError(
          absl::StrCat(server, " refused this client's certificate", InParentheses(probe.detail),
                       ": ClientOptions.tls_cert_file must be signed by the CA of the server's "
                       "tls.client_ca_file and valid now"));
    default:
      return absl::OkStatus();
  }
}

absl::Status ConnectionWaiter::NoConnection(absl::string_view rpc, const absl::Status& failure,
                                            const ProbeResult& probe) const {
  std::string seen;
  if (probe.kind == Kind::kUnreachable) {
    seen = absl::StrCat("nothing accepts connections there", InParentheses(probe.detail),
                        ": is tally-server running, and is the target right? ");
  } else if (probe.kind == Kind::kClosed) {
    seen =
        absl::StrCat("it accepts connections and closes them", InParentheses(probe.detail), "; ");
  }
  absl::string_view last = failure.message();
  absl::ConsumePrefix(&last, absl::StrCat(rpc, ": "));
  return absl::UnavailableError(absl::StrCat(
      rpc, ": no connection to ", target_, " (waited up to ClientOptions.connect_timeout = ",
      absl::FormatDuration(connect_timeout_), "): ", seen, "last error: ", last));
}

absl::Time OutageClock::Failed(absl::Time now) {
  const bool new_outage = started_ == absl::InfiniteFuture() ||
                          (connected_at_ > started_ && now - connected_at_ >= timeout_);
  if (new_outage) started_ = now;
  return started_ + timeout_;
}

}  // namespace client_internal
}  // namespace tally
