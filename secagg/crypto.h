// The cryptographic primitives of secure aggregation (docs/secure-aggregation.md),
// all through OpenSSL 3's EVP interface; the Python SDK's twin
// (client/python/tally/secagg_crypto.py, python3-cryptography) produces the
// same bytes for the same inputs (tests/secagg_vectors_test.py checks it):
//   - X25519 key pairs and their Diffie-Hellman shared secret (RFC 7748);
//   - HKDF-SHA256 (RFC 5869);
//   - AES-256-GCM sealing with associated data (nonce || ciphertext || tag);
//   - a PRG: AES-256-CTR keyed by a 32-byte seed, counter block starting at
//     zero (big-endian, the whole 128 bits incremented), whose key stream read
//     as little-endian words is the mask; any word offset can be expanded on
//     its own, so masks are generated chunk by chunk.
// Pure C++ on OpenSSL::Crypto and Abseil: no gRPC, protobuf, server or client
// code. Functions are thread-safe; a Prg object is thread-compatible.
#ifndef TALLY_SECAGG_CRYPTO_H_
#define TALLY_SECAGG_CRYPTO_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tally::secagg {

inline constexpr size_t kKeyBytes = 32;    // X25519 keys, seeds, AEAD keys.
inline constexpr size_t kNonceBytes = 12;  // AES-GCM nonce.
inline constexpr size_t kTagBytes = 16;    // AES-GCM tag.
inline constexpr size_t kSealOverhead = kNonceBytes + kTagBytes;

using Key = std::array<uint8_t, kKeyBytes>;
using Bytes = std::vector<uint8_t>;

// `count` bytes from OpenSSL's CSPRNG (RAND_bytes).
absl::StatusOr<Bytes> RandomBytes(size_t count);
absl::StatusOr<Key> RandomKey();

struct X25519KeyPair {
  Key private_key;
  Key public_key;
};
// A fresh key pair.
absl::StatusOr<X25519KeyPair> GenerateX25519();
// The key pair of a given private key (RFC 7748 clamps it; the stored bytes
// are kept as given).
absl::StatusOr<X25519KeyPair> X25519FromPrivate(const Key& private_key);
// X25519(private_key, peer_public): INVALID_ARGUMENT when the result is all
// zeros (a low-order peer key, RFC 7748 section 6.1).
absl::StatusOr<Key> X25519SharedSecret(const Key& private_key, const Key& peer_public);

// HKDF-SHA256(ikm, salt, info) -> `length` bytes (length <= 255 * 32).
absl::StatusOr<Bytes> HkdfSha256(absl::Span<const uint8_t> ikm, absl::Span<const uint8_t> salt,
                                 absl::Span<const uint8_t> info, size_t length);
absl::StatusOr<Key> HkdfSha256Key(absl::Span<const uint8_t> ikm, absl::Span<const uint8_t> info);

// AES-256-GCM: nonce (12) || ciphertext || tag (16). SealWithNonce is for
// test vectors; Seal draws a fresh random nonce (keys here are used for a few
// messages only: one share message per direction per instance).
absl::StatusOr<Bytes> SealWithNonce(const Key& key, absl::Span<const uint8_t> nonce,
                                    absl::Span<const uint8_t> plaintext,
                                    absl::Span<const uint8_t> associated_data);
absl::StatusOr<Bytes> Seal(const Key& key, absl::Span<const uint8_t> plaintext,
                           absl::Span<const uint8_t> associated_data);
// The plaintext, or INVALID_ARGUMENT if `sealed` is too short, or
// UNAUTHENTICATED if the tag does not verify (wrong key, tampered bytes or
// associated data).
absl::StatusOr<Bytes> Open(const Key& key, absl::Span<const uint8_t> sealed,
                           absl::Span<const uint8_t> associated_data);

// SHA-256 of `data` (commitments to self-mask seeds).
Key Sha256(absl::Span<const uint8_t> data);

// The PRG: AES-256-CTR key stream of `seed`. Thread-compatible; holds one
// OpenSSL cipher context.
class Prg {
 public:
  static absl::StatusOr<Prg> Create(const Key& seed);
  Prg(Prg&&) noexcept;
  Prg& operator=(Prg&&) noexcept;
  ~Prg();

  // Writes key-stream bytes [byte_offset, byte_offset + out.size()) to out.
  absl::Status Generate(uint64_t byte_offset, absl::Span<uint8_t> out);

 private:
  explicit Prg(void* ctx, const Key& seed) : ctx_(ctx), seed_(seed) {}
  void* ctx_ = nullptr;  // EVP_CIPHER_CTX*
  Key seed_;
};

// Adds (sign = +1) or subtracts (sign = -1) the PRG words of `seed` for word
// indices [word_offset, word_offset + values.size()) to `values` modulo 2^32
// or 2^64 (Word = uint32_t or uint64_t: the word is the little-endian read of
// the key stream at byte 4 * index or 8 * index). Generates in blocks of
// kPrgBlockBytes through a scratch buffer.
inline constexpr size_t kPrgBlockBytes = 64 * 1024;
template <typename Word>
absl::Status AddPrgWords(const Key& seed, int sign, uint64_t word_offset, absl::Span<Word> values);
// The same with a Prg already made for `seed` (the hot path keeps it).
template <typename Word>
absl::Status AddPrgWords(Prg& prg, int sign, uint64_t word_offset, absl::Span<Word> values);

// A permutation of 0..n-1 drawn from `seed` (Fisher-Yates over the PRG's
// uint64 words, unbiased by rejection): for i = n-1 down to 1, j = the next
// word w with w < 2^64 - (2^64 mod (i+1)), taken modulo i+1; swap p[i], p[j].
absl::StatusOr<std::vector<uint32_t>> SeededPermutation(const Key& seed, uint32_t n);

// Helpers for byte strings.
inline absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
std::string ToHex(absl::Span<const uint8_t> bytes);
absl::StatusOr<Bytes> FromHex(absl::string_view hex);

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_CRYPTO_H_
