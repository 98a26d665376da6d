// tally-secagg-vectors: secure aggregation's C++ primitives and client
// (secagg/) on text, so that the Python SDK (client/python/tally/secagg.py)
// can check it produces the same bytes and that masks made by either SDK
// cancel in one sum (client/python/tests/test_secagg_vectors.py).
//
//   tally-secagg-vectors write FILE   writes vectors from fixed inputs
//   tally-secagg-vectors check FILE   recomputes / opens / reconstructs the
//                                     vectors another SDK wrote; prints one
//                                     line per mismatch, exits 1 if any
//   tally-secagg-vectors client       one C++ SecAggClient driven over
//                                     stdin/stdout (protocol below)
//
// A vector line is "<kind> key=value ..." with bytes in hex, lists as
// comma-separated values:
//   x25519 a= b= a_pub= b_pub= shared=
//   hkdf ikm= salt= info= length= okm=
//   aead key= nonce= plain= aad= sealed=      (fixed nonce: compared)
//   aead_open key= plain= aad= sealed=        (random nonce: opened)
//   prg seed= offset= count= bytes=
//   words seed= bits= offset= count= words=   (PRG words added to zeros)
//   perm seed= n= p=
//   shamir secret= t= xs= shares=             (64 bytes per share)
//   derive own= peer= instance= channel= mask=
//   mask instance= n= k= t= bits= clip= self= b= s_sk= partners=i:pk,... x= y=
//
// The client protocol (one request line, then reply lines):
//   init INSTANCE N K T BITS CLIP LENGTH SELF NEIGHBOURS -> keys C_PK S_PK
//   share_keys M, then M lines "adv SENDER C_PK S_PK"
//     -> commitment HEX, M' lines "share RECEIVER HEX", end
//   masked_input M X_HEX, then M lines "share SENDER RECEIVER HEX" -> masked HEX
//   unmask SURVIVORS -> lines "reveal OWNER KIND HEX", end
// A refusal replies "error CODE MESSAGE".
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "secagg/client.h"
#include "secagg/crypto.h"
#include "secagg/protocol.h"
#include "secagg/shamir.h"

