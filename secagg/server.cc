#include "secagg/server.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tally::secagg {
namespace {

template <typename Word>
void AddLittleEndian(Word* sum, const uint8_t* words, size_t count, int sign) {
  if (sign > 0) {
    for (size_t i = 0; i < count; ++i) {
      Word w;
      std::memcpy(&w, words + i * sizeof(Word), sizeof(Word));
      sum[i] += w;
    }
  } else {
    for (size_t i = 0; i < count; ++i) {
      Word w;
      std::memcpy(&w, words + i * sizeof(Word), sizeof(Word));
      sum[i] -= w;
    }
  }
}

bool IsLowOrder(const Key& public_key) {
  Key probe{};
  probe[0] = 9;  // Any private key: X25519 of a low-order point is 0 for all.
  return !X25519SharedSecret(probe, public_key).ok();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SecAggServer>> SecAggServer::Create(const SecAggParams& params,
                                                                   const Key& graph_seed) {
  if (absl::Status s = ValidateParams(params); !s.ok()) return s;
  absl::StatusOr<int> f = FractionBits(params);
  if (!f.ok()) return f.status();
  absl::StatusOr<NeighbourGraph> graph =
      NeighbourGraph::Create(params.num_clients, params.degree, graph_seed);
  if (!graph.ok()) return graph.status();
  auto server = std::unique_ptr<SecAggServer>(new SecAggServer(params, *f, *std::move(graph)));
  if (params.bits == 32) {
    server->sum32_.assign(params.vector_length, 0);
  } else {
    server->sum64_.assign(params.vector_length, 0);
  }
  return server;
}

absl::Status SecAggServer::FailInstance(absl::Status status) {
  stage_ = Stage::kFailed;
  failure_ = std::string(status.message());
  sum32_.clear();  // Nothing of the masked sum survives a failure.
  sum64_.clear();
  return status;
}

absl::Status SecAggServer::CheckSender(uint32_t sender, Stage stage,
                                       const std::set<uint32_t>* previous) const {
  if (stage_ == Stage::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("secure aggregation instance ", params_.instance_id, " failed: ", failure_));
  }
  if (sender < 1 || sender > params_.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("client index ", sender, " outside 1..", params_.num_clients));
  }
  if (stage_ != stage) {
    return absl::FailedPreconditionError(absl::StrCat("instance is at stage ", StageName(stage_),
                                                      ", the message is for ", StageName(stage)));
  }
  if (previous != nullptr && previous->count(sender) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", sender, " dropped out before stage ", StageName(stage)));
  }
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseStage(const std::set<uint32_t>& in, Stage next,
                                      absl::string_view what) {
  if (in.size() < params_.threshold) {
    return FailInstance(absl::FailedPreconditionError(
        absl::StrCat("only ", in.size(), " of ", params_.num_clients, " clients ", what,
                     ", fewer than the threshold t = ", params_.threshold)));
  }
  stage_ = next;
  return absl::OkStatus();
}

absl::Status SecAggServer::ReceiveKeys(const KeyAdvertisement& message) {
  TALLY_RETURN_IF_ERROR(CheckSender(message.sender, Stage::kAdvertiseKeys, nullptr));
  if (advertised_.count(message.sender) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", message.sender, " already advertised its keys"));
  }
  if (message.c_pk == message.s_pk || IsLowOrder(message.c_pk) || IsLowOrder(message.s_pk)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client ", message.sender, ": its two public keys must be distinct valid X25519 keys"));
  }
  for (const auto& [other, adv] : keys_) {
    for (const Key& k : {adv.c_pk, adv.s_pk}) {
      if (k == message.c_pk || k == message.s_pk) {
        return absl::InvalidArgumentError(
            absl::StrCat("client ", message.sender, " reuses a public key of client ", other));
      }
    }
  }
  keys_[message.sender] = message;
  advertised_.insert(message.sender);
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseAdvertiseKeys() {
  TALLY_RETURN_IF_ERROR(CheckSender(1, Stage::kAdvertiseKeys, nullptr));
  return CloseStage(advertised_, Stage::kShareKeys, "advertised keys");
}

absl::StatusOr<std::vector<KeyAdvertisement>> SecAggServer::KeysFor(uint32_t client) const {
  if (stage_ != Stage::kShareKeys || advertised_.count(client) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no keys for client ", client, " at stage ", StageName(stage_)));
  }
  std::vector<KeyAdvertisement> out;
  for (uint32_t v : graph_.Neighbours(client)) {
    if (auto it = keys_.find(v); it != keys_.end()) out.push_back(it->second);
  }
  return out;
}

absl::Status SecAggServer::ReceiveShares(const ShareKeysMessage& message) {
  const uint32_t u = message.sender;
  TALLY_RETURN_IF_ERROR(CheckSender(u, Stage::kShareKeys, &advertised_));
  if (shared_.count(u) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("client ", u, " already sent its shares"));
  }
  std::set<uint32_t> expected;
  for (uint32_t v : graph_.Neighbours(u)) {
    if (advertised_.count(v) > 0) expected.insert(v);
  }
  std::set<uint32_t> seen;
  for (const EncryptedShare& e : message.shares) {
    if (e.sender != u || expected.count(e.receiver) == 0 || !seen.insert(e.receiver).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("client ", u, " sent a share from ", e.sender, " to ", e.receiver,
                       ": not one per neighbour that advertised keys"));
    }
    if (e.ciphertext.size() != kShareCiphertextBytes) {
      return absl::InvalidArgumentError(absl::StrCat("client ", u, "'s share for ", e.receiver,
                                                     " is ", e.ciphertext.size(),
                                                     " bytes, expected ", kShareCiphertextBytes));
    }
  }
  if (seen.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("client ", u, " sent ", seen.size(),
                                                   " shares for ", expected.size(),
                                                   " neighbours that advertised keys"));
  }
  for (const EncryptedShare& e : message.shares) inboxes_[e.receiver].push_back(e);
  commitments_[u] = message.self_mask_commitment;
  shared_.insert(u);
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseShareKeys() {
  TALLY_RETURN_IF_ERROR(CheckSender(1, Stage::kShareKeys, nullptr));
  return CloseStage(shared_, Stage::kMaskedInput, "sent their shares");
}

