#include "secagg/client.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace tally::secagg {

absl::StatusOr<SecAggClient> SecAggClient::CreateWithSecrets(const SecAggParams& params,
                                                             uint32_t self,
                                                             std::vector<uint32_t> neighbours,
                                                             const Key& c_sk, const Key& s_sk,
                                                             const Key& self_mask_seed) {
  if (absl::Status s = ValidateParams(params); !s.ok()) return s;
  if (self < 1 || self > params.num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("client index ", self, " outside 1..", params.num_clients));
  }
  std::sort(neighbours.begin(), neighbours.end());
  if (neighbours.size() != EffectiveDegree(params) ||
      std::adjacent_find(neighbours.begin(), neighbours.end()) != neighbours.end() ||
      std::count(neighbours.begin(), neighbours.end(), self) > 0 || neighbours.front() < 1 ||
      neighbours.back() > params.num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("neighbour list of client ", self, " is not ",
                                                   EffectiveDegree(params),
                                                   " distinct other clients of the instance"));
  }
  absl::StatusOr<X25519KeyPair> c = X25519FromPrivate(c_sk);
  if (!c.ok()) return c.status();
  absl::StatusOr<X25519KeyPair> s = X25519FromPrivate(s_sk);
  if (!s.ok()) return s.status();
  return SecAggClient(params, self, std::move(neighbours), *c, *s, self_mask_seed);
}

absl::StatusOr<SecAggClient> SecAggClient::Create(const SecAggParams& params, uint32_t self,
                                                  std::vector<uint32_t> neighbours) {
  absl::StatusOr<Key> c = RandomKey();
  absl::StatusOr<Key> s = RandomKey();
  absl::StatusOr<Key> b = RandomKey();
  if (!c.ok() || !s.ok() || !b.ok()) return absl::InternalError("no randomness for keys");
  return CreateWithSecrets(params, self, std::move(neighbours), *c, *s, *b);
}

absl::Status SecAggClient::Expect(Stage stage) const {
  if (stage_ == stage) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("secagg client ", self_, " is at stage ",
                                                    StageName(stage_), ", not ", StageName(stage)));
}

absl::Status SecAggClient::Fail(absl::Status status) {
  stage_ = Stage::kFailed;
  return status;
}

absl::StatusOr<KeyAdvertisement> SecAggClient::AdvertiseKeys() {
  if (absl::Status s = Expect(Stage::kAdvertiseKeys); !s.ok()) return s;
  stage_ = Stage::kShareKeys;
  return KeyAdvertisement{self_, c_.public_key, s_.public_key};
}

absl::StatusOr<ShareKeysMessage> SecAggClient::ShareKeys(
    absl::Span<const KeyAdvertisement> neighbour_keys) {
  if (absl::Status s = Expect(Stage::kShareKeys); !s.ok()) return s;
  std::set<Key> seen_keys = {c_.public_key, s_.public_key};
  for (const KeyAdvertisement& adv : neighbour_keys) {
    if (!std::binary_search(neighbours_.begin(), neighbours_.end(), adv.sender)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("keys of client ", adv.sender, ", not a neighbour of ", self_)));
    }
    if (keys_.count(adv.sender) > 0) {
      return Fail(
          absl::InvalidArgumentError(absl::StrCat("keys of client ", adv.sender, " given twice")));
    }
    // Repeated keys would let a server pair a client with itself.
    if (!seen_keys.insert(adv.c_pk).second || !seen_keys.insert(adv.s_pk).second) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("client ", adv.sender, " advertises a key already seen")));
    }
    keys_[adv.sender] = adv;
  }
  if (keys_.size() < params_.threshold) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "only ", keys_.size(), " neighbours advertised keys, fewer than t = ", params_.threshold)));
  }
  std::vector<uint32_t> xs;
  for (const auto& [v, adv] : keys_) xs.push_back(v);
  absl::StatusOr<std::vector<Share>> b_shares = ShamirSplit(b_, params_.threshold, xs);
  if (!b_shares.ok()) return Fail(b_shares.status());
  absl::StatusOr<std::vector<Share>> s_shares = ShamirSplit(s_.private_key, params_.threshold, xs);
  if (!s_shares.ok()) return Fail(s_shares.status());
  ShareKeysMessage msg;
  msg.sender = self_;
  msg.self_mask_commitment = Sha256(b_);
  for (size_t i = 0; i < xs.size(); ++i) {
    absl::StatusOr<Key> key = ChannelKey(c_.private_key, keys_[xs[i]].c_pk, params_.instance_id);
    if (!key.ok()) return Fail(key.status());
    absl::StatusOr<Bytes> sealed =
        Seal(*key, SharePlaintext(self_, xs[i], (*b_shares)[i], (*s_shares)[i]),
             AssociatedData(params_.instance_id, Stage::kShareKeys, self_, xs[i]));
    if (!sealed.ok()) return Fail(sealed.status());
    msg.shares.push_back(EncryptedShare{self_, xs[i], *std::move(sealed)});
  }
  stage_ = Stage::kMaskedInput;
  return msg;
}

