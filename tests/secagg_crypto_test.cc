// secagg/crypto.h and secagg/shamir.h against published test vectors (RFC
// 7748 for X25519, RFC 5869 for HKDF, the GCM specification's test case 16,
// AES-256 of the zero block for the PRG) and hand-built Shamir shares.
#include <algorithm>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "secagg/crypto.h"
#include "secagg/shamir.h"
#include "tests/status_matchers.h"

namespace tally::secagg {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

Key KeyFromHex(const char* hex) {
  Bytes b = FromHex(hex).value();
  Key k;
  std::copy(b.begin(), b.end(), k.begin());
  return k;
}
Bytes Hex(const char* hex) { return FromHex(hex).value(); }

// RFC 7748 section 6.1.
TEST(SecAggCrypto, X25519MatchesRfc7748) {
  const Key alice = KeyFromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Key bob = KeyFromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  TALLY_ASSERT_OK_AND_ASSIGN(X25519KeyPair a, X25519FromPrivate(alice));
  TALLY_ASSERT_OK_AND_ASSIGN(X25519KeyPair b, X25519FromPrivate(bob));
  EXPECT_EQ(ToHex(a.public_key),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  EXPECT_EQ(ToHex(b.public_key),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  TALLY_ASSERT_OK_AND_ASSIGN(Key ab, X25519SharedSecret(alice, b.public_key));
  TALLY_ASSERT_OK_AND_ASSIGN(Key ba, X25519SharedSecret(bob, a.public_key));
  EXPECT_EQ(ToHex(ab), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  EXPECT_EQ(ab, ba);
}

TEST(SecAggCrypto, X25519RejectsLowOrderPeerKey) {
  TALLY_ASSERT_OK_AND_ASSIGN(X25519KeyPair a, GenerateX25519());
  Key zero{};  // The point 0 has order 1: every shared secret would be 0.
  EXPECT_THAT(X25519SharedSecret(a.private_key, zero),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// RFC 5869 appendix A, test cases 1 and 3.
TEST(SecAggCrypto, HkdfMatchesRfc5869) {
  const Bytes ikm(22, 0x0b);
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes okm1, HkdfSha256(ikm, Hex("000102030405060708090a0b0c"),
                                                    Hex("f0f1f2f3f4f5f6f7f8f9"), 42));
  EXPECT_EQ(ToHex(okm1),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes okm3, HkdfSha256(ikm, {}, {}, 42));
  EXPECT_EQ(ToHex(okm3),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
  EXPECT_THAT(HkdfSha256(ikm, {}, {}, 0), StatusIs(absl::StatusCode::kInvalidArgument));
}

// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16.
TEST(SecAggCrypto, AesGcmMatchesSpecificationAndDetectsTampering) {
  const Key key = KeyFromHex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const Bytes nonce = Hex("cafebabefacedbaddecaf888");
  const Bytes plain =
      Hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
  const Bytes aad = Hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes sealed, SealWithNonce(key, nonce, plain, aad));
  EXPECT_EQ(ToHex(sealed),
            "cafebabefacedbaddecaf888"
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            "76fc6ece0f4e1768cddf8853bb2d551b");
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes opened, Open(key, sealed, aad));
  EXPECT_EQ(opened, plain);

  Bytes flipped = sealed;
  flipped[20] ^= 1;
  EXPECT_THAT(Open(key, flipped, aad), StatusIs(absl::StatusCode::kUnauthenticated));
  Bytes other_aad = aad;
  other_aad.back() ^= 1;  // E.g. another receiver or stage.
  EXPECT_THAT(Open(key, sealed, other_aad), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(Open(key, Bytes(27, 0), aad), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SecAggCrypto, SealDrawsFreshNonces) {
  TALLY_ASSERT_OK_AND_ASSIGN(Key key, RandomKey());
  const Bytes msg = Hex("00010203");
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes a, Seal(key, msg, {}));
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes b, Seal(key, msg, {}));
  EXPECT_NE(a, b);
  EXPECT_EQ(Open(key, a, {}).value(), msg);
  EXPECT_EQ(Open(key, b, {}).value(), msg);
}

// AES-256 with the zero key encrypts the zero block to dc95c078... and the
// block 0...01 to 530f8afb... (FIPS-197 AES, computed independently with
// python3-cryptography's AES-ECB): the PRG of the zero seed starts with both.
TEST(SecAggCrypto, PrgIsAesCtrFromCounterZero) {
  TALLY_ASSERT_OK_AND_ASSIGN(Prg prg, Prg::Create(Key{}));
  Bytes out(32);
  ASSERT_THAT(prg.Generate(0, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(ToHex(out), "dc95c078a2408989ad48a21492842087530f8afbc74536b9a963b4f1c4cb738b");
}

TEST(SecAggCrypto, PrgSeeksToAnyOffset) {
  TALLY_ASSERT_OK_AND_ASSIGN(Key seed, RandomKey());
  TALLY_ASSERT_OK_AND_ASSIGN(Prg prg, Prg::Create(seed));
  Bytes whole(200000);
  ASSERT_THAT(prg.Generate(0, absl::MakeSpan(whole)), IsOk());
  for (uint64_t offset : {1ull, 15ull, 16ull, 17ull, 65535ull, 65536ull, 123457ull}) {
    Bytes part(1000);
    ASSERT_THAT(prg.Generate(offset, absl::MakeSpan(part)), IsOk());
    EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + offset)) << offset;
  }
}

TEST(SecAggCrypto, PrgWordsAreLittleEndianStreamAndCancel) {
  TALLY_ASSERT_OK_AND_ASSIGN(Key seed, RandomKey());
  TALLY_ASSERT_OK_AND_ASSIGN(Prg prg, Prg::Create(seed));
  const size_t n = 3 * kPrgBlockBytes / 8 + 5;  // Crosses the 64 KiB blocks.
  Bytes stream(8 * (n + 7));
  ASSERT_THAT(prg.Generate(0, absl::MakeSpan(stream)), IsOk());
  std::vector<uint64_t> w64(n, 0);
  ASSERT_THAT(AddPrgWords<uint64_t>(seed, +1, 7, absl::MakeSpan(w64)), IsOk());
  std::vector<uint32_t> w32(n, 5);
  ASSERT_THAT(AddPrgWords<uint32_t>(seed, -1, 3, absl::MakeSpan(w32)), IsOk());
  for (size_t i : {size_t{0}, size_t{1}, n / 2, n - 1}) {
    uint64_t e64 = 0;
    for (int b = 7; b >= 0; --b) e64 = (e64 << 8) | stream[8 * (i + 7) + b];
    EXPECT_EQ(w64[i], e64) << i;
    uint32_t e32 = 0;
    for (int b = 3; b >= 0; --b) e32 = (e32 << 8) | stream[4 * (i + 3) + b];
    EXPECT_EQ(w32[i], static_cast<uint32_t>(5u - e32)) << i;
  }
  ASSERT_THAT(AddPrgWords<uint32_t>(seed, +1, 3, absl::MakeSpan(w32)), IsOk());
  EXPECT_TRUE(std::all_of(w32.begin(), w32.end(), [](uint32_t v) { return v == 5; }));
}

TEST(SecAggCrypto, SeededPermutationIsAPermutationAndDependsOnTheSeed) {
  Key seed{};
  seed[0] = 1;
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> p, SeededPermutation(seed, 1000));
  std::vector<uint32_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(SeededPermutation(seed, 1000).value(), p);
  seed[0] = 2;
  EXPECT_NE(SeededPermutation(seed, 1000).value(), p);
  EXPECT_TRUE(SeededPermutation(seed, 0).value().empty());
}

Key CountingKey() {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 7 + 3);
  return k;
}

TEST(SecAggShamir, AnyThresholdSubsetReconstructs) {
  const Key secret = CountingKey();
  const std::vector<uint32_t> xs = {1, 2, 3, 4, 5, 6, 7};
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<Share> shares, ShamirSplit(secret, 4, xs));
  ASSERT_EQ(shares.size(), 7u);
  // Every 4-subset (35 of them) and the whole set.
  for (int mask = 0; mask < 128; ++mask) {
    if (__builtin_popcount(mask) != 4 && mask != 127) continue;
    std::vector<Share> subset;
    for (int i = 0; i < 7; ++i) {
      if (mask & (1 << i)) subset.push_back(shares[i]);
    }
    TALLY_ASSERT_OK_AND_ASSIGN(Key got, ShamirReconstruct(subset, 4));
    EXPECT_EQ(got, secret) << mask;
  }
}

TEST(SecAggShamir, FewerThanThresholdFailsAndForgedShareIsCaught) {
  const Key secret = CountingKey();
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<Share> shares, ShamirSplit(secret, 3, {1, 2, 3, 4}));
  EXPECT_THAT(ShamirReconstruct(absl::MakeSpan(shares.data(), 2), 3),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  shares[3].y[5] = (shares[3].y[5] + 1) % kShamirPrime;
  EXPECT_THAT(ShamirReconstruct(shares, 3), StatusIs(absl::StatusCode::kDataLoss));
  shares[3].x = shares[0].x;
  EXPECT_THAT(ShamirReconstruct(shares, 3), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Hand-built shares of a degree-1 polynomial per limb, f(x) = s + c x with
// c = p - 1 (= -1): f(2) = s - 2 mod p and f(5) = s - 5 mod p. The secret's
// limb 0 is 7 (7 - 2 = 5, 7 - 5 = 2) and limb 1 is 0 (p - 2, p - 5).
TEST(SecAggShamir, ReconstructsHandBuiltShares) {
  const uint64_t p = kShamirPrime;
  Share a{2, {}}, b{5, {}};
  a.y = {5, p - 2, p - 2, p - 2, p - 2, p - 2, p - 2, p - 2};
  b.y = {2, p - 5, p - 5, p - 5, p - 5, p - 5, p - 5, p - 5};
  TALLY_ASSERT_OK_AND_ASSIGN(Key got, ShamirReconstruct(std::vector<Share>{a, b}, 2));
  Key expected{};
  expected[0] = 7;
  EXPECT_EQ(got, expected);
  // Limbs that interpolate above 2^32 belong to no secret.
  b.y[0] = 5 + 3 * 1000000000ull;  // Slope 1e9: f(0) = 5 - 2e9 mod p, far above 2^32.
  EXPECT_THAT(ShamirReconstruct(std::vector<Share>{a, b}, 2),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(SecAggShamir, ShareWireFormRejectsBadInput) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<Share> shares, ShamirSplit(CountingKey(), 2, {9, 10}));
  const Bytes wire = SerializeShareValues(shares[0]);
  ASSERT_EQ(wire.size(), kShareBytes);
  TALLY_ASSERT_OK_AND_ASSIGN(Share back, ParseShareValues(9, wire));
  EXPECT_EQ(back.y, shares[0].y);
  EXPECT_THAT(ParseShareValues(9, absl::MakeSpan(wire.data(), 63)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  Bytes high = wire;
  std::memset(high.data(), 0xff, 8);  // 2^64 - 1 >= p.
  EXPECT_THAT(ParseShareValues(9, high), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace tally::secagg