absl::StatusOr<std::vector<EncryptedShare>> SecAggServer::InboxFor(uint32_t client) const {
  if (stage_ != Stage::kMaskedInput || shared_.count(client) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no shares for client ", client, " at stage ", StageName(stage_)));
  }
  auto it = inboxes_.find(client);
  return it == inboxes_.end() ? std::vector<EncryptedShare>() : it->second;
}

absl::Status SecAggServer::AddWords(absl::Span<const uint8_t> words, uint64_t word_offset,
                                    int sign) {
  const size_t count = words.size() / (params_.bits / 8);
  if (params_.bits == 32) {
    AddLittleEndian(sum32_.data() + word_offset, words.data(), count, sign);
  } else {
    AddLittleEndian(sum64_.data() + word_offset, words.data(), count, sign);
  }
  return absl::OkStatus();
}

absl::Status SecAggServer::ReceiveMaskedChunk(uint32_t sender, uint64_t word_offset,
                                              absl::Span<const uint8_t> words) {
  TALLY_RETURN_IF_ERROR(CheckSender(sender, Stage::kMaskedInput, &shared_));
  const size_t word = params_.bits / 8;
  if (words.empty() || words.size() % word != 0) {
    return absl::InvalidArgumentError(absl::StrCat("masked chunk of ", words.size(),
                                                   " bytes is not a positive number of ",
                                                   params_.bits, "-bit words"));
  }
  const uint64_t count = words.size() / word;
  uint64_t& received = received_words_[sender];
  if (word_offset + count <= received) {
    return absl::AlreadyExistsError(absl::StrCat("client ", sender, "'s masked words [",
                                                 word_offset, ", ", word_offset + count,
                                                 ") were already received"));
  }
  if (word_offset != received) {
    return absl::InvalidArgumentError(absl::StrCat("client ", sender, "'s masked chunk starts at ",
                                                   word_offset, ", expected ", received));
  }
  if (received + count > params_.vector_length) {
    return absl::InvalidArgumentError(absl::StrCat("client ", sender,
                                                   "'s masked input is longer than the instance's ",
                                                   params_.vector_length, " values"));
  }
  TALLY_RETURN_IF_ERROR(AddWords(words, word_offset, +1));
  received += count;
  return absl::OkStatus();
}