absl::StatusOr<Bytes> SecAggClient::MaskedInput(absl::Span<const EncryptedShare> inbox,
                                                absl::Span<const float> x) {
  if (absl::Status s = Expect(Stage::kMaskedInput); !s.ok()) return s;
  for (const EncryptedShare& e : inbox) {
    auto adv = keys_.find(e.sender);
    if (e.receiver != self_ || adv == keys_.end() || held_.count(e.sender) > 0) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "share from ", e.sender, " to ", e.receiver, " is not one client ", self_,
          " expects (not addressed to it, not from a neighbour that advertised, or repeated)")));
    }
    absl::StatusOr<Key> key = ChannelKey(c_.private_key, adv->second.c_pk, params_.instance_id);
    if (!key.ok()) return Fail(key.status());
    absl::StatusOr<Bytes> plain =
        Open(*key, e.ciphertext,
             AssociatedData(params_.instance_id, Stage::kShareKeys, e.sender, self_));
    if (!plain.ok()) return Fail(plain.status());
    HeldShares held;
    absl::Status parsed =
        ParseSharePlaintext(*plain, e.sender, self_, &held.self_mask, &held.mask_key);
    if (!parsed.ok()) return Fail(parsed);
    held_[e.sender] = held;
  }
  if (held_.size() < params_.threshold) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "only ", held_.size(), " neighbours sent shares, fewer than t = ", params_.threshold)));
  }
  std::vector<MaskPartner> partners;
  for (const auto& [v, shares] : held_) partners.push_back(MaskPartner{v, keys_[v].s_pk});
  absl::StatusOr<Bytes> y = MaskInput(params_, self_, x, b_, s_.private_key, partners);
  if (!y.ok()) return Fail(y.status());
  stage_ = Stage::kUnmask;
  return y;
}

absl::StatusOr<UnmaskResponse> SecAggClient::Unmask(absl::Span<const uint32_t> survivors) {
  if (absl::Status s = Expect(Stage::kUnmask); !s.ok()) return s;
  if (!std::is_sorted(survivors.begin(), survivors.end()) ||
      std::adjacent_find(survivors.begin(), survivors.end()) != survivors.end() ||
      !std::binary_search(survivors.begin(), survivors.end(), self_)) {
    return Fail(absl::InvalidArgumentError(
        "survivor list is not sorted, has repeats, or omits this client"));
  }
  size_t surviving_partners = 0;
  UnmaskResponse response;
  response.sender = self_;
  for (const auto& [v, shares] : held_) {
    const bool survived = std::binary_search(survivors.begin(), survivors.end(), v);
    surviving_partners += survived;
    // The one rule that keeps a client private: never both shares of a
    // neighbour (b-share only for survivors, s-share only for dropouts).
    const Share& share = survived ? shares.self_mask : shares.mask_key;
    response.shares.push_back(RevealedShare{
        v, survived ? ShareKind::kSelfMask : ShareKind::kMaskKey, SerializeShareValues(share)});
  }
  if (surviving_partners < params_.threshold) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("only ", surviving_partners, " partners of client ", self_,
                     " survived: below the threshold, nothing revealed")));
  }
  stage_ = Stage::kDone;
  return response;
}

}  // namespace tally::secagg
