// SecAggServer: the server's side of one SecAgg+ instance as a state machine
// (secagg/protocol.h lists the stages; docs/secure-aggregation.md#the-server-stage-machine).
// It validates every client message before it touches the instance's state
// (index range, stage, membership of the previous stage's survivors, replays,
// lengths, share sets), tracks the survivors of every stage, sums masked
// inputs modulo 2^b chunk by chunk as they arrive (one sum of the model's
// size, no per-client copy), and at the end reconstructs the self-mask seeds
// of survivors and the mask keys of dropped clients and removes their PRG
// expansions chunk by chunk. Below the threshold t it fails: the instance
// moves to kFailed and every later call returns FAILED_PRECONDITION with the
// reason; nothing is ever returned as a result unless every check passed.
//
// Error kinds: a wrong stage, or a sender that dropped out earlier:
// FAILED_PRECONDITION; an index outside 1..n, wrong lengths, shares
// addressed to the wrong clients, a masked chunk at the wrong offset, a
// revealed share of the wrong kind or owner: INVALID_ARGUMENT; a second
// message of a stage or a chunk already received: ALREADY_EXISTS; a
// reconstructed secret that contradicts its commitment (forged shares):
// DATA_LOSS. A rejected message changes nothing.
//
// Thread-compatible: the caller (the server's secure-aggregation driver)
// serialises calls, e.g. under its mutex.
#ifndef TALLY_SECAGG_SERVER_H_
#define TALLY_SECAGG_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "secagg/crypto.h"
#include "secagg/graph.h"
#include "secagg/params.h"
#include "secagg/protocol.h"
#include "secagg/shamir.h"

namespace tally::secagg {

// Words of the sum per unmasking chunk (the PRG expansions of one chunk are
// generated, applied and dropped before the next).
inline constexpr size_t kUnmaskChunkBytes = 256 * 1024;

class SecAggServer {
 public:
  static absl::StatusOr<std::unique_ptr<SecAggServer>> Create(const SecAggParams& params,
                                                              const Key& graph_seed);

  const SecAggParams& params() const { return params_; }
  int fraction_bits() const { return fraction_bits_; }
  const NeighbourGraph& graph() const { return graph_; }
  Stage stage() const { return stage_; }
  // Why the instance failed (empty unless stage() == kFailed).
  const std::string& failure() const { return failure_; }

  // Stage 0.
  absl::Status ReceiveKeys(const KeyAdvertisement& message);
  absl::Status CloseAdvertiseKeys();
  // The advertisements of `client`'s neighbours that advertised (stage >= 1).
  absl::StatusOr<std::vector<KeyAdvertisement>> KeysFor(uint32_t client) const;

  // Stage 1.
  absl::Status ReceiveShares(const ShareKeysMessage& message);
  absl::Status CloseShareKeys();
  // The ciphertexts addressed to `client` (stage >= 2).
  absl::StatusOr<std::vector<EncryptedShare>> InboxFor(uint32_t client) const;

  // Stage 2: `words` (little-endian b-bit words, any alignment) are values
  // [word_offset, word_offset + count) of `sender`'s masked input; chunks
  // arrive in order. RetractMaskedChunk subtracts the last chunk received
  // again (a sink replaying its journal of a broken upload, newest first).
  absl::Status ReceiveMaskedChunk(uint32_t sender, uint64_t word_offset,
                                  absl::Span<const uint8_t> words);
  absl::Status RetractMaskedChunk(uint32_t sender, uint64_t word_offset,
                                  absl::Span<const uint8_t> words);
  // Fails (FAILED_PRECONDITION, instance still open) while an upload is
  // partial; fails the instance below t complete uploads.
  absl::Status CloseMaskedInput();
  // U3: the clients whose masked input is in the sum (stage >= 3).
  const std::vector<uint32_t>& survivors() const { return masked_; }

  // Stage 3.
  absl::Status ReceiveUnmask(const UnmaskResponse& message);
  // Reconstructs, checks and removes the masks: the sum over survivors of
  // their quantized inputs as little-endian b-bit words. Fails the instance
  // when a secret has fewer than t shares or contradicts its commitment.
  absl::StatusOr<Bytes> Finish();

  // Clients still in after each stage (for metrics and logs).
  struct Counts {
    size_t roster = 0, advertised = 0, shared = 0, masked = 0, unmasked = 0;
  };
  Counts counts() const;

 private:
  SecAggServer(const SecAggParams& params, int fraction_bits, NeighbourGraph graph)
      : params_(params), fraction_bits_(fraction_bits), graph_(std::move(graph)) {}
  absl::Status CheckSender(uint32_t sender, Stage stage, const std::set<uint32_t>* previous) const;
  absl::Status FailInstance(absl::Status status);
  absl::Status CloseStage(const std::set<uint32_t>& in, Stage next, absl::string_view what);
  absl::Status AddWords(absl::Span<const uint8_t> words, uint64_t word_offset, int sign);
  template <typename Word>
  absl::Status RemoveMasks(std::vector<Word>& sum, const std::vector<std::pair<Key, int>>& seeds);
  absl::StatusOr<std::vector<std::pair<Key, int>>> RecoverSeeds();

  const SecAggParams params_;
  const int fraction_bits_;
  const NeighbourGraph graph_;
  Stage stage_ = Stage::kAdvertiseKeys;
  std::string failure_;

  std::map<uint32_t, KeyAdvertisement> keys_;                // U1.
  std::set<uint32_t> advertised_, shared_;                   // U1, U2.
  std::map<uint32_t, Key> commitments_;                      // Per U2 member.
  std::map<uint32_t, std::vector<EncryptedShare>> inboxes_;  // Receiver -> ciphertexts.
  std::map<uint32_t, uint64_t> received_words_;              // Stage 2 progress.
  std::vector<uint32_t> masked_;                             // U3 (sorted).
  std::set<uint32_t> masked_set_, unmasked_;                 // U3, U4.
  std::map<uint32_t, std::vector<Share>> self_mask_shares_;  // Owner in U3 -> shares.
  std::map<uint32_t, std::vector<Share>> mask_key_shares_;   // Owner in U2 \ U3 -> shares.
  // The masked sum modulo 2^b: sum32_ when b = 32, sum64_ when b = 64.
  std::vector<uint32_t> sum32_;
  std::vector<uint64_t> sum64_;
};

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_SERVER_H_
