// Micro-benchmarks of the server's accumulate path: what one arriving update
// chunk costs (validate it, fold it into the running exact weighted sum). Reported
// as bytes of update payload per second (wall time, summed over threads).
//
//   tally_micro_bench --benchmark_counters_tabular=true
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "aggregators/rules/striped_accumulator.h"
#include "benchmark/benchmark.h"
#include "core/vector_ops.h"

namespace tally {
namespace {

constexpr size_t kModelFloats = 10'000'000;  // d = 1e7 (40 MB of float32).
constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr size_t kChunkFloats = kChunkBytes / sizeof(float);

// `n` float32 values in [-0.01, 0.01) as raw bytes, like an update off the wire.
std::vector<char> RandomUpdateBytes(size_t n) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-0.01f, 0.01f);
  std::vector<char> bytes(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));
  }
  return bytes;
}

// Shared by all threads of one run; created before the threads start.
std::unique_ptr<aggregators::StripedAccumulator> g_accumulator;

void SetUpAccumulator(const benchmark::State&) {
  g_accumulator = std::make_unique<aggregators::StripedAccumulator>(kModelFloats);
}

void TearDownAccumulator(const benchmark::State&) { g_accumulator.reset(); }

// One 1 MiB chunk (cache-resident, as a just-received message) added per
// iteration, walking through the whole d = 1e7 sum. Thread t starts at
// t * d / threads, as concurrent uploads are at different offsets.
void BM_StripedAccumulatorAddBytes(benchmark::State& state) {
  const std::vector<char> chunk = RandomUpdateBytes(kChunkFloats);
  const size_t num_chunks = kModelFloats / kChunkFloats;  // Whole chunks only.
  size_t index = num_chunks * state.thread_index() / state.threads();
  for (auto _ : state) {
    g_accumulator->AddBytes(index * kChunkFloats, chunk.data(), kChunkFloats, 3);
    if (++index == num_chunks) index = 0;
  }
  benchmark::DoNotOptimize(g_accumulator.get());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunkBytes));
}
BENCHMARK(BM_StripedAccumulatorAddBytes)
    ->Setup(SetUpAccumulator)
    ->Teardown(TearDownAccumulator)
    ->UseRealTime()
    ->Threads(1)
    ->Threads(2);

// Validation of `range(0)` bytes: one chunk (in cache) or a whole update.
void BM_AllFiniteBytes(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  const std::vector<char> bytes = RandomUpdateBytes(n);
  for (auto _ : state) {
    bool finite = AllFiniteBytes(bytes.data(), n);
    benchmark::DoNotOptimize(finite);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * sizeof(float)));
}
BENCHMARK(BM_AllFiniteBytes)->Arg(kChunkBytes)->Arg(kModelFloats * sizeof(float))->UseRealTime();

// The check every update chunk gets: finite and |x| <= limits.max_abs_value.
void BM_AllWithinBytes(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  const std::vector<char> bytes = RandomUpdateBytes(n);
  for (auto _ : state) {
    bool within = AllWithinBytes(bytes.data(), n, 1e6f);
    benchmark::DoNotOptimize(within);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * sizeof(float)));
}
BENCHMARK(BM_AllWithinBytes)->Arg(kChunkBytes)->Arg(kModelFloats * sizeof(float))->UseRealTime();

// y += a * x with x read from unaligned bytes, over `range(0)` bytes of x.
void BM_AxpyBytes(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  // The same floats one byte off, so the loads are really unaligned, as in
  // a gRPC buffer.
  const std::vector<char> values = RandomUpdateBytes(n);
  std::vector<char> storage(values.size() + 1);
  std::memcpy(storage.data() + 1, values.data(), values.size());
  const char* x = storage.data() + 1;
  std::vector<float> y(n, 0.0f);
  for (auto _ : state) {
    AxpyBytes(0.5f, x, y.data(), n);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(y.data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * sizeof(float)));
}
BENCHMARK(BM_AxpyBytes)->Arg(kChunkBytes)->Arg(kModelFloats * sizeof(float))->UseRealTime();

}  // namespace
}  // namespace tally
