// OpenSslFree<F>: a unique_ptr deleter that calls an OpenSSL free function,
// e.g. std::unique_ptr<EVP_PKEY, OpenSslFree<EVP_PKEY_free>>. Header-only: the
// code that names an OpenSSL type includes its header and links libcrypto.
#ifndef TALLY_CORE_OPENSSL_FREE_H_
#define TALLY_CORE_OPENSSL_FREE_H_

namespace tally {

template <auto Free>
struct OpenSslFree {
  template <typename T>
  void operator()(T* object) const {
    Free(object);
  }
};

}  // namespace tally

#endif  // TALLY_CORE_OPENSSL_FREE_H_
