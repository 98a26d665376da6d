// The SecAgg+ core (secagg/client.h, secagg/server.h) in process: N simulated
// clients and the server's stage machine. Inputs are multiples of 2^-10 in
// [-8, 8], so their fixed-point values m * 2^(f - 10) are exact and the
// expected sums are integer arithmetic done here, independently of the code
// under test. Covers dropouts at every stage, failure below the threshold,
// hostile clients (replays, malformed shares, wrong lengths, forged shares)
// and a hostile server as seen by a client.
#include <cstring>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "secagg/client.h"
#include "secagg/params.h"
#include "secagg/server.h"
#include "tests/status_matchers.h"

namespace tally::secagg {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;
using Code = absl::StatusCode;

// A round driver: clients[i] is client i + 1. drop_at[i] is the first stage
// client i + 1 sends nothing in (Stage::kDone: it never drops).
struct Round {
  SecAggParams params;
  std::unique_ptr<SecAggServer> server;
  std::vector<SecAggClient> clients;
  std::vector<std::vector<int32_t>> m;  // Inputs in units of 2^-10.
  std::vector<Stage> drop_at;

  static Round Make(uint32_t n, uint32_t k, uint32_t t, int bits, uint64_t length,
                    uint32_t seed = 1) {
    Round r;
    r.params = SecAggParams{/*instance_id=*/0x1234 + seed,
                            n,
                            k,
                            t,
                            bits,
                            /*clip=*/8.0,
                            length};
    Key graph_seed{};
    graph_seed[0] = static_cast<uint8_t>(seed);
    r.server = SecAggServer::Create(r.params, graph_seed).value();
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(-8192, 8192);
    for (uint32_t i = 1; i <= n; ++i) {
      r.clients.push_back(
          SecAggClient::Create(r.params, i, r.server->graph().Neighbours(i)).value());
      std::vector<int32_t> v(length);
      for (auto& x : v) x = dist(rng);
      r.m.push_back(v);
    }
    r.drop_at.assign(n, Stage::kDone);
    return r;
  }
  std::vector<float> Input(uint32_t i) const {
    std::vector<float> x;
    for (int32_t v : m[i - 1]) x.push_back(static_cast<float>(v) / 1024.0f);
    return x;
  }
  bool Sends(uint32_t i, Stage s) const {
    return static_cast<int>(s) < static_cast<int>(drop_at[i - 1]);
  }
  absl::Status Stage0() {
    for (uint32_t i = 1; i <= params.num_clients; ++i) {
      if (!Sends(i, Stage::kAdvertiseKeys)) continue;
      TALLY_RETURN_IF_ERROR(server->ReceiveKeys(clients[i - 1].AdvertiseKeys().value()));
    }
    return server->CloseAdvertiseKeys();
  }
  absl::Status Stage1() {
    for (uint32_t i = 1; i <= params.num_clients; ++i) {
      if (!Sends(i, Stage::kShareKeys)) continue;
      TALLY_ASSIGN_OR_RETURN(auto keys, server->KeysFor(i));
      TALLY_ASSIGN_OR_RETURN(auto msg, clients[i - 1].ShareKeys(keys));
      TALLY_RETURN_IF_ERROR(server->ReceiveShares(msg));
    }
    return server->CloseShareKeys();
  }
  // Sends each masked input in chunks of `chunk` words; keeps them.
  std::vector<Bytes> masked;
  absl::Status Stage2(uint64_t chunk = 7) {
    masked.assign(params.num_clients, {});
    const size_t word = params.bits / 8;
    for (uint32_t i = 1; i <= params.num_clients; ++i) {
      if (!Sends(i, Stage::kMaskedInput)) continue;
      TALLY_ASSIGN_OR_RETURN(auto inbox, server->InboxFor(i));
      TALLY_ASSIGN_OR_RETURN(masked[i - 1], clients[i - 1].MaskedInput(inbox, Input(i)));
      const Bytes& y = masked[i - 1];
      for (uint64_t off = 0; off < params.vector_length; off += chunk) {
        const uint64_t n = std::min<uint64_t>(chunk, params.vector_length - off);
        TALLY_RETURN_IF_ERROR(server->ReceiveMaskedChunk(
            i, off, absl::MakeConstSpan(y.data() + off * word, n * word)));
      }
    }
    return server->CloseMaskedInput();
  }
  absl::Status Stage3() {
    for (uint32_t i : server->survivors()) {
      if (!Sends(i, Stage::kUnmask)) continue;
      TALLY_ASSIGN_OR_RETURN(auto response, clients[i - 1].Unmask(server->survivors()));
      TALLY_RETURN_IF_ERROR(server->ReceiveUnmask(response));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<Bytes> Run() {
    TALLY_RETURN_IF_ERROR(Stage0());
    TALLY_RETURN_IF_ERROR(Stage1());
    TALLY_RETURN_IF_ERROR(Stage2());
    TALLY_RETURN_IF_ERROR(Stage3());
    return server->Finish();
  }
  // The expected sums over the clients that sent their masked input, as
  // signed integers on the 2^-f grid: sum m * 2^(f - 10).
  std::vector<int64_t> Expected() const {
    const int f = server->fraction_bits();
    std::vector<int64_t> sum(params.vector_length, 0);
    for (uint32_t i = 1; i <= params.num_clients; ++i) {
      if (!Sends(i, Stage::kMaskedInput)) continue;
      for (size_t j = 0; j < sum.size(); ++j) sum[j] += int64_t{m[i - 1][j]} << (f - 10);
    }
    return sum;
  }
};

// n * floor(8 * 2^f) <= 2^31 - 1 with n = 5: 5 * 2^(f+3) <= 2147483647 gives
// 2^f <= 53687091.1, so f = 25; with n = 8 and b = 64, f is capped at 40.
TEST(SecAggParams, FractionBitsFromHandComputation) {
  SecAggParams p{1, 5, 4, 3, 32, 8.0, 10};
  EXPECT_EQ(FractionBits(p).value(), 25);
  p.bits = 64;
  EXPECT_EQ(FractionBits(p).value(), 40);
  // n = 2, clip = 1, b = 32: 2 * 2^f <= 2^31 - 1 gives f = 29.
  SecAggParams q{1, 2, 1, 1, 32, 1.0, 4};
  EXPECT_EQ(FractionBits(q).value(), 29);
  // Values from hand: 0.5 -> 2^28; 2 -> clipped to 2^29; -3 -> -2^29;
  // 2^-30 -> 0.5 -> 0 (half to even); 3 * 2^-30 -> 1.5 -> 2.
  const std::vector<float> x = {0.5f, 2.0f, -3.0f, 0x1p-30f, 0x3p-30f};
  Bytes out(x.size() * 4);
  ASSERT_THAT(Quantize(q, 29, x, absl::MakeSpan(out)), IsOk());
  EXPECT_THAT(SignedSums(32, out), ::testing::ElementsAre(1 << 28, 1 << 29, -(1 << 29), 0, 2));
  const std::vector<float> bad = {NAN};
  Bytes one(4);
  EXPECT_THAT(Quantize(q, 29, bad, absl::MakeSpan(one)), StatusIs(Code::kInvalidArgument));
}

TEST(SecAggParams, ValidationNamesTheField) {
  SecAggParams p{1, 8, 4, 3, 32, 8.0, 10};
  EXPECT_THAT(ValidateParams(p), IsOk());
  p.threshold = 2;  // Not above k / 2.
  EXPECT_THAT(ValidateParams(p), StatusIs(Code::kInvalidArgument, HasSubstr("threshold")));
  p.threshold = 3;
  p.degree = 3;  // Odd and below n - 1.
  EXPECT_THAT(ValidateParams(p), StatusIs(Code::kInvalidArgument, HasSubstr("degree")));
  p.degree = 4;
  p.bits = 16;
  EXPECT_THAT(ValidateParams(p), StatusIs(Code::kInvalidArgument, HasSubstr("bits")));
  p.bits = 32;
  p.clip = 1e9;  // 8 * 1e9 > 2^31 even at f = 0.
  EXPECT_THAT(ValidateParams(p), StatusIs(Code::kInvalidArgument, HasSubstr("clip")));
}

// The binomial tail against hand values: P[Bin(4, 1/2) >= 3] = 5/16,
// P[Bin(3, 0.1) >= 3] = 0.001.
TEST(SecAggParams, BinomialTailAndDefaults) {
  EXPECT_NEAR(Log2BinomialUpperTail(4, 0.5, 3), std::log2(5.0 / 16), 1e-9);
  EXPECT_NEAR(Log2BinomialUpperTail(3, 0.1, 3), std::log2(0.001), 1e-9);
  // A large instance gets a sparse graph meeting the targets; the degree
  // grows with the corrupt and dropout fractions.
  TALLY_ASSERT_OK_AND_ASSIGN(DefaultDegree d1, SecureDefaults(10000, 0.05, 0.05));
  EXPECT_TRUE(d1.meets_targets);
  EXPECT_LT(d1.degree, 10000u / 10);
  EXPECT_GT(d1.threshold, d1.degree / 2);
  TALLY_ASSERT_OK_AND_ASSIGN(DefaultDegree d2, SecureDefaults(10000, 0.1, 0.2));
  EXPECT_GT(d2.degree, d1.degree);
  // Re-check the three targets of the documented model for d2.
  const double log2n = std::log2(10000.0);
  EXPECT_LE(log2n + Log2BinomialUpperTail(d2.degree, 0.2, 2 * int64_t{d2.threshold} - d2.degree),
            -40);
  EXPECT_LE(log2n + Log2BinomialUpperTail(d2.degree, 0.1, d2.degree - d2.threshold + 1), -30);
  // The table of docs/secure-aggregation.md#parameters, computed by an
  // independent re-implementation of the model in Python (math.lgamma).
  EXPECT_EQ(SecureDefaults(1000, 0.1, 0.1).value().degree, 136u);
  EXPECT_EQ(SecureDefaults(1000, 0.1, 0.1).value().threshold, 93u);
  EXPECT_EQ(SecureDefaults(100000, 0.05, 0.05).value().degree, 80u);
  EXPECT_EQ(SecureDefaults(100000, 0.05, 0.05).value().threshold, 55u);
  // Ten clients cannot meet 2^-40 targets: the complete graph, flagged.
  TALLY_ASSERT_OK_AND_ASSIGN(DefaultDegree small, SecureDefaults(10, 0.1, 0.1));
  EXPECT_FALSE(small.meets_targets);
  EXPECT_EQ(small.degree, 9u);
  EXPECT_EQ(small.threshold, 5u);  // floor(1.1 * 9 / 2) + 1.
}

TEST(SecAggGraph, HararyRingIsRegularSymmetricAndSeeded) {
  Key seed{};
  seed[3] = 7;
  TALLY_ASSERT_OK_AND_ASSIGN(NeighbourGraph g, NeighbourGraph::Create(20, 6, seed));
  for (uint32_t i = 1; i <= 20; ++i) {
    ASSERT_EQ(g.Neighbours(i).size(), 6u);
    for (uint32_t v : g.Neighbours(i)) {
      EXPECT_NE(v, i);
      EXPECT_TRUE(g.AreNeighbours(v, i));
    }
  }
  seed[3] = 8;
  TALLY_ASSERT_OK_AND_ASSIGN(NeighbourGraph h, NeighbourGraph::Create(20, 6, seed));
  bool differs = false;
  for (uint32_t i = 1; i <= 20; ++i) differs |= g.Neighbours(i) != h.Neighbours(i);
  EXPECT_TRUE(differs);
  TALLY_ASSERT_OK_AND_ASSIGN(NeighbourGraph full, NeighbourGraph::Create(5, 8, seed));
  EXPECT_THAT(full.Neighbours(3), ::testing::ElementsAre(1, 2, 4, 5));
}

TEST(SecAggProtocol, SumEqualsPlainSumBitForBit) {
  for (uint32_t n : {3u, 5u, 10u}) {
    for (int bits : {32, 64}) {
      const uint32_t k = n <= 5 ? n - 1 : 4, t = k / 2 + 1;
      Round r = Round::Make(n, k, t, bits, 1000, n + bits);
      TALLY_ASSERT_OK_AND_ASSIGN(Bytes sum, r.Run());
      EXPECT_EQ(SignedSums(bits, sum), r.Expected()) << n << " clients, " << bits << " bits";
      EXPECT_EQ(r.server->stage(), Stage::kDone);
    }
  }
}

TEST(SecAggProtocol, MaskedInputLooksNothingLikeTheEncoding) {
  Round r = Round::Make(4, 3, 2, 32, 4096);
  ASSERT_THAT(r.Stage0(), IsOk());
  ASSERT_THAT(r.Stage1(), IsOk());
  ASSERT_THAT(r.Stage2(), IsOk());
  const int f = r.server->fraction_bits();
  for (uint32_t i = 1; i <= 4; ++i) {
    Bytes plain(4096 * 4);
    ASSERT_THAT(Quantize(r.params, f, r.Input(i), absl::MakeSpan(plain)), IsOk());
    const std::vector<int64_t> y = SignedSums(32, r.masked[i - 1]);
    const std::vector<int64_t> q = SignedSums(32, plain);
    int equal = 0, high_bit = 0;
    for (size_t j = 0; j < y.size(); ++j) {
      equal += y[j] == q[j];
      high_bit += y[j] < 0;
    }
    // A uniform word equals a given one with probability 2^-32; its sign
    // bit is set half the time (4096 / 2 +- 4 sigma = 128).
    EXPECT_EQ(equal, 0) << i;
    EXPECT_NEAR(high_bit, 2048, 128) << i;
  }
}

// One round, complete graph of 10 (k = 9, t = 5): client 1 drops before
// keys, 2 after keys, 3 after shares, 4 after its masked input. Shares go
// to neighbours only, so each of the 6 unmasking clients holds 5 shares of
// every other one: exactly t.
TEST(SecAggProtocol, DropoutAtEveryStageStillCompletes) {
  Round r = Round::Make(10, 9, 5, 32, 500, 3);
  r.drop_at = {Stage::kAdvertiseKeys, Stage::kShareKeys, Stage::kMaskedInput, Stage::kUnmask,
               Stage::kDone,          Stage::kDone,      Stage::kDone,        Stage::kDone,
               Stage::kDone,          Stage::kDone};
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes sum, r.Run());
  EXPECT_EQ(SignedSums(32, sum), r.Expected());  // Clients 4..8.
  const SecAggServer::Counts c = r.server->counts();
  EXPECT_EQ(c.advertised, 9u);
  EXPECT_EQ(c.shared, 8u);
  EXPECT_EQ(c.masked, 7u);
  EXPECT_EQ(c.unmasked, 6u);
}

TEST(SecAggProtocol, EachSingleDropoutOnASparseGraph) {
  for (Stage s : {Stage::kAdvertiseKeys, Stage::kShareKeys, Stage::kMaskedInput, Stage::kUnmask}) {
    Round r = Round::Make(10, 4, 3, 64, 300, 11);
    r.drop_at[6] = s;  // Client 7.
    TALLY_ASSERT_OK_AND_ASSIGN(Bytes sum, r.Run());
    EXPECT_EQ(SignedSums(64, sum), r.Expected()) << StageName(s);
  }
}

TEST(SecAggProtocol, FailsCleanlyBelowThresholdAtEachStage) {
  // Complete graph of 5, t = 3: three drops at a stage leave 2 < t.
  for (Stage s : {Stage::kAdvertiseKeys, Stage::kShareKeys, Stage::kMaskedInput}) {
    Round r = Round::Make(5, 4, 3, 32, 50, 5);
    r.drop_at[0] = r.drop_at[2] = r.drop_at[4] = s;
    absl::StatusOr<Bytes> out = r.Run();
    EXPECT_THAT(out, StatusIs(Code::kFailedPrecondition, HasSubstr("threshold"))) << StageName(s);
    EXPECT_EQ(r.server->stage(), Stage::kFailed);
    EXPECT_THAT(r.server->Finish(), StatusIs(Code::kFailedPrecondition, HasSubstr("failed")));
  }
  // Three of five withhold their unmasking shares: Finish fails.
  Round r = Round::Make(5, 4, 3, 32, 50, 5);
  r.drop_at[1] = r.drop_at[2] = r.drop_at[3] = Stage::kUnmask;
  EXPECT_THAT(r.Run(), StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(r.server->stage(), Stage::kFailed);
}

// A dropped client whose surviving neighbours are fewer than t: its mask key
// cannot be rebuilt, and the survivors refuse to unmask.
TEST(SecAggProtocol, ClientsRefuseToUnmaskWithTooFewSurvivingPartners) {
  Round r = Round::Make(5, 4, 3, 32, 20, 9);
  r.drop_at[0] = r.drop_at[1] = Stage::kMaskedInput;  // 3 survivors, 2 partners each.
  ASSERT_THAT(r.Stage0(), IsOk());
  ASSERT_THAT(r.Stage1(), IsOk());
  ASSERT_THAT(r.Stage2(), IsOk());
  EXPECT_THAT(r.clients[2].Unmask(r.server->survivors()),
              StatusIs(Code::kFailedPrecondition, HasSubstr("nothing revealed")));
  EXPECT_THAT(r.server->Finish(), StatusIs(Code::kFailedPrecondition));
}

TEST(SecAggProtocol, ReplaysAreRejectedAndChangeNothing) {
  Round r = Round::Make(4, 3, 2, 32, 30, 4);
  KeyAdvertisement adv = r.clients[0].AdvertiseKeys().value();
  ASSERT_THAT(r.server->ReceiveKeys(adv), IsOk());
  EXPECT_THAT(r.server->ReceiveKeys(adv), StatusIs(Code::kAlreadyExists));
  for (uint32_t i = 2; i <= 4; ++i) {
    ASSERT_THAT(r.server->ReceiveKeys(r.clients[i - 1].AdvertiseKeys().value()), IsOk());
  }
  ASSERT_THAT(r.server->CloseAdvertiseKeys(), IsOk());
  EXPECT_THAT(r.server->ReceiveKeys(adv), StatusIs(Code::kFailedPrecondition));  // Old stage.
  std::vector<ShareKeysMessage> msgs;
  for (uint32_t i = 1; i <= 4; ++i) {
    msgs.push_back(r.clients[i - 1].ShareKeys(r.server->KeysFor(i).value()).value());
    ASSERT_THAT(r.server->ReceiveShares(msgs.back()), IsOk());
  }
  EXPECT_THAT(r.server->ReceiveShares(msgs[1]), StatusIs(Code::kAlreadyExists));
  ASSERT_THAT(r.server->CloseShareKeys(), IsOk());
  r.masked.assign(4, {});
  for (uint32_t i = 1; i <= 4; ++i) {
    Bytes y = r.clients[i - 1].MaskedInput(r.server->InboxFor(i).value(), r.Input(i)).value();
    ASSERT_THAT(r.server->ReceiveMaskedChunk(i, 0, absl::MakeConstSpan(y.data(), 40)), IsOk());
    EXPECT_THAT(r.server->ReceiveMaskedChunk(i, 0, absl::MakeConstSpan(y.data(), 40)),
                StatusIs(Code::kAlreadyExists));
    ASSERT_THAT(r.server->ReceiveMaskedChunk(i, 10, absl::MakeConstSpan(y.data() + 40, 80)),
                IsOk());
    EXPECT_THAT(r.server->ReceiveMaskedChunk(i, 0, y), StatusIs(Code::kAlreadyExists));
  }
  ASSERT_THAT(r.server->CloseMaskedInput(), IsOk());
  std::vector<UnmaskResponse> responses;
  for (uint32_t i : r.server->survivors()) {
    responses.push_back(r.clients[i - 1].Unmask(r.server->survivors()).value());
    ASSERT_THAT(r.server->ReceiveUnmask(responses.back()), IsOk());
  }
  EXPECT_THAT(r.server->ReceiveUnmask(responses[0]), StatusIs(Code::kAlreadyExists));
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes sum, r.server->Finish());
  EXPECT_EQ(SignedSums(32, sum), r.Expected());
}

TEST(SecAggProtocol, WrongLengthMaskedInputIsRejectedOrRetracted) {
  Round r = Round::Make(4, 3, 2, 32, 30, 6);
  r.drop_at[3] = Stage::kMaskedInput;  // Client 4 uploads by hand below.
  ASSERT_THAT(r.Stage0(), IsOk());
  ASSERT_THAT(r.Stage1(), IsOk());
  Bytes y4 = r.clients[3].MaskedInput(r.server->InboxFor(4).value(), r.Input(4)).value();
  Bytes longer = y4;
  longer.resize(y4.size() + 4);
  EXPECT_THAT(r.server->ReceiveMaskedChunk(4, 0, longer),
              StatusIs(Code::kInvalidArgument, HasSubstr("longer")));
  EXPECT_THAT(r.server->ReceiveMaskedChunk(4, 0, absl::MakeConstSpan(y4.data(), 6)),
              StatusIs(Code::kInvalidArgument, HasSubstr("words")));
  EXPECT_THAT(r.server->ReceiveMaskedChunk(4, 3, absl::MakeConstSpan(y4.data(), 8)),
              StatusIs(Code::kInvalidArgument, HasSubstr("expected 0")));
  // Half an upload, then the connection breaks: the stage cannot close
  // until the sink retracts what it added.
  ASSERT_THAT(r.server->ReceiveMaskedChunk(4, 0, absl::MakeConstSpan(y4.data(), 60)), IsOk());
  ASSERT_THAT(r.Stage2(), StatusIs(Code::kFailedPrecondition, HasSubstr("partial")));
  ASSERT_THAT(r.server->RetractMaskedChunk(4, 0, absl::MakeConstSpan(y4.data(), 60)), IsOk());
  ASSERT_THAT(r.server->CloseMaskedInput(), IsOk());
  EXPECT_THAT(r.server->survivors(), ::testing::ElementsAre(1, 2, 3));
  ASSERT_THAT(r.Stage3(), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Bytes sum, r.server->Finish());
  EXPECT_EQ(SignedSums(32, sum), r.Expected());
}

TEST(SecAggProtocol, MalformedSharesAreRejected) {
  Round r = Round::Make(5, 4, 3, 32, 10, 8);
  ASSERT_THAT(r.Stage0(), IsOk());
  EXPECT_THAT(r.server->ReceiveKeys(KeyAdvertisement{9, {}, {}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(r.server->ReceiveKeys(KeyAdvertisement{2, {}, {}}),
              StatusIs(Code::kFailedPrecondition, HasSubstr("stage")));
  ShareKeysMessage m = r.clients[0].ShareKeys(r.server->KeysFor(1).value()).value();
  ShareKeysMessage shorter = m;
  shorter.shares[0].ciphertext.pop_back();
  EXPECT_THAT(r.server->ReceiveShares(shorter),
              StatusIs(Code::kInvalidArgument, HasSubstr("bytes")));
  ShareKeysMessage missing = m;
  missing.shares.pop_back();
  EXPECT_THAT(r.server->ReceiveShares(missing), StatusIs(Code::kInvalidArgument));
  ShareKeysMessage doubled = m;
  doubled.shares[1] = doubled.shares[0];
  EXPECT_THAT(r.server->ReceiveShares(doubled), StatusIs(Code::kInvalidArgument));
  ShareKeysMessage outsider = m;
  outsider.sender = 7;
  EXPECT_THAT(r.server->ReceiveShares(outsider),
              StatusIs(Code::kInvalidArgument, HasSubstr("outside")));
  ASSERT_THAT(r.server->ReceiveShares(m), IsOk());
  for (uint32_t i = 2; i <= 5; ++i) {
    ASSERT_THAT(
        r.server->ReceiveShares(r.clients[i - 1].ShareKeys(r.server->KeysFor(i).value()).value()),
        IsOk());
  }
  ASSERT_THAT(r.server->CloseShareKeys(), IsOk());
  ASSERT_THAT(r.Stage2(), IsOk());
  UnmaskResponse u = r.clients[0].Unmask(r.server->survivors()).value();
  UnmaskResponse big = u;
  std::memset(big.shares[0].values.data(), 0xff, 8);  // A value >= p.
  EXPECT_THAT(r.server->ReceiveUnmask(big), StatusIs(Code::kInvalidArgument, HasSubstr("below p")));
  UnmaskResponse kind = u;
  kind.shares[0].kind = ShareKind::kMaskKey;  // Asks for both shares of a survivor.
  EXPECT_THAT(r.server->ReceiveUnmask(kind), StatusIs(Code::kInvalidArgument, HasSubstr("kind")));
  UnmaskResponse cut = u;
  cut.shares[0].values.resize(63);
  EXPECT_THAT(r.server->ReceiveUnmask(cut), StatusIs(Code::kInvalidArgument));
  ASSERT_THAT(r.server->ReceiveUnmask(u), IsOk());
}

// A share that parses but is forged: with exactly t shares (4 unmaskers:
// client 2's seed has shares from 1, 3 and 4) the reconstructed seed
// contradicts its commitment; with more (5 unmaskers), the shares disagree.
// Either way DATA_LOSS and no result.
TEST(SecAggProtocol, ForgedShareNeverYieldsAWrongSum) {
  for (int unmaskers : {4, 5}) {
    Round r = Round::Make(5, 4, 3, 32, 10, 12);
    ASSERT_THAT(r.Stage0(), IsOk());
    ASSERT_THAT(r.Stage1(), IsOk());
    ASSERT_THAT(r.Stage2(), IsOk());
    for (int i = 1; i <= unmaskers; ++i) {
      UnmaskResponse u = r.clients[i - 1].Unmask(r.server->survivors()).value();
      if (i == 1) u.shares[0].values[3] ^= 0x10;  // Still below p.
      ASSERT_THAT(r.server->ReceiveUnmask(u), IsOk());
    }
    EXPECT_THAT(r.server->Finish(), StatusIs(Code::kDataLoss)) << unmaskers;
    EXPECT_EQ(r.server->stage(), Stage::kFailed);
  }
}

TEST(SecAggProtocol, ClientRejectsAHostileServer) {
  Round r = Round::Make(5, 4, 3, 32, 10, 13);
  ASSERT_THAT(r.Stage0(), IsOk());
  std::vector<KeyAdvertisement> keys = r.server->KeysFor(1).value();
  // Keys relayed twice, or a key of its own: refused.
  std::vector<KeyAdvertisement> twice = keys;
  twice.push_back(keys[0]);
  SecAggClient c1 = r.clients[0];
  EXPECT_THAT(c1.ShareKeys(twice), StatusIs(Code::kInvalidArgument, HasSubstr("twice")));
  EXPECT_EQ(c1.stage(), Stage::kFailed);
  std::vector<KeyAdvertisement> too_few(keys.begin(), keys.begin() + 2);
  SecAggClient c1b = r.clients[0];
  EXPECT_THAT(c1b.ShareKeys(too_few), StatusIs(Code::kFailedPrecondition));
  ASSERT_THAT(r.Stage1(), IsOk());
  std::vector<EncryptedShare> inbox = r.server->InboxFor(1).value();
  inbox[0].ciphertext[40] ^= 1;  // Tampered in transit.
  SecAggClient c1c = r.clients[0];
  EXPECT_THAT(c1c.MaskedInput(inbox, r.Input(1)), StatusIs(Code::kUnauthenticated));
  inbox = r.server->InboxFor(1).value();
  std::swap(inbox[0].sender, inbox[1].sender);  // Relabelled: the AEAD header differs.
  SecAggClient c1d = r.clients[0];
  EXPECT_THAT(c1d.MaskedInput(inbox, r.Input(1)), StatusIs(Code::kUnauthenticated));
  inbox = r.server->InboxFor(1).value();
  ASSERT_THAT(r.clients[0].MaskedInput(inbox, r.Input(1)), IsOk());
  // A survivor list without the client itself, or unsorted.
  EXPECT_THAT(r.clients[0].Unmask(std::vector<uint32_t>{2, 3, 4}),
              StatusIs(Code::kInvalidArgument));
}

}  // namespace
}  // namespace tally::secagg