namespace tally::secagg {
namespace {

using Fields = std::map<std::string, std::string>;

Fields ParseFields(const std::vector<std::string>& tokens) {
  Fields f;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const size_t eq = tokens[i].find('=');
    if (eq != std::string::npos) f[tokens[i].substr(0, eq)] = tokens[i].substr(eq + 1);
  }
  return f;
}

Bytes H(const std::string& hex) { return FromHex(hex).value(); }
Key K(const std::string& hex) {
  Bytes b = H(hex);
  Key k{};
  if (b.size() == k.size()) std::memcpy(k.data(), b.data(), k.size());
  return k;
}
uint64_t U(const std::string& s) {
  uint64_t v = 0;
  (void)absl::SimpleAtoi(s, &v);
  return v;
}
std::vector<uint32_t> List(const std::string& s) {
  std::vector<uint32_t> out;
  for (absl::string_view p : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    uint32_t v = 0;
    (void)absl::SimpleAtoi(p, &v);
    out.push_back(v);
  }
  return out;
}
Key Counting(uint8_t start) {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(start + 13 * i);
  return k;
}

std::vector<float> Floats(const Bytes& b) {
  std::vector<float> x(b.size() / 4);
  std::memcpy(x.data(), b.data(), x.size() * 4);
  return x;
}

SecAggParams MaskParams(Fields& f) {
  double clip = 0;
  (void)absl::SimpleAtod(f["clip"], &clip);
  return SecAggParams{U(f["instance"]),
                      static_cast<uint32_t>(U(f["n"])),
                      static_cast<uint32_t>(U(f["k"])),
                      static_cast<uint32_t>(U(f["t"])),
                      static_cast<int>(U(f["bits"])),
                      clip,
                      H(f["x"]).size() / 4};
}

absl::StatusOr<Bytes> Mask(Fields& f) {
  const SecAggParams p = MaskParams(f);
  std::vector<MaskPartner> partners;
  for (absl::string_view item : absl::StrSplit(f["partners"], ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(item, ':');
    partners.push_back(MaskPartner{static_cast<uint32_t>(U(kv[0])), K(kv[1])});
  }
  return MaskInput(p, static_cast<uint32_t>(U(f["self"])), Floats(H(f["x"])), K(f["b"]),
                   K(f["s_sk"]), partners);
}

absl::StatusOr<Bytes> PrgBytes(const Key& seed, uint64_t offset, size_t count) {
  absl::StatusOr<Prg> prg = Prg::Create(seed);
  if (!prg.ok()) return prg.status();
  Bytes out(count);
  absl::Status s = prg->Generate(offset, absl::MakeSpan(out));
  if (!s.ok()) return s;
  return out;
}

Bytes PrgWords(const Key& seed, int bits, uint64_t offset, size_t count) {
  Bytes out(count * bits / 8);
  if (bits == 32) {
    std::vector<uint32_t> w(count, 0);
    (void)AddPrgWords<uint32_t>(seed, +1, offset, absl::MakeSpan(w));
    std::memcpy(out.data(), w.data(), out.size());
  } else {
    std::vector<uint64_t> w(count, 0);
    (void)AddPrgWords<uint64_t>(seed, +1, offset, absl::MakeSpan(w));
    std::memcpy(out.data(), w.data(), out.size());
  }
  return out;
}

std::string ShareHex(const std::vector<Share>& shares) {
  std::string out;
  for (const Share& s : shares) out += ToHex(SerializeShareValues(s));
  return out;
}

int Write(const std::string& path) {
  std::ofstream out(path);
  const Key a = Counting(1), b = Counting(2);
  const X25519KeyPair pa = X25519FromPrivate(a).value(), pb = X25519FromPrivate(b).value();
  out << "x25519 a=" << ToHex(a) << " b=" << ToHex(b) << " a_pub=" << ToHex(pa.public_key)
      << " b_pub=" << ToHex(pb.public_key)
      << " shared=" << ToHex(X25519SharedSecret(a, pb.public_key).value()) << "\n";
  const Bytes ikm = H("00112233445566778899"), salt = H("a0a1a2"), info = H("696e666f");
  out << "hkdf ikm=" << ToHex(ikm) << " salt=" << ToHex(salt) << " info=" << ToHex(info)
      << " length=77 okm=" << ToHex(HkdfSha256(ikm, salt, info, 77).value()) << "\n";
  const Key key = Counting(3);
  const Bytes nonce = H("000102030405060708090a0b"), plain = H("48656c6c6f2c20736563616767"),
              aad = AssociatedData(77, Stage::kShareKeys, 3, 5);
  out << "aead key=" << ToHex(key) << " nonce=" << ToHex(nonce) << " plain=" << ToHex(plain)
      << " aad=" << ToHex(aad) << " sealed=" << ToHex(SealWithNonce(key, nonce, plain, aad).value())
      << "\n";
  out << "aead_open key=" << ToHex(key) << " plain=" << ToHex(plain) << " aad=" << ToHex(aad)
      << " sealed=" << ToHex(Seal(key, plain, aad).value()) << "\n";
  for (uint64_t offset : {0ull, 5ull, 1000003ull}) {
    out << "prg seed=" << ToHex(Counting(4)) << " offset=" << offset
        << " count=100 bytes=" << ToHex(PrgBytes(Counting(4), offset, 100).value()) << "\n";
  }
  for (int bits : {32, 64}) {
    out << "words seed=" << ToHex(Counting(5)) << " bits=" << bits << " offset=16383 count=40000"
        << " words=" << ToHex(PrgWords(Counting(5), bits, 16383, 40000)) << "\n";
  }
  out << "perm seed=" << ToHex(Counting(6))
      << " n=50 p=" << absl::StrJoin(SeededPermutation(Counting(6), 50).value(), ",") << "\n";
  const std::vector<uint32_t> xs = {2, 3, 5, 8, 13};
  out << "shamir secret=" << ToHex(Counting(7)) << " t=3 xs=" << absl::StrJoin(xs, ",")
      << " shares=" << ShareHex(ShamirSplit(Counting(7), 3, xs).value()) << "\n";
  out << "derive own=" << ToHex(a) << " peer=" << ToHex(pb.public_key) << " instance=99"
      << " channel=" << ToHex(ChannelKey(a, pb.public_key, 99).value())
      << " mask=" << ToHex(PairwiseSeed(a, pb.public_key, 99).value()) << "\n";
  for (int bits : {32, 64}) {
    std::vector<float> x = {0.5f, -0.25f, 3.0f, -100.0f, 1e-9f, 0x1p-30f, 0x3p-30f, -2.5f};
    for (int i = 0; i < 200; ++i) x.push_back(static_cast<float>(i % 17) * 0.37f - 3.0f);
    Fields f = {{"instance", "4242"},
                {"n", "6"},
                {"k", "4"},
                {"t", "3"},
                {"bits", std::to_string(bits)},
                {"clip", "4"},
                {"self", "3"},
                {"b", ToHex(Counting(8))},
                {"s_sk", ToHex(Counting(9))},
                {"x", ToHex(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(x.data()),
                                                x.size() * 4))}};
    std::string partners;
    for (uint32_t v : {1u, 2u, 5u, 6u}) {
      absl::StrAppend(&partners, partners.empty() ? "" : ",", v, ":",
                      ToHex(X25519FromPrivate(Counting(20 + v)).value().public_key));
    }
    f["partners"] = partners;
    const Bytes y = Mask(f).value();
    out << "mask";
    for (const auto& [k, v] : f) out << " " << k << "=" << v;
    out << " y=" << ToHex(y) << "\n";
  }
  return out.good() ? 0 : 2;
}

// One check: empty when it passes, else what differs.
std::string CheckLine(const std::string& kind, Fields& f) {
  auto eq = [](const std::string& what, const std::string& got, const std::string& want) {
    return got == want ? std::string() : absl::StrCat(what, ": got ", got, ", want ", want);
  };
  if (kind == "x25519") {
    const X25519KeyPair pa = X25519FromPrivate(K(f["a"])).value();
    return eq("a_pub", ToHex(pa.public_key), f["a_pub"]) +
           eq("shared", ToHex(X25519SharedSecret(K(f["a"]), K(f["b_pub"])).value()), f["shared"]);
  }
  if (kind == "hkdf") {
    return eq("okm",
              ToHex(HkdfSha256(H(f["ikm"]), H(f["salt"]), H(f["info"]), U(f["length"])).value()),
              f["okm"]);
  }
  if (kind == "aead") {
    return eq("sealed",
              ToHex(SealWithNonce(K(f["key"]), H(f["nonce"]), H(f["plain"]), H(f["aad"])).value()),
              f["sealed"]);
  }
  if (kind == "aead_open") {
    absl::StatusOr<Bytes> p = Open(K(f["key"]), H(f["sealed"]), H(f["aad"]));
    return p.ok() ? eq("plain", ToHex(*p), f["plain"]) : p.status().ToString();
  }
  if (kind == "prg") {
    return eq("bytes", ToHex(PrgBytes(K(f["seed"]), U(f["offset"]), U(f["count"])).value()),
              f["bytes"]);
  }
  if (kind == "words") {
    return eq("words",
              ToHex(PrgWords(K(f["seed"]), static_cast<int>(U(f["bits"])), U(f["offset"]),
                             U(f["count"]))),
              f["words"]);
  }
  if (kind == "perm") {
    return eq("p", absl::StrJoin(SeededPermutation(K(f["seed"]), U(f["n"])).value(), ","), f["p"]);
  }
  if (kind == "shamir") {
    const std::vector<uint32_t> xs = List(f["xs"]);
    const Bytes all = H(f["shares"]);
    std::vector<Share> shares;
    for (size_t i = 0; i < xs.size(); ++i) {
      shares.push_back(
          ParseShareValues(xs[i], absl::MakeConstSpan(all).subspan(64 * i, 64)).value());
    }
    const uint32_t t = static_cast<uint32_t>(U(f["t"]));
    absl::StatusOr<Key> all_shares = ShamirReconstruct(shares, t);
    absl::StatusOr<Key> last_t =
        ShamirReconstruct(absl::MakeConstSpan(shares).subspan(shares.size() - t), t);
    absl::StatusOr<Key> too_few =
        ShamirReconstruct(absl::MakeConstSpan(shares).subspan(0, t - 1), t);
    if (!all_shares.ok() || !last_t.ok()) return "shamir: reconstruction failed";
    return eq("secret", ToHex(*all_shares), f["secret"]) +
           eq("secret (last t)", ToHex(*last_t), f["secret"]) +
           (too_few.ok() ? "shamir: t - 1 shares reconstructed" : "");
  }
  if (kind == "derive") {
    return eq("channel", ToHex(ChannelKey(K(f["own"]), K(f["peer"]), U(f["instance"])).value()),
              f["channel"]) +
           eq("mask", ToHex(PairwiseSeed(K(f["own"]), K(f["peer"]), U(f["instance"])).value()),
              f["mask"]);
  }
  if (kind == "mask") {
    absl::StatusOr<Bytes> y = Mask(f);
    return y.ok() ? eq("y", ToHex(*y), f["y"]) : y.status().ToString();
  }
  return "unknown vector kind " + kind;
}

int Check(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int failures = 0, checked = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> tokens = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (tokens.empty() || tokens[0][0] == '#') continue;
    Fields f = ParseFields(tokens);
    const std::string problem = CheckLine(tokens[0], f);
    ++checked;
    if (!problem.empty()) {
      ++failures;
      std::cout << tokens[0] << ": " << problem << "\n";
    }
  }
  std::cout << checked << " vectors checked, " << failures << " mismatches\n";
  return failures == 0 && checked > 0 ? 0 : 1;
}

