#include "secagg/protocol.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace tally::secagg {
namespace {

constexpr char kDomain[] = "tally-secagg/1";

void PutU32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t GetU32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

absl::StatusOr<Key> DeriveKey(const Key& own_private, const Key& peer_public, uint64_t instance_id,
                              absl::string_view label) {
  absl::StatusOr<Key> shared = X25519SharedSecret(own_private, peer_public);
  if (!shared.ok()) return shared.status();
  Bytes info(label.begin(), label.end());
  PutU64(info, instance_id);
  return HkdfSha256Key(*shared, info);
}

}  // namespace

const char* StageName(Stage stage) {
  switch (stage) {
    case Stage::kAdvertiseKeys:
      return "advertise_keys";
    case Stage::kShareKeys:
      return "share_keys";
    case Stage::kMaskedInput:
      return "masked_input";
    case Stage::kUnmask:
      return "unmask";
    case Stage::kDone:
      return "done";
    case Stage::kFailed:
      return "failed";
  }
  return "unknown";
}

Bytes AssociatedData(uint64_t instance_id, Stage stage, uint32_t sender, uint32_t receiver) {
  Bytes out(kDomain, kDomain + sizeof(kDomain) - 1);
  PutU64(out, instance_id);
  out.push_back(static_cast<uint8_t>(stage));
  PutU32(out, sender);
  PutU32(out, receiver);
  return out;
}

absl::StatusOr<Key> ChannelKey(const Key& own_private, const Key& peer_public,
                               uint64_t instance_id) {
  return DeriveKey(own_private, peer_public, instance_id, "tally-secagg/1 channel");
}

absl::StatusOr<Key> PairwiseSeed(const Key& own_private, const Key& peer_public,
                                 uint64_t instance_id) {
  return DeriveKey(own_private, peer_public, instance_id, "tally-secagg/1 mask");
}

Bytes SharePlaintext(uint32_t sender, uint32_t receiver, const Share& self_mask_share,
                     const Share& mask_key_share) {
  Bytes out;
  out.reserve(kSharePlaintextBytes);
  PutU32(out, sender);
  PutU32(out, receiver);
  for (const Share* s : {&self_mask_share, &mask_key_share}) {
    Bytes v = SerializeShareValues(*s);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

absl::Status ParseSharePlaintext(absl::Span<const uint8_t> plaintext, uint32_t sender,
                                 uint32_t receiver, Share* self_mask_share, Share* mask_key_share) {
  if (plaintext.size() != kSharePlaintextBytes) {
    return absl::InvalidArgumentError(absl::StrCat("share plaintext of ", plaintext.size(),
                                                   " bytes, expected ", kSharePlaintextBytes));
  }
  if (GetU32(plaintext.data()) != sender || GetU32(plaintext.data() + 4) != receiver) {
    return absl::InvalidArgumentError(
        absl::StrCat("share plaintext names sender ", GetU32(plaintext.data()), " and receiver ",
                     GetU32(plaintext.data() + 4), ", expected ", sender, " and ", receiver));
  }
  absl::StatusOr<Share> b = ParseShareValues(receiver, plaintext.subspan(8, kShareBytes));
  if (!b.ok()) return b.status();
  absl::StatusOr<Share> s =
      ParseShareValues(receiver, plaintext.subspan(8 + kShareBytes, kShareBytes));
  if (!s.ok()) return s.status();
  *self_mask_share = *b;
  *mask_key_share = *s;
  return absl::OkStatus();
}

template <typename Word>
absl::StatusOr<Bytes> MaskWords(const SecAggParams& params, uint32_t self,
                                absl::Span<const float> x, const Key& self_mask_seed,
                                const Key& mask_private_key,
                                absl::Span<const MaskPartner> partners) {
  absl::StatusOr<int> f = FractionBits(params);
  if (!f.ok()) return f.status();
  std::vector<Word> y(x.size());
  absl::Span<uint8_t> y_bytes(reinterpret_cast<uint8_t*>(y.data()), y.size() * sizeof(Word));
  if (absl::Status s = Quantize(params, *f, x, y_bytes); !s.ok()) return s;
  if (absl::Status s = AddPrgWords<Word>(self_mask_seed, +1, 0, absl::MakeSpan(y)); !s.ok()) {
    return s;
  }
  for (const MaskPartner& v : partners) {
    if (v.index == self) return absl::InvalidArgumentError("a client is not its own partner");
    absl::StatusOr<Key> seed = PairwiseSeed(mask_private_key, v.s_pk, params.instance_id);
    if (!seed.ok()) return seed.status();
    absl::Status s = AddPrgWords<Word>(*seed, PairSign(self, v.index), 0, absl::MakeSpan(y));
    if (!s.ok()) return s;
  }
  return Bytes(y_bytes.begin(), y_bytes.end());
}

absl::StatusOr<Bytes> MaskInput(const SecAggParams& params, uint32_t self,
                                absl::Span<const float> x, const Key& self_mask_seed,
                                const Key& mask_private_key,
                                absl::Span<const MaskPartner> partners) {
  if (x.size() != params.vector_length) {
    return absl::InvalidArgumentError(absl::StrCat("input of ", x.size(), " values, the instance ",
                                                   "expects ", params.vector_length));
  }
  if (params.bits == 32) {
    return MaskWords<uint32_t>(params, self, x, self_mask_seed, mask_private_key, partners);
  }
  return MaskWords<uint64_t>(params, self, x, self_mask_seed, mask_private_key, partners);
}

}  // namespace tally::secagg
