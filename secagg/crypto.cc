#include "secagg/crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/openssl_free.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "secagg reads PRG words as little-endian in place: a big-endian host needs a byte swap"
#endif

namespace tally::secagg {
namespace {

using ::tally::OpenSslFree;
using UniquePkey = std::unique_ptr<EVP_PKEY, OpenSslFree<EVP_PKEY_free>>;
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, OpenSslFree<EVP_PKEY_CTX_free>>;
using UniqueCipherCtx = std::unique_ptr<EVP_CIPHER_CTX, OpenSslFree<EVP_CIPHER_CTX_free>>;
using UniqueKdf = std::unique_ptr<EVP_KDF, OpenSslFree<EVP_KDF_free>>;
using UniqueKdfCtx = std::unique_ptr<EVP_KDF_CTX, OpenSslFree<EVP_KDF_CTX_free>>;

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat("OpenSSL ", what, " failed"));
}

int Len(size_t n) { return static_cast<int>(n); }

}  // namespace

absl::StatusOr<Bytes> RandomBytes(size_t count) {
  Bytes out(count);
  if (count > 0 && RAND_bytes(out.data(), Len(count)) != 1) return OpenSslError("RAND_bytes");
  return out;
}

absl::StatusOr<Key> RandomKey() {
  Key key;
  if (RAND_bytes(key.data(), Len(key.size())) != 1) return OpenSslError("RAND_bytes");
  return key;
}

absl::StatusOr<X25519KeyPair> X25519FromPrivate(const Key& private_key) {
  UniquePkey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                               private_key.size()));
  if (pkey == nullptr) return OpenSslError("X25519 private key");
  X25519KeyPair pair{private_key, {}};
  size_t len = pair.public_key.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), pair.public_key.data(), &len) != 1 ||
      len != kKeyBytes) {
    return OpenSslError("X25519 public key");
  }
  return pair;
}

absl::StatusOr<X25519KeyPair> GenerateX25519() {
  absl::StatusOr<Key> key = RandomKey();
  if (!key.ok()) return key.status();
  return X25519FromPrivate(*key);
}

absl::StatusOr<Key> X25519SharedSecret(const Key& private_key, const Key& peer_public) {
  UniquePkey own(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                              private_key.size()));
  UniquePkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                              peer_public.size()));
  if (own == nullptr || peer == nullptr) return OpenSslError("X25519 key import");
  UniquePkeyCtx ctx(EVP_PKEY_CTX_new(own.get(), nullptr));
  Key secret{};
  size_t len = secret.size();
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1 || len != kKeyBytes ||
      std::all_of(secret.begin(), secret.end(), [](uint8_t b) { return b == 0; })) {
    return absl::InvalidArgumentError(
        "X25519: the peer public key gives no shared secret (a low-order point)");
  }
  return secret;
}

absl::StatusOr<Bytes> HkdfSha256(absl::Span<const uint8_t> ikm, absl::Span<const uint8_t> salt,
                                 absl::Span<const uint8_t> info, size_t length) {
  if (length == 0 || length > 255 * 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("HKDF-SHA256 output length ", length, " is outside [1, 8160]"));
  }
  UniqueKdf kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (kdf == nullptr) return OpenSslError("EVP_KDF_fetch(HKDF)");
  UniqueKdfCtx ctx(EVP_KDF_CTX_new(kdf.get()));
  if (ctx == nullptr) return OpenSslError("EVP_KDF_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  // OpenSSL reads these buffers; its API takes them non-const.
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<uint8_t*>(salt.data()), salt.size());
  }
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                  const_cast<uint8_t*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  Bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslError("HKDF-SHA256");
  }
  return out;
}

absl::StatusOr<Key> HkdfSha256Key(absl::Span<const uint8_t> ikm, absl::Span<const uint8_t> info) {
  absl::StatusOr<Bytes> out = HkdfSha256(ikm, {}, info, kKeyBytes);
  if (!out.ok()) return out.status();
  Key key;
  std::memcpy(key.data(), out->data(), key.size());
  return key;
}

