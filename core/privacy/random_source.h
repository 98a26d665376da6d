// Random bytes for privacy noise (docs/privacy.md, "The sampler").
//
// SecureRandom: OpenSSL's CSPRNG (RAND_bytes), read 4 KiB at a time into a
// private buffer. This is the only source noise may come from in production.
//
// SeededTestRandom: the AES-256-CTR keystream under the key SHA-256(seed),
// for deterministic tests only. NoiseRandomFromEnvironment() returns it only
// when the environment variable TALLY_INSECURE_TEST_NOISE_SEED is set (it
// has no config field, so no config file can turn it on); the caller must
// then log a WARNING (insecure_test_seed() says so) every time it uses it.
//
// Thread-compatible: one thread at a time per instance.
#ifndef TALLY_CORE_PRIVACY_RANDOM_SOURCE_H_
#define TALLY_CORE_PRIVACY_RANDOM_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tally::privacy {

// The environment variable that makes NoiseRandomFromEnvironment() seeded.
inline constexpr char kInsecureTestSeedEnv[] = "TALLY_INSECURE_TEST_NOISE_SEED";

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills out[0, n) with uniformly random bytes. Aborts (CHECK) if the
  // generator fails: noise from a failed generator must never be used.
  virtual void Fill(uint8_t* out, size_t n) = 0;
  // True for SeededTestRandom: the noise is predictable, tests only.
  virtual bool insecure_test_seed() const { return false; }

  // Uniform integer in [0, bound) for bound >= 1 (rejection sampling on
  // the smallest covering power of two: exactly uniform).
  uint64_t UniformBelow(uint64_t bound);
  unsigned __int128 UniformBelow128(unsigned __int128 bound);
  // One fair bit.
  bool Bit();

 private:
  uint64_t bits_ = 0;  // Spare random bits for Bit().
  int bits_left_ = 0;
};

class SecureRandom final : public RandomSource {
 public:
  void Fill(uint8_t* out, size_t n) override;

 private:
  uint8_t buffer_[4096];
  size_t available_ = 0;  // Unused bytes at the end of buffer_.
};

class SeededTestRandom final : public RandomSource {
 public:
  explicit SeededTestRandom(absl::string_view seed);
  ~SeededTestRandom() override;
  void Fill(uint8_t* out, size_t n) override;
  bool insecure_test_seed() const override { return true; }

 private:
  struct Cipher;
  std::unique_ptr<Cipher> cipher_;
};

// SecureRandom, or SeededTestRandom(value) when TALLY_INSECURE_TEST_NOISE_SEED
// is set to a non-empty value.
std::unique_ptr<RandomSource> NoiseRandomFromEnvironment();

}  // namespace tally::privacy

#endif  // TALLY_CORE_PRIVACY_RANDOM_SOURCE_H_