void Reply(const absl::Status& s) {
  std::cout << "error " << absl::StatusCodeToString(s.code()) << " " << s.message() << std::endl;
}

int RunClient() {
  std::optional<SecAggClient> client;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::string> t = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (t.empty()) continue;
    if (t[0] == "init" && t.size() == 10) {
      double clip = 0;
      (void)absl::SimpleAtod(t[6], &clip);
      const SecAggParams p{U(t[1]),
                           static_cast<uint32_t>(U(t[2])),
                           static_cast<uint32_t>(U(t[3])),
                           static_cast<uint32_t>(U(t[4])),
                           static_cast<int>(U(t[5])),
                           clip,
                           U(t[7])};
      absl::StatusOr<SecAggClient> c =
          SecAggClient::Create(p, static_cast<uint32_t>(U(t[8])), List(t[9]));
      if (!c.ok()) {
        Reply(c.status());
        continue;
      }
      client.emplace(*std::move(c));
      absl::StatusOr<KeyAdvertisement> adv = client->AdvertiseKeys();
      std::cout << "keys " << ToHex(adv->c_pk) << " " << ToHex(adv->s_pk) << std::endl;
    } else if (t[0] == "share_keys" && client) {
      std::vector<KeyAdvertisement> keys;
      for (uint64_t i = 0, m = U(t[1]); i < m && std::getline(std::cin, line); ++i) {
        std::vector<std::string> a = absl::StrSplit(line, ' ');
        keys.push_back(KeyAdvertisement{static_cast<uint32_t>(U(a[1])), K(a[2]), K(a[3])});
      }
      absl::StatusOr<ShareKeysMessage> msg = client->ShareKeys(keys);
      if (!msg.ok()) {
        Reply(msg.status());
        continue;
      }
      std::cout << "commitment " << ToHex(msg->self_mask_commitment) << "\n";
      for (const EncryptedShare& e : msg->shares) {
        std::cout << "share " << e.receiver << " " << ToHex(e.ciphertext) << "\n";
      }
      std::cout << "end" << std::endl;
    } else if (t[0] == "masked_input" && client && t.size() == 3) {
      std::vector<EncryptedShare> inbox;
      for (uint64_t i = 0, m = U(t[1]); i < m && std::getline(std::cin, line); ++i) {
        std::vector<std::string> a = absl::StrSplit(line, ' ');
        inbox.push_back(EncryptedShare{static_cast<uint32_t>(U(a[1])),
                                       static_cast<uint32_t>(U(a[2])), H(a[3])});
      }
      absl::StatusOr<Bytes> y = client->MaskedInput(inbox, Floats(H(t[2])));
      if (!y.ok()) {
        Reply(y.status());
        continue;
      }
      std::cout << "masked " << ToHex(*y) << std::endl;
    } else if (t[0] == "unmask" && client && t.size() == 2) {
      absl::StatusOr<UnmaskResponse> r = client->Unmask(List(t[1]));
      if (!r.ok()) {
        Reply(r.status());
        continue;
      }
      for (const RevealedShare& s : r->shares) {
        std::cout << "reveal " << s.owner << " " << static_cast<int>(s.kind) << " "
                  << ToHex(s.values) << "\n";
      }
      std::cout << "end" << std::endl;
    } else {
      Reply(absl::InvalidArgumentError("unknown or malformed request: " + t[0]));
    }
  }
  return 0;
}

}  // namespace
}  // namespace tally::secagg

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "write" && argc == 3) return tally::secagg::Write(argv[2]);
  if (mode == "check" && argc == 3) return tally::secagg::Check(argv[2]);
  if (mode == "client" && argc == 2) return tally::secagg::RunClient();
  std::fprintf(stderr, "usage: tally-secagg-vectors write FILE | check FILE | client\n");
  return 2;
}