absl::StatusOr<Bytes> SealWithNonce(const Key& key, absl::Span<const uint8_t> nonce,
                                    absl::Span<const uint8_t> plaintext,
                                    absl::Span<const uint8_t> associated_data) {
  if (nonce.size() != kNonceBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("AES-GCM nonce must be 12 bytes, got ", nonce.size()));
  }
  UniqueCipherCtx ctx(EVP_CIPHER_CTX_new());
  Bytes out(kNonceBytes + plaintext.size() + kTagBytes);
  std::memcpy(out.data(), nonce.data(), kNonceBytes);
  int len = 0;
  uint8_t* ct = out.data() + kNonceBytes;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      (!associated_data.empty() &&
       EVP_EncryptUpdate(ctx.get(), nullptr, &len, associated_data.data(),
                         Len(associated_data.size())) != 1) ||
      (!plaintext.empty() &&
       EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(), Len(plaintext.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, ct + plaintext.size()) != 1) {
    return OpenSslError("AES-256-GCM seal");
  }
  return out;
}

absl::StatusOr<Bytes> Seal(const Key& key, absl::Span<const uint8_t> plaintext,
                           absl::Span<const uint8_t> associated_data) {
  absl::StatusOr<Bytes> nonce = RandomBytes(kNonceBytes);
  if (!nonce.ok()) return nonce.status();
  return SealWithNonce(key, *nonce, plaintext, associated_data);
}

absl::StatusOr<Bytes> Open(const Key& key, absl::Span<const uint8_t> sealed,
                           absl::Span<const uint8_t> associated_data) {
  if (sealed.size() < kSealOverhead) {
    return absl::InvalidArgumentError(absl::StrCat("sealed message of ", sealed.size(),
                                                   " bytes is shorter than nonce + tag (28)"));
  }
  const size_t ct_len = sealed.size() - kSealOverhead;
  const uint8_t* ct = sealed.data() + kNonceBytes;
  Bytes tag(ct + ct_len, ct + ct_len + kTagBytes);
  Bytes out(ct_len);
  UniqueCipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), sealed.data()) != 1 ||
      (!associated_data.empty() &&
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, associated_data.data(),
                         Len(associated_data.size())) != 1) ||
      (ct_len > 0 && EVP_DecryptUpdate(ctx.get(), out.data(), &len, ct, Len(ct_len)) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1) {
    return OpenSslError("AES-256-GCM open");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + ct_len, &len) != 1) {
    return absl::UnauthenticatedError(
        "AES-256-GCM: the tag does not verify (wrong key, or tampered ciphertext or header)");
  }
  return out;
}

Key Sha256(absl::Span<const uint8_t> data) {
  Key out;
  SHA256(data.data(), data.size(), out.data());
  return out;
}

absl::StatusOr<Prg> Prg::Create(const Key& seed) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return OpenSslError("EVP_CIPHER_CTX_new");
  const uint8_t zero_iv[16] = {};
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, seed.data(), zero_iv) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return OpenSslError("AES-256-CTR init");
  }
  return Prg(ctx, seed);
}

Prg::Prg(Prg&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)), seed_(other.seed_) {}
Prg& Prg::operator=(Prg&& other) noexcept {
  if (this != &other) {
    EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_));
    ctx_ = std::exchange(other.ctx_, nullptr);
    seed_ = other.seed_;
  }
  return *this;
}
Prg::~Prg() { EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_)); }

