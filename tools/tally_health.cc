// tally-health: a gRPC health probe (grpc.health.v1.Health/Check) for
// container HEALTHCHECKs, Kubernetes exec probes and scripts.
//
//   tally-health [--address=HOST:PORT] [--service=NAME] [--timeout=2s]
//                [--tls] [--tls_ca_file=ca.pem] [--tls_server_name=NAME]
//                [--tls_cert_file=client.pem --tls_key_file=client.key]
//
// Prints one line and exits with grpc_health_probe's codes:
//   0 SERVING; 1 usage error or unreadable file; 2 no connection (refused,
//   TLS handshake failed, or the deadline passed before one was made);
//   3 the RPC failed (unknown service, no health service, deadline); 4 the
//   server answered but is not SERVING (e.g. draining after SIGTERM).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/cli.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/support/log.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "The server's gRPC address HOST:PORT.");
ABSL_FLAG(std::string, service, "",
          "Service to check; empty = the server as a whole (what tally-server reports).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2),
          "Deadline of the whole check, connecting included (e.g. 500ms, 2s).");
ABSL_FLAG(bool, tls, false,
          "Connect with TLS, verifying the server against the system's roots unless "
          "--tls_ca_file is given. Implied by any --tls_* flag.");
ABSL_FLAG(std::string, tls_ca_file, "", "PEM CA certificates to verify the server with.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to verify the server's certificate against instead of HOST (e.g. the "
          "Kubernetes Service name when probing 127.0.0.1).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate, for servers that require one (tls.require_client_cert).");
ABSL_FLAG(std::string, tls_key_file, "", "PEM key of --tls_cert_file.");

namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr int kServing = 0;
constexpr int kUsage = 1;
constexpr int kNoConnection = 2;
constexpr int kRpcFailed = 3;
constexpr int kNotServing = 4;

bool HelpFlagsFromMain(absl::string_view filename) {
  return absl::StrContains(filename, "tally_health.cc");
}

// The file's contents, or false with a message on stderr.
bool ReadFile(const char* flag, const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "tally-health: --%s: cannot read '%s'\n", flag, path.c_str());
    return false;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

// Channel credentials from the --tls* flags; null after a usage error.
std::shared_ptr<grpc::ChannelCredentials> Credentials() {
  const std::string ca = absl::GetFlag(FLAGS_tls_ca_file);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert_file);
  const std::string key = absl::GetFlag(FLAGS_tls_key_file);
  const bool tls = absl::GetFlag(FLAGS_tls) || !ca.empty() || !cert.empty() || !key.empty() ||
                   !absl::GetFlag(FLAGS_tls_server_name).empty();
  if (!tls) return grpc::InsecureChannelCredentials();
  if (cert.empty() != key.empty()) {
    std::fprintf(stderr, "tally-health: --tls_cert_file and --tls_key_file go together\n");
    return nullptr;
  }
  grpc::SslCredentialsOptions ssl;
  if (!ca.empty() && !ReadFile("tls_ca_file", ca, &ssl.pem_root_certs)) return nullptr;
  if (!cert.empty() && (!ReadFile("tls_cert_file", cert, &ssl.pem_cert_chain) ||
                        !ReadFile("tls_key_file", key, &ssl.pem_private_key))) {
    return nullptr;
  }
  return grpc::SslCredentials(ssl);
}

const char* StatusName(HealthCheckResponse::ServingStatus status) {
  switch (status) {
    case HealthCheckResponse::SERVING:
      return "SERVING";
    case HealthCheckResponse::NOT_SERVING:
      return "NOT_SERVING";
    case HealthCheckResponse::SERVICE_UNKNOWN:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!tally::ParseFlags(
          argc, argv, "tally-health",
          "gRPC health probe: exits 0 if HOST:PORT answers SERVING to "
          "grpc.health.v1.Health/Check.\n"
          "Usage: tally-health [--address=HOST:PORT] [--service=NAME] [--timeout=2s] [--tls ...]",
          HelpFlagsFromMain)) {
    return kUsage;
  }
  // gRPC core would log a failed handshake itself; the probe's one line says it.
  gpr_set_log_function([](gpr_log_func_args*) {});
  const std::string address = absl::GetFlag(FLAGS_address);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (address.empty() || timeout <= absl::ZeroDuration()) {
    std::fprintf(stderr, "tally-health: --address must be set and --timeout positive\n");
    return kUsage;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = Credentials();
  if (credentials == nullptr) return kUsage;
  grpc::ChannelArguments args;
  if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
    args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(address, credentials, args);

  const std::string target =
      absl::GetFlag(FLAGS_service).empty()
          ? address
          : absl::StrCat(address, " service '", absl::GetFlag(FLAGS_service), "'");
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  HealthCheckResponse response;
  const grpc::Status status =
      grpc::health::v1::Health::NewStub(channel)->Check(&context, request, &response);
  if (!status.ok()) {
    // Without wait-for-ready a failed connection attempt ends the call with
    // UNAVAILABLE; a deadline before the channel got ready is one too.
    const bool connected = channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
    const bool no_connection =
        status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !connected);
    std::fprintf(stderr, "tally-health: %s: %s (code %d): %s\n", target.c_str(),
                 no_connection ? "cannot connect" : "health check failed",
                 static_cast<int>(status.error_code()), status.error_message().c_str());
    return no_connection ? kNoConnection : kRpcFailed;
  }
  if (response.status() != HealthCheckResponse::SERVING) {
    std::fprintf(stderr, "tally-health: %s: %s\n", target.c_str(), StatusName(response.status()));
    return kNotServing;
  }
  std::printf("tally-health: %s: SERVING\n", target.c_str());
  return kServing;
}
