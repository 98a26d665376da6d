// The PEM files of ClientOptions' TLS fields, read and checked before a
// channel is made, so that a wrong file is named at Client::Create instead of
// surfacing later as a gRPC connection error ("empty address list" for a key
// given as the CA). Internal to client/ (not installed).
#ifndef TALLY_CLIENT_TLS_FILES_H_
#define TALLY_CLIENT_TLS_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "tally/client.h"

namespace tally {
namespace client_internal {

// The PEM text of each file; empty where the option is empty.
struct TlsPem {
  std::string ca;          // tls_ca_file: one or more CA certificates.
  std::string cert_chain;  // tls_cert_file: this client's certificate (chain).
  std::string key;         // tls_key_file: its private key.
};

// Reads the files of options.tls_ca_file / tls_cert_file / tls_key_file.
// INVALID_ARGUMENT naming the field, the path and what to give instead: an
// unreadable file, no certificate where one is needed (a private key given
// as the CA), no private key in tls_key_file, or a key that is not the
// certificate's.
absl::StatusOr<TlsPem> ReadTlsFiles(const ClientOptions& options);

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_TLS_FILES_H_
