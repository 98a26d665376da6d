#include "server/auth.h"

#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/security/auth_context.h"
#include "grpcpp/security/server_credentials.h"
#include "server/client_text.h"

namespace tally::server {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(field, ": cannot read '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// "<identity> <sha256 hex>" lines; '#' comments and blank lines ignored.
absl::StatusOr<absl::flat_hash_map<std::string, std::string>> ParseTokens(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile("auth.tokens_file", path);
  if (!text.ok()) return text.status();
  absl::flat_hash_map<std::string, std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<std::string> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.tokens_file: ", path, ":", line_number, ": ", why));
    };
    if (fields.size() != 2) return bad("want \"<identity> <sha256 hex of the token>\"");
    std::string digest = absl::AsciiStrToLower(fields[1]);
    if (digest.size() != 64 || !std::all_of(digest.begin(), digest.end(),
                                            [](char c) { return absl::ascii_isxdigit(c); })) {
      return bad("the second field must be 64 hex digits (sha256 of the token, not the token)");
    }
    if (!tokens.emplace(std::move(digest), fields[0]).second) return bad("duplicate token hash");
  }
  return tokens;
}

bool AuthEnabled(const tally::v1::ServerConfig& config) {
  return !config.tls().client_ca_file().empty() || !config.auth().tokens_file().empty();
}

}  // namespace

std::string HashToken(absl::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

absl::Status ValidateSecurityConfig(const tally::v1::ServerConfig& config) {
  const tally::v1::TlsConfig& tls = config.tls();
  const bool tls_on = !tls.cert_file().empty() || !tls.key_file().empty();
  if (tls_on && (tls.cert_file().empty() || tls.key_file().empty())) {
    return absl::InvalidArgumentError("tls: cert_file and key_file must be set together");
  }
  if (!tls_on && (!tls.client_ca_file().empty() || tls.require_client_cert())) {
    return absl::InvalidArgumentError(
        "tls.client_ca_file: client certificates need TLS (set tls.cert_file and tls.key_file)");
  }
  if (tls.require_client_cert() && tls.client_ca_file().empty()) {
    return absl::InvalidArgumentError("tls.require_client_cert: needs tls.client_ca_file");
  }
  if (!config.auth().tokens_file().empty() && !tls_on) {
    return absl::InvalidArgumentError(
        "auth.tokens_file: bearer tokens need TLS (set tls.cert_file and tls.key_file)");
  }
  if (tls_on) {
    for (const auto& [field, path] :
         {std::pair<const char*, std::string>{"tls.cert_file", tls.cert_file()},
          {"tls.key_file", tls.key_file()},
          {"tls.client_ca_file", tls.client_ca_file()}}) {
      if (path.empty()) continue;
      absl::StatusOr<std::string> pem = ReadFile(field, path);
      if (!pem.ok()) return pem.status();
      if (!absl::StrContains(*pem, "-----BEGIN ")) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": '", path, "' is not PEM"));
      }
    }
  }
  if (!config.auth().tokens_file().empty()) {
    if (auto tokens = ParseTokens(config.auth().tokens_file()); !tokens.ok()) {
      return tokens.status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromConfig(
    const tally::v1::TlsConfig& tls) {
  if (tls.cert_file().empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.client_ca_file().empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
      : tls.require_client_cert()  ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                   : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  absl::StatusOr<std::string> key = ReadFile("tls.key_file", tls.key_file());
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> cert = ReadFile("tls.cert_file", tls.cert_file());
  if (!cert.ok()) return cert.status();
  pair.private_key = *std::move(key);
  pair.cert_chain = *std::move(cert);
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!tls.client_ca_file().empty()) {
    absl::StatusOr<std::string> ca = ReadFile("tls.client_ca_file", tls.client_ca_file());
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(
    const tally::v1::ServerConfig& config) {
  auto auth = std::unique_ptr<Authenticator>(new Authenticator());
  auth->enabled_ = AuthEnabled(config);
  auth->certificates_ = !config.tls().client_ca_file().empty();
  if (!config.auth().tokens_file().empty()) {
    auto tokens = ParseTokens(config.auth().tokens_file());
    if (!tokens.ok()) return tokens.status();
    auth->token_identity_ = *std::move(tokens);
  }
  auth->admins_.assign(config.auth().admin_identities().begin(),
                       config.auth().admin_identities().end());
  return auth;
}

absl::StatusOr<std::vector<std::string>> Authenticator::Identify(
    const grpc::ServerContextBase& context) const {
  std::vector<std::string> identities;
  if (!enabled_) return identities;
  // A bearer token, if sent, must be known (a wrong one is an error even if
  // a certificate also names the caller).
  const auto& metadata = context.client_metadata();
  for (auto it = metadata.find("authorization");
       it != metadata.end() && it->first == "authorization"; ++it) {
    const absl::string_view value(it->second.data(), it->second.size());
    if (!absl::StartsWith(value, "Bearer ")) {
      return absl::UnauthenticatedError("authorization metadata must be \"Bearer <token>\"");
    }
    auto found = token_identity_.find(HashToken(value.substr(7)));
    if (found == token_identity_.end()) return absl::UnauthenticatedError("unknown bearer token");
    identities.push_back(found->second);
  }
  if (certificates_) {
    std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    if (auth != nullptr && auth->IsPeerAuthenticated()) {
      for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
        for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
          identities.emplace_back(v.data(), v.size());
        }
      }
    }
  }
  if (identities.empty()) {
    return absl::UnauthenticatedError(
        "this server requires a client certificate or a bearer token");
  }
  return identities;
}

absl::Status Authenticator::CheckClient(const grpc::ServerContextBase& context,
                                        absl::string_view client_id) const {
  if (!enabled_) return absl::OkStatus();
  absl::StatusOr<std::vector<std::string>> identities = Identify(context);
  if (!identities.ok()) return identities.status();
  return CheckClient(*identities, client_id);
}

absl::Status Authenticator::CheckClient(absl::Span<const std::string> identities,
                                        absl::string_view client_id) const {
  if (!enabled_) return absl::OkStatus();
  return MatchIdentity(identities, client_id).status();
}

absl::StatusOr<std::string> Authenticator::ClientIdentity(const grpc::ServerContextBase& context,
                                                          absl::string_view client_id) const {
  if (!enabled_) return std::string();
  absl::StatusOr<std::vector<std::string>> identities = Identify(context);
  if (!identities.ok()) return identities.status();
  return MatchIdentity(*identities, client_id);
}

absl::StatusOr<std::string> Authenticator::MatchIdentity(absl::Span<const std::string> identities,
                                                         absl::string_view client_id) {
  for (const std::string& identity : identities) {
    if (identity == client_id) return identity;
    // "relay-*": any client id with that prefix (relays whose ids are made
    // per pod, say).
    if (identity.size() > 1 && identity.back() == '*' &&
        absl::StartsWith(client_id, absl::string_view(identity).substr(0, identity.size() - 1))) {
      return identity;
    }
  }
  return absl::PermissionDeniedError(absl::StrCat("the caller is authenticated as ",
                                                  ClientText(identities[0]), ", not as client ",
                                                  ClientText(client_id)));
}

absl::Status Authenticator::CheckAdmin(const grpc::ServerContextBase& context) const {
  if (!enabled_) return absl::OkStatus();
  absl::StatusOr<std::vector<std::string>> identities = Identify(context);
  if (!identities.ok()) return identities.status();
  for (const std::string& id : *identities) {
    if (std::find(admins_.begin(), admins_.end(), id) != admins_.end()) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(ClientText((*identities)[0]), " is not in auth.admin_identities"));
}

}  // namespace tally::server
