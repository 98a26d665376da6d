// Transport security and caller identity for tally-server.
//
// ServerCredentialsFromConfig turns `tls` into gRPC credentials (insecure
// when no certificate is configured). An Authenticator then names the caller
// of every call:
//   - mutual TLS: the verified client certificate's subject CN and SANs
//     (gRPC's x509_common_name / x509_subject_alternative_name properties);
//   - bearer token: "authorization: Bearer <token>" metadata, looked up by
//     its SHA-256 in auth.tokens_file (tokens are never stored in clear).
// With neither configured, authentication is off and every call is allowed
// (the server logs a warning at start).
//
// Thread-safe (immutable after Create).
#ifndef TALLY_SERVER_AUTH_H_
#define TALLY_SERVER_AUTH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"
#include "tally/v1/config.pb.h"

namespace tally::server {

// Checks the files `tls` and `auth` name (readable, parseable) and their
// combinations; INVALID_ARGUMENT naming the field.
absl::Status ValidateSecurityConfig(const tally::v1::ServerConfig& config);

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromConfig(
    const tally::v1::TlsConfig& tls);

// Lowercase hex SHA-256 of `token`, the form tokens_file stores.
std::string HashToken(absl::string_view token);

class Authenticator {
 public:
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(
      const tally::v1::ServerConfig& config);

  bool enabled() const { return enabled_; }

  // The caller's identities (empty when authentication is off).
  // UNAUTHENTICATED if it is on and the call has none, or a token is unknown.
  absl::StatusOr<std::vector<std::string>> Identify(const grpc::ServerContextBase& context) const;

  // OK if authentication is off or `client_id` is one of the caller's
  // identities, or starts with p for an identity "p*" (one certificate or
  // token for many clients, e.g. "relay-*" for relays whose ids are made per
  // pod); else UNAUTHENTICATED / PERMISSION_DENIED.
  absl::Status CheckClient(const grpc::ServerContextBase& context,
                           absl::string_view client_id) const;
  // The same for identities Identify() already returned (a call that had to
  // refuse an anonymous caller before reading the client id).
  absl::Status CheckClient(absl::Span<const std::string> identities,
                           absl::string_view client_id) const;
  // The identity that lets the caller act as `client_id` (the first of its
  // identities CheckClient accepts: equal, or a matching "p*"); "" if
  // authentication is off. Errors as CheckClient.
  absl::StatusOr<std::string> ClientIdentity(const grpc::ServerContextBase& context,
                                             absl::string_view client_id) const;
  // OK if authentication is off or the caller is an admin identity.
  absl::Status CheckAdmin(const grpc::ServerContextBase& context) const;

 private:
  Authenticator() = default;
  // The first of `identities` that may act as `client_id`, else
  // PERMISSION_DENIED.
  static absl::StatusOr<std::string> MatchIdentity(absl::Span<const std::string> identities,
                                                   absl::string_view client_id);

  bool enabled_ = false;
  bool certificates_ = false;
  absl::flat_hash_map<std::string, std::string> token_identity_;  // sha256 hex -> identity
  std::vector<std::string> admins_;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_AUTH_H_
