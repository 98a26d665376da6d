// The messages of SecAgg+ (docs/secure-aggregation.md#protocol) and the
// derivations both ends share: channel keys, pairwise mask seeds, the AEAD
// header, the share plaintext and the masking of an input. The Python SDK's
// client/python/tally/secagg.py implements the same bytes.
//
// Stages of one instance (n clients, indices 1..n, neighbour graph G):
//   0 advertise keys  client -> server  KeyAdvertisement (c_pk, s_pk)
//                     server -> client  its neighbours' advertisements
//   1 share keys      client -> server  ShareKeysMessage: to every neighbour
//                                       that advertised, AEAD(channel key,
//                                       shares of b_u and s_u^SK); SHA-256(b_u)
//                     server -> client  the ciphertexts addressed to it
//   2 masked input    client -> server  y_u (b-bit words, streamed)
//                     server -> client  the survivors (who sent all of y_u)
//   3 unmask          client -> server  UnmaskResponse: for each neighbour v
//                                       whose shares it holds, v's b-share if
//                                       v survived, else v's s^SK-share
// Thread-safe pure functions; plain structs.
#ifndef TALLY_SECAGG_PROTOCOL_H_
#define TALLY_SECAGG_PROTOCOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "secagg/crypto.h"
#include "secagg/params.h"
#include "secagg/shamir.h"

namespace tally::secagg {

enum class Stage : uint8_t {
  kAdvertiseKeys = 0,
  kShareKeys = 1,
  kMaskedInput = 2,
  kUnmask = 3,
  kDone = 4,
  kFailed = 5,
};
const char* StageName(Stage stage);

struct KeyAdvertisement {
  uint32_t sender = 0;
  Key c_pk{};  // X25519 key of the AEAD channel.
  Key s_pk{};  // X25519 key of the pairwise masks.
};

struct EncryptedShare {
  uint32_t sender = 0;
  uint32_t receiver = 0;
  Bytes ciphertext;  // Seal(channel key, SharePlaintext, AssociatedData(stage 1)).
};

struct ShareKeysMessage {
  uint32_t sender = 0;
  Key self_mask_commitment{};  // SHA-256(b_u): the server checks the reconstruction.
  std::vector<EncryptedShare> shares;
};

enum class ShareKind : uint8_t { kSelfMask = 0, kMaskKey = 1 };
struct RevealedShare {
  uint32_t owner = 0;  // Whose secret the share is of.
  ShareKind kind = ShareKind::kSelfMask;
  Bytes values;  // 64 bytes (SerializeShareValues).
};
struct UnmaskResponse {
  uint32_t sender = 0;
  std::vector<RevealedShare> shares;
};

// Share plaintext: sender (u32 LE) | receiver (u32 LE) | b-share (64) | s-share (64).
inline constexpr size_t kSharePlaintextBytes = 8 + 2 * kShareBytes;
inline constexpr size_t kShareCiphertextBytes = kSharePlaintextBytes + kSealOverhead;

// "tally-secagg/1" | instance_id (u64 LE) | stage (u8) | sender (u32 LE) | receiver (u32 LE).
Bytes AssociatedData(uint64_t instance_id, Stage stage, uint32_t sender, uint32_t receiver);
// HKDF-SHA256(X25519(own, peer), info = label | instance_id (u64 LE)), label
// "tally-secagg/1 channel" or "tally-secagg/1 mask".
absl::StatusOr<Key> ChannelKey(const Key& own_private, const Key& peer_public,
                               uint64_t instance_id);
absl::StatusOr<Key> PairwiseSeed(const Key& own_private, const Key& peer_public,
                                 uint64_t instance_id);

Bytes SharePlaintext(uint32_t sender, uint32_t receiver, const Share& self_mask_share,
                     const Share& mask_key_share);
// Parses and checks a decrypted share plaintext: INVALID_ARGUMENT on a wrong
// length, sender/receiver not the expected ones, or a value >= p.
absl::Status ParseSharePlaintext(absl::Span<const uint8_t> plaintext, uint32_t sender,
                                 uint32_t receiver, Share* self_mask_share, Share* mask_key_share);

// The pairwise mask sign of u towards v: +1 if u < v, else -1.
inline int PairSign(uint32_t u, uint32_t v) { return u < v ? +1 : -1; }

struct MaskPartner {
  uint32_t index = 0;
  Key s_pk{};
};
// y_u = Quantize(x) + PRG(b_u) + sum_v PairSign(u, v) PRG(PairwiseSeed(s_u^SK, s_v^PK))
// modulo 2^b, as little-endian b-bit words.
absl::StatusOr<Bytes> MaskInput(const SecAggParams& params, uint32_t self,
                                absl::Span<const float> x, const Key& self_mask_seed,
                                const Key& mask_private_key,
                                absl::Span<const MaskPartner> partners);

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_PROTOCOL_H_
