// unique_ptr owners of the OpenSSL objects the SDK's TLS checks make
// (client/tls_files.cc, client/connect_probe.cc). Internal to client/.
#ifndef TALLY_CLIENT_OPENSSL_PTR_H_
#define TALLY_CLIENT_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "core/openssl_free.h"

namespace tally {
namespace client_internal {

using ::tally::OpenSslFree;

using UniqueBio = std::unique_ptr<BIO, OpenSslFree<BIO_free>>;
using UniqueX509 = std::unique_ptr<X509, OpenSslFree<X509_free>>;
using UniquePkey = std::unique_ptr<EVP_PKEY, OpenSslFree<EVP_PKEY_free>>;
using UniqueSslCtx = std::unique_ptr<SSL_CTX, OpenSslFree<SSL_CTX_free>>;
using UniqueSsl = std::unique_ptr<SSL, OpenSslFree<SSL_free>>;

// A read-only memory BIO over `pem` (which must outlive it).
inline UniqueBio MemoryBio(const std::string& pem) {
  return UniqueBio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_OPENSSL_PTR_H_
