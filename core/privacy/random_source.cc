#include "core/privacy/random_source.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/base/internal/raw_logging.h"

namespace tally::privacy {
namespace {

int BitWidth128(unsigned __int128 x) {
  int bits = 0;
  while (x != 0) {
    ++bits;
    x >>= 1;
  }
  return bits;
}

}  // namespace

unsigned __int128 RandomSource::UniformBelow128(unsigned __int128 bound) {
  ABSL_RAW_CHECK(bound >= 1, "UniformBelow128: bound must be >= 1");
  if (bound == 1) return 0;
  const int bits = BitWidth128(bound - 1);
  const unsigned __int128 mask = bits == 128 ? ~static_cast<unsigned __int128>(0)
                                             : (static_cast<unsigned __int128>(1) << bits) - 1;
  const size_t bytes = (bits + 7) / 8;
  for (;;) {
    uint8_t buf[16] = {0};
    Fill(buf, bytes);
    unsigned __int128 x = 0;
    for (size_t i = 0; i < bytes; ++i) x = (x << 8) | buf[i];
    x &= mask;
    if (x < bound) return x;  // Accepted with probability > 1/2.
  }
}

uint64_t RandomSource::UniformBelow(uint64_t bound) {
  return static_cast<uint64_t>(UniformBelow128(bound));
}

bool RandomSource::Bit() {
  if (bits_left_ == 0) {
    uint8_t buf[8];
    Fill(buf, sizeof(buf));
    std::memcpy(&bits_, buf, sizeof(bits_));
    bits_left_ = 64;
  }
  const bool bit = bits_ & 1;
  bits_ >>= 1;
  --bits_left_;
  return bit;
}

void SecureRandom::Fill(uint8_t* out, size_t n) {
  while (n > 0) {
    if (available_ == 0) {
      ABSL_RAW_CHECK(RAND_bytes(buffer_, sizeof(buffer_)) == 1,
                     "RAND_bytes failed: no secure noise can be drawn");
      available_ = sizeof(buffer_);
    }
    const size_t take = std::min(n, available_);
    uint8_t* from = buffer_ + sizeof(buffer_) - available_;
    std::memcpy(out, from, take);
    std::memset(from, 0, take);  // Used bytes do not stay in memory.
    available_ -= take;
    out += take;
    n -= take;
  }
}

struct SeededTestRandom::Cipher {
  EVP_CIPHER_CTX* ctx = nullptr;
};

SeededTestRandom::SeededTestRandom(absl::string_view seed) : cipher_(new Cipher) {
  uint8_t key[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(seed.data()), seed.size(), key);
  const uint8_t iv[16] = {0};
  cipher_->ctx = EVP_CIPHER_CTX_new();
  ABSL_RAW_CHECK(cipher_->ctx != nullptr &&
                     EVP_EncryptInit_ex(cipher_->ctx, EVP_aes_256_ctr(), nullptr, key, iv) == 1,
                 "AES-256-CTR init failed");
}

SeededTestRandom::~SeededTestRandom() { EVP_CIPHER_CTX_free(cipher_->ctx); }

void SeededTestRandom::Fill(uint8_t* out, size_t n) {
  // The keystream: AES-CTR encryption of zeros.
  std::memset(out, 0, n);
  while (n > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(n, 1 << 20));
    int written = 0;
    ABSL_RAW_CHECK(
        EVP_EncryptUpdate(cipher_->ctx, out, &written, out, chunk) == 1 && written == chunk,
        "AES-256-CTR keystream failed");
    out += chunk;
    n -= chunk;
  }
}

std::unique_ptr<RandomSource> NoiseRandomFromEnvironment() {
  const char* seed = std::getenv(kInsecureTestSeedEnv);
  if (seed != nullptr && seed[0] != '\0') return std::make_unique<SeededTestRandom>(seed);
  return std::make_unique<SecureRandom>();
}

}  // namespace tally::privacy
