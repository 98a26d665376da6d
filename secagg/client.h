// SecAggClient: one client's side of one SecAgg+ instance as a state machine
// (secagg/protocol.h lists the stages). Holds its secrets (the two X25519
// private keys and the self-mask seed b_u) and the shares its neighbours sent
// it; every message from the server is validated before use and a failed
// check leaves the client unable to continue (no partial state is reused).
// Thread-compatible; one object per client per instance.
#ifndef TALLY_SECAGG_CLIENT_H_
#define TALLY_SECAGG_CLIENT_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "secagg/crypto.h"
#include "secagg/params.h"
#include "secagg/protocol.h"
#include "secagg/shamir.h"

namespace tally::secagg {

class SecAggClient {
 public:
  // `neighbours`: the 1-based indices the server's graph gives `self`.
  static absl::StatusOr<SecAggClient> Create(const SecAggParams& params, uint32_t self,
                                             std::vector<uint32_t> neighbours);
  // With given secrets (test vectors and cross-language tests).
  static absl::StatusOr<SecAggClient> CreateWithSecrets(const SecAggParams& params, uint32_t self,
                                                        std::vector<uint32_t> neighbours,
                                                        const Key& c_sk, const Key& s_sk,
                                                        const Key& self_mask_seed);

  uint32_t self() const { return self_; }
  Stage stage() const { return stage_; }

  // Stage 0: the public keys to send.
  absl::StatusOr<KeyAdvertisement> AdvertiseKeys();
  // Stage 1: given the advertisements of neighbours (each at most once, only
  // neighbours, distinct keys, at least t of them), the encrypted shares.
  absl::StatusOr<ShareKeysMessage> ShareKeys(absl::Span<const KeyAdvertisement> neighbour_keys);
  // Stage 2: given the ciphertexts addressed to it (from neighbours that
  // advertised, at most one each, at least t), the masked input of x.
  absl::StatusOr<Bytes> MaskedInput(absl::Span<const EncryptedShare> inbox,
                                    absl::Span<const float> x);
  // Stage 3: given the survivors of stage 2 (sorted indices), the shares to
  // reveal. FAILED_PRECONDITION if fewer than t of its partners survived.
  absl::StatusOr<UnmaskResponse> Unmask(absl::Span<const uint32_t> survivors);

 private:
  SecAggClient(const SecAggParams& params, uint32_t self, std::vector<uint32_t> neighbours,
               const X25519KeyPair& c, const X25519KeyPair& s, const Key& b)
      : params_(params), self_(self), neighbours_(std::move(neighbours)), c_(c), s_(s), b_(b) {}
  absl::Status Expect(Stage stage) const;
  absl::Status Fail(absl::Status status);

  SecAggParams params_;
  uint32_t self_;
  std::vector<uint32_t> neighbours_;
  X25519KeyPair c_, s_;
  Key b_;
  Stage stage_ = Stage::kAdvertiseKeys;
  std::map<uint32_t, KeyAdvertisement> keys_;  // Neighbours that advertised.
  struct HeldShares {
    Share self_mask, mask_key;
  };
  std::map<uint32_t, HeldShares> held_;  // Partners: neighbours whose shares arrived.
};

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_CLIENT_H_
