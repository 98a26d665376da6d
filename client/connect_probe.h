// A probe of why gRPC cannot connect: one TCP connection to the target and a
// TLS handshake over it with OpenSSL, told apart from gRPC's own messages
// ("Socket closed", "handshake failed") by what the server actually answered:
// nothing (not listening), no TLS (a plaintext server), TLS with a
// certificate the client refuses, or TLS and then a closed connection (the
// server refused the client's certificate). Internal to client/.
//
// Thread-safe (no shared state); blocks up to the deadline it is given.
#ifndef TALLY_CLIENT_CONNECT_PROBE_H_
#define TALLY_CLIENT_CONNECT_PROBE_H_

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tally {
namespace client_internal {

// How the client connects: plaintext (tls false), or TLS verifying the
// server against `ca_pem` for `server_name` (empty: the target's host), with
// an optional client certificate.
struct ProbeCredentials {
  bool tls = false;
  std::string ca_pem;
  std::string cert_chain_pem;
  std::string key_pem;
  std::string server_name;
};

struct ProbeResult {
  enum class Kind {
    kNotProbed,        // A target the probe cannot dial (unix:, several addresses), or no time.
    kUnreachable,      // No TCP connection: refused, unknown name, no route, timed out.
    kClosed,           // Accepted the connection and closed it without a byte.
    kPlaintextServer,  // Accepted the connection, answered without TLS.
    kTlsServer,        // Speaks TLS and took this client's handshake.
    kServerCertificateRefused,  // Speaks TLS; its certificate fails this client's checks.
    kClientCertificateRefused,  // Speaks TLS; refused the handshake or closed right after it.
  };
  Kind kind = Kind::kNotProbed;
  std::string detail;  // Why: strerror, OpenSSL's verify error, the alert.
};

// "host:port", "[v6]:port", "dns:///host:port", "ipv4:a.b.c.d:port" ->
// {host, port} (port "443" when absent, as gRPC); nullopt for other forms.
std::optional<std::pair<std::string, std::string>> ProbeHostPort(absl::string_view target);

// Connects to `target` and shakes hands as `credentials` say, until
// `deadline` at the latest.
ProbeResult ProbeServer(absl::string_view target, const ProbeCredentials& credentials,
                        absl::Time deadline);

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_CONNECT_PROBE_H_