absl::Status SecAggServer::RetractMaskedChunk(uint32_t sender, uint64_t word_offset,
                                              absl::Span<const uint8_t> words) {
  TALLY_RETURN_IF_ERROR(CheckSender(sender, Stage::kMaskedInput, &shared_));
  const size_t word = params_.bits / 8;
  auto it = received_words_.find(sender);
  if (words.empty() || words.size() % word != 0 || it == received_words_.end() ||
      word_offset + words.size() / word != it->second) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retraction of client ", sender, "'s masked words must end at what was received"));
  }
  TALLY_RETURN_IF_ERROR(AddWords(words, word_offset, -1));
  it->second = word_offset;
  return absl::OkStatus();
}

absl::Status SecAggServer::CloseMaskedInput() {
  TALLY_RETURN_IF_ERROR(CheckSender(1, Stage::kMaskedInput, nullptr));
  for (const auto& [client, received] : received_words_) {
    if (received > 0 && received < params_.vector_length) {
      return absl::FailedPreconditionError(
          absl::StrCat("client ", client, "'s masked input is partial (", received, " of ",
                       params_.vector_length, " values): retract it before closing the stage"));
    }
  }
  for (const auto& [client, received] : received_words_) {
    if (received == params_.vector_length) masked_set_.insert(client);
  }
  masked_.assign(masked_set_.begin(), masked_set_.end());
  return CloseStage(masked_set_, Stage::kUnmask, "sent their masked input");
}

absl::Status SecAggServer::ReceiveUnmask(const UnmaskResponse& message) {
  const uint32_t u = message.sender;
  TALLY_RETURN_IF_ERROR(CheckSender(u, Stage::kUnmask, &masked_set_));
  if (unmasked_.count(u) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("client ", u, " already sent its unmasking"));
  }
  std::set<uint32_t> expected;  // Partners of u: neighbours that sent shares.
  for (uint32_t v : graph_.Neighbours(u)) {
    if (shared_.count(v) > 0) expected.insert(v);
  }
  std::set<uint32_t> seen;
  std::vector<std::pair<const RevealedShare*, Share>> parsed;
  for (const RevealedShare& r : message.shares) {
    if (expected.count(r.owner) == 0 || !seen.insert(r.owner).second) {
      return absl::InvalidArgumentError(absl::StrCat("client ", u, " reveals a share of client ",
                                                     r.owner, ": not a partner of it, or twice"));
    }
    const ShareKind want = masked_set_.count(r.owner) ? ShareKind::kSelfMask : ShareKind::kMaskKey;
    if (r.kind != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("client ", u, " reveals the wrong kind of share of client ", r.owner));
    }
    absl::StatusOr<Share> share = ParseShareValues(u, r.values);
    if (!share.ok()) return share.status();
    parsed.emplace_back(&r, *share);
  }
  if (seen.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("client ", u, " reveals ", seen.size(),
                                                   " shares, expected ", expected.size()));
  }
  for (const auto& [r, share] : parsed) {
    (r->kind == ShareKind::kSelfMask ? self_mask_shares_ : mask_key_shares_)[r->owner].push_back(
        share);
  }
  unmasked_.insert(u);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<Key, int>>> SecAggServer::RecoverSeeds() {
  std::vector<std::pair<Key, int>> seeds;  // (PRG seed, sign to apply to the sum).
  for (uint32_t u : masked_) {
    absl::StatusOr<Key> b = ShamirReconstruct(self_mask_shares_[u], params_.threshold);
    if (!b.ok()) {
      return absl::Status(b.status().code(),
                          absl::StrCat("self-mask seed of client ", u, ": ", b.status().message()));
    }
    if (Sha256(*b) != commitments_[u]) {
      return absl::DataLossError(absl::StrCat("the reconstructed self-mask seed of client ", u,
                                              " contradicts its commitment (forged shares)"));
    }
    seeds.emplace_back(*b, -1);
  }
  for (uint32_t v : shared_) {
    if (masked_set_.count(v) > 0) continue;
    absl::StatusOr<Key> s_sk = ShamirReconstruct(mask_key_shares_[v], params_.threshold);
    if (!s_sk.ok()) {
      return absl::Status(s_sk.status().code(), absl::StrCat("mask key of dropped client ", v, ": ",
                                                             s_sk.status().message()));
    }
    absl::StatusOr<X25519KeyPair> pair = X25519FromPrivate(*s_sk);
    if (!pair.ok() || pair->public_key != keys_[v].s_pk) {
      return absl::DataLossError(absl::StrCat("the reconstructed mask key of client ", v,
                                              " does not match its public key (forged shares)"));
    }
    for (uint32_t u : graph_.Neighbours(v)) {
      if (masked_set_.count(u) == 0) continue;
      absl::StatusOr<Key> seed = PairwiseSeed(*s_sk, keys_[u].s_pk, params_.instance_id);
      if (!seed.ok()) return seed.status();
      seeds.emplace_back(*seed, -PairSign(u, v));  // y_u holds PairSign(u, v) * PRG(s_uv).
    }
  }
  return seeds;
}

