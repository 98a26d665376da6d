// Micro-benchmarks of secure aggregation (secagg/): the PRG's key stream,
// one client's masking per MB of float32 update with k neighbours, and the
// server's two hot paths -- summing masked inputs as they arrive and
// removing the masks at the end -- for 10 clients x 10M values (32-bit
// words). Bytes are those of the represented float32 update (4 per value).
//
//   tally_micro_bench --benchmark_filter=SecAgg --benchmark_counters_tabular=true
#include <cstdint>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "secagg/client.h"
#include "secagg/crypto.h"
#include "secagg/params.h"
#include "secagg/protocol.h"
#include "secagg/server.h"

namespace tally::secagg {
namespace {

constexpr uint64_t kServerValues = 10'000'000;
constexpr uint32_t kServerClients = 10;
constexpr size_t kIngestChunkBytes = size_t{1} << 20;

Key SeedOf(uint8_t b) {
  Key k{};
  k[0] = b;
  return k;
}

void BM_SecAggPrgKeyStream(benchmark::State& state) {
  std::vector<uint32_t> words(4 << 20, 0);  // 16 MiB.
  for (auto _ : state) {
    auto s = AddPrgWords<uint32_t>(SeedOf(1), +1, 0, absl::MakeSpan(words));
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(words.data());
  }
  state.SetBytesProcessed(state.iterations() * words.size() * 4);
}
BENCHMARK(BM_SecAggPrgKeyStream)->Unit(benchmark::kMillisecond);

// One client's MaskInput: quantize, self mask and k pairwise masks (k X25519
// + HKDF, k + 1 PRG passes) over 1M values = 4 MB of float32.
void BM_SecAggClientMask(benchmark::State& state) {
  const uint32_t k = static_cast<uint32_t>(state.range(0));
  const uint64_t n = 1'000'000;
  const SecAggParams params{
      1, k + 2, std::max<uint32_t>(k, 2), std::max<uint32_t>(k, 2) / 2 + 1, 32, 1.0, n};
  std::vector<float> x(n, 0.01f);
  std::vector<MaskPartner> partners;
  for (uint32_t v = 0; v < k; ++v) {
    partners.push_back(MaskPartner{v + 2, X25519FromPrivate(SeedOf(10 + v)).value().public_key});
  }
  for (auto _ : state) {
    auto y = MaskInput(params, 1, x, SeedOf(2), SeedOf(3), partners);
    benchmark::DoNotOptimize(y);
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
  state.counters["s_per_MB"] = benchmark::Counter(
      static_cast<double>(n * 4) / 1e6,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SecAggClientMask)->Arg(0)->Arg(4)->Arg(8)->Arg(16)->Unit(benchmark::kMillisecond);

// A server instance of 10 clients (complete graph, t = 5) brought to the
// masked-input stage by real clients whose own vectors are 1 value long (the
// keys and shares do not depend on the length).
struct Instance {
  std::unique_ptr<SecAggServer> server;
  std::vector<SecAggClient> clients;
};

Instance MakeInstance() {
  const SecAggParams params{7, kServerClients, kServerClients - 1, 5, 32, 1.0, kServerValues};
  SecAggParams small = params;
  small.vector_length = 1;
  Instance in;
  in.server = SecAggServer::Create(params, SeedOf(4)).value();
  for (uint32_t i = 1; i <= kServerClients; ++i) {
    in.clients.push_back(SecAggClient::Create(small, i, in.server->graph().Neighbours(i)).value());
    (void)in.server->ReceiveKeys(in.clients.back().AdvertiseKeys().value());
  }
  (void)in.server->CloseAdvertiseKeys();
  for (uint32_t i = 1; i <= kServerClients; ++i) {
    (void)in.server->ReceiveShares(
        in.clients[i - 1].ShareKeys(in.server->KeysFor(i).value()).value());
  }
  (void)in.server->CloseShareKeys();
  return in;
}

void Ingest(SecAggServer& server, uint32_t client, const std::vector<uint8_t>& y) {
  for (size_t off = 0; off < y.size(); off += kIngestChunkBytes) {
    const size_t n = std::min(kIngestChunkBytes, y.size() - off);
    (void)server.ReceiveMaskedChunk(client, off / 4, absl::MakeConstSpan(y.data() + off, n));
  }
}

// Masked words summed as they arrive: 10 clients x 10M values per iteration.
void BM_SecAggServerIngest(benchmark::State& state) {
  std::vector<uint8_t> y(kServerValues * 4, 0x5a);
  for (auto _ : state) {
    state.PauseTiming();
    Instance in = MakeInstance();
    state.ResumeTiming();
    for (uint32_t i = 1; i <= kServerClients; ++i) Ingest(*in.server, i, y);
  }
  state.SetBytesProcessed(state.iterations() * kServerClients * kServerValues * 4);
}
BENCHMARK(BM_SecAggServerIngest)->Unit(benchmark::kMillisecond)->UseRealTime();

// Finish(): reconstruct 10 self-mask seeds (or 9 and one dropped client's
// mask key with its 9 pairwise seeds) and subtract their expansions from
// the 10M-value sum. Bytes: the represented float32 model (40 MB).
void BM_SecAggServerUnmask(benchmark::State& state) {
  const bool dropout = state.range(0) != 0;
  std::vector<uint8_t> y(kServerValues * 4, 0x5a);
  std::vector<float> x1 = {0.0f};
  for (auto _ : state) {
    state.PauseTiming();
    Instance in = MakeInstance();
    for (uint32_t i = 1; i <= kServerClients; ++i) {
      auto inbox = in.server->InboxFor(i).value();
      (void)in.clients[i - 1].MaskedInput(inbox, x1).value();
      if (!(dropout && i == kServerClients)) Ingest(*in.server, i, y);
    }
    (void)in.server->CloseMaskedInput();
    for (uint32_t i : in.server->survivors()) {
      (void)in.server->ReceiveUnmask(in.clients[i - 1].Unmask(in.server->survivors()).value());
    }
    state.ResumeTiming();
    auto sum = in.server->Finish();
    if (!sum.ok()) state.SkipWithError(std::string(sum.status().message()).c_str());
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(state.iterations() * kServerValues * 4);
}
BENCHMARK(BM_SecAggServerUnmask)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace tally::secagg
