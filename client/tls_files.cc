#include "client/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/openssl_ptr.h"
#include "core/status_macros.h"

namespace tally {
namespace client_internal {
namespace {

absl::Status Invalid(const char* field, const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("ClientOptions.", field, ": '", path, "' ", what));
}

absl::StatusOr<std::string> ReadFile(const char* field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  if (in) buffer << in.rdbuf();
  if (!in) return Invalid(field, path, "cannot be read");
  if (buffer.str().find("-----BEGIN ") == std::string::npos) {
    return Invalid(field, path, "is not a PEM file (no -----BEGIN line)");
  }
  return buffer.str();
}

// The first certificate of `pem`, or the error for `field` (what it must hold).
absl::StatusOr<UniqueX509> FirstCertificate(const char* field, const std::string& path,
                                            const std::string& pem, absl::string_view needed) {
  auto bio = MemoryBio(pem);
  UniqueX509 cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert != nullptr) return cert;
  if (absl::StrContains(pem, "PRIVATE KEY-----")) {
    return Invalid(field, path,
                   absl::StrCat("holds a private key, not a certificate: give ", needed,
                                " (a private key goes in tls_key_file)"));
  }
  return Invalid(field, path, absl::StrCat("holds no PEM certificate: give ", needed));
}

absl::Status CheckKey(const std::string& path, const std::string& pem, X509* cert) {
  auto bio = MemoryBio(pem);
  UniquePkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return Invalid("tls_key_file", path,
                   absl::StrContains(pem, "CERTIFICATE-----")
                       ? "holds a certificate, not a private key: give the key of tls_cert_file"
                       : "holds no unencrypted PEM private key");
  }
  const bool matches = X509_check_private_key(cert, key.get()) == 1;
  ERR_clear_error();
  if (!matches) {
    return Invalid("tls_key_file", path, "is not the key of the certificate in tls_cert_file");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TlsPem> ReadTlsFiles(const ClientOptions& options) {
  TlsPem pem;
  if (options.tls_ca_file.empty()) return pem;
  TALLY_ASSIGN_OR_RETURN(pem.ca, ReadFile("tls_ca_file", options.tls_ca_file));
  TALLY_RETURN_IF_ERROR(
      FirstCertificate("tls_ca_file", options.tls_ca_file, pem.ca,
                       "the PEM certificate of the CA that signed the server's certificate")
          .status());
  if (options.tls_cert_file.empty()) return pem;
  TALLY_ASSIGN_OR_RETURN(pem.cert_chain, ReadFile("tls_cert_file", options.tls_cert_file));
  TALLY_ASSIGN_OR_RETURN(pem.key, ReadFile("tls_key_file", options.tls_key_file));
  TALLY_ASSIGN_OR_RETURN(UniqueX509 cert,
                         FirstCertificate("tls_cert_file", options.tls_cert_file, pem.cert_chain,
                                          "this client's PEM certificate"));
  TALLY_RETURN_IF_ERROR(CheckKey(options.tls_key_file, pem.key, cert.get()));
  return pem;
}

}  // namespace client_internal
}  // namespace tally