template <typename Word>
absl::Status SecAggServer::RemoveMasks(std::vector<Word>& sum,
                                       const std::vector<std::pair<Key, int>>& seeds) {
  std::vector<Prg> prgs;
  for (const auto& [seed, sign] : seeds) {
    absl::StatusOr<Prg> prg = Prg::Create(seed);
    if (!prg.ok()) return prg.status();
    prgs.push_back(*std::move(prg));
  }
  constexpr size_t kChunk = kUnmaskChunkBytes / sizeof(Word);
  for (size_t offset = 0; offset < sum.size(); offset += kChunk) {
    absl::Span<Word> chunk(sum.data() + offset, std::min(kChunk, sum.size() - offset));
    for (size_t i = 0; i < prgs.size(); ++i) {
      TALLY_RETURN_IF_ERROR(AddPrgWords<Word>(prgs[i], seeds[i].second, offset, chunk));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Bytes> SecAggServer::Finish() {
  TALLY_RETURN_IF_ERROR(CheckSender(1, Stage::kUnmask, nullptr));
  if (unmasked_.size() < params_.threshold) {
    return FailInstance(absl::FailedPreconditionError(
        absl::StrCat("only ", unmasked_.size(),
                     " clients sent their unmasking shares, fewer than t = ", params_.threshold)));
  }
  absl::StatusOr<std::vector<std::pair<Key, int>>> seeds = RecoverSeeds();
  if (!seeds.ok()) return FailInstance(seeds.status());
  absl::Status removed =
      params_.bits == 32 ? RemoveMasks(sum32_, *seeds) : RemoveMasks(sum64_, *seeds);
  if (!removed.ok()) return FailInstance(removed);
  Bytes out;
  if (params_.bits == 32) {
    out.resize(sum32_.size() * 4);
    std::memcpy(out.data(), sum32_.data(), out.size());
  } else {
    out.resize(sum64_.size() * 8);
    std::memcpy(out.data(), sum64_.data(), out.size());
  }
  stage_ = Stage::kDone;
  return out;
}

SecAggServer::Counts SecAggServer::counts() const {
  return Counts{params_.num_clients, advertised_.size(), shared_.size(), masked_set_.size(),
                unmasked_.size()};
}

}  // namespace tally::secagg