absl::Status Prg::Generate(uint64_t byte_offset, absl::Span<uint8_t> out) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  // The counter block of byte_offset: a 128-bit big-endian block index.
  uint8_t iv[16] = {};
  uint64_t block = byte_offset / 16;
  for (int i = 15; i >= 8; --i, block >>= 8) iv[i] = static_cast<uint8_t>(block);
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv) != 1) {
    return OpenSslError("AES-256-CTR seek");
  }
  int len = 0;
  if (const size_t skip = byte_offset % 16; skip > 0) {
    uint8_t discard[16] = {};
    if (EVP_EncryptUpdate(ctx, discard, &len, discard, Len(skip)) != 1) {
      return OpenSslError("AES-256-CTR");
    }
  }
  std::memset(out.data(), 0, out.size());
  for (size_t done = 0; done < out.size();) {
    const size_t n = std::min<size_t>(out.size() - done, size_t{1} << 30);
    if (EVP_EncryptUpdate(ctx, out.data() + done, &len, out.data() + done, Len(n)) != 1) {
      return OpenSslError("AES-256-CTR");
    }
    done += n;
  }
  return absl::OkStatus();
}

template <typename Word>
absl::Status AddPrgWords(Prg& prg, int sign, uint64_t word_offset, absl::Span<Word> values) {
  constexpr size_t kBlockWords = kPrgBlockBytes / sizeof(Word);
  std::vector<Word> scratch(std::min(kBlockWords, values.size()));
  for (size_t done = 0; done < values.size();) {
    const size_t n = std::min(kBlockWords, values.size() - done);
    absl::Status status =
        prg.Generate((word_offset + done) * sizeof(Word),
                     absl::MakeSpan(reinterpret_cast<uint8_t*>(scratch.data()), n * sizeof(Word)));
    if (!status.ok()) return status;
    Word* v = values.data() + done;
    const Word* m = scratch.data();
    if (sign > 0) {
      for (size_t i = 0; i < n; ++i) v[i] += m[i];
    } else {
      for (size_t i = 0; i < n; ++i) v[i] -= m[i];
    }
    done += n;
  }
  return absl::OkStatus();
}

template <typename Word>
absl::Status AddPrgWords(const Key& seed, int sign, uint64_t word_offset, absl::Span<Word> values) {
  absl::StatusOr<Prg> prg = Prg::Create(seed);
  if (!prg.ok()) return prg.status();
  return AddPrgWords<Word>(*prg, sign, word_offset, values);
}

template absl::Status AddPrgWords<uint32_t>(Prg&, int, uint64_t, absl::Span<uint32_t>);
template absl::Status AddPrgWords<uint64_t>(Prg&, int, uint64_t, absl::Span<uint64_t>);
template absl::Status AddPrgWords<uint32_t>(const Key&, int, uint64_t, absl::Span<uint32_t>);
template absl::Status AddPrgWords<uint64_t>(const Key&, int, uint64_t, absl::Span<uint64_t>);

absl::StatusOr<std::vector<uint32_t>> SeededPermutation(const Key& seed, uint32_t n) {
  std::vector<uint32_t> p(n);
  for (uint32_t i = 0; i < n; ++i) p[i] = i;
  absl::StatusOr<Prg> prg = Prg::Create(seed);
  if (!prg.ok()) return prg.status();
  std::vector<uint64_t> words(512);
  size_t next = words.size();
  uint64_t consumed = 0;  // Words read so far.
  auto draw = [&]() -> absl::StatusOr<uint64_t> {
    if (next == words.size()) {
      absl::Status s = prg->Generate(
          consumed * 8, absl::MakeSpan(reinterpret_cast<uint8_t*>(words.data()), words.size() * 8));
      if (!s.ok()) return s;
      next = 0;
    }
    ++consumed;
    return words[next++];
  };
  for (uint32_t i = n; i-- > 1;) {
    const uint64_t m = uint64_t{i} + 1;
    const uint64_t limit = UINT64_MAX - (UINT64_MAX % m + 1) % m;  // Accept w <= limit.
    uint64_t w;
    do {
      absl::StatusOr<uint64_t> d = draw();
      if (!d.ok()) return d.status();
      w = *d;
    } while (w > limit);
    std::swap(p[i], p[w % m]);
  }
  return p;
}

std::string ToHex(absl::Span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

absl::StatusOr<Bytes> FromHex(absl::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("odd-length hex string");
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("non-hex character in hex string");
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return out;
}

}  // namespace tally::secagg
