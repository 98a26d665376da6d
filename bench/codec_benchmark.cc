// Micro-benchmarks of the update codecs (compress/) at d = 1e7: Encode (the
// client's cost) and DecodeAccumulate (the server's cost per update, into a
// model-sized accumulator). Bytes/s are of *represented* float32, d · 4 per
// iteration, whatever the payload size; the counters give the payload size
// and the compression ratio. Single-threaded.
//
//   tally_micro_bench --benchmark_filter=Codec --benchmark_repetitions=3
//
// Target (issue 5): DecodeAccumulate of int8 and topk (k = 1 %) >= 2 GB/s
// of represented float32 per core.
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "compress/codec.h"

namespace tally::compress {
namespace {

constexpr size_t kDim = 10'000'000;

// A gradient-like update: N(0, 0.01²), fixed seed.
const std::vector<float>& Update() {
  static const std::vector<float> x = [] {
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 0.01f);
    std::vector<float> v(kDim);
    for (float& f : v) f = normal(rng);
    return v;
  }();
  return x;
}

CodecSpec Spec(CodecId id, void (*edit)(CodecSpec*) = nullptr) {
  CodecSpec spec = DefaultSpec(id);
  spec.seed = 7;
  if (edit != nullptr) edit(&spec);
  return spec;
}

void SetCounters(benchmark::State& state, size_t payload_bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kDim * sizeof(float)));
  state.counters["payload_MB"] = static_cast<double>(payload_bytes) / 1e6;
  state.counters["ratio"] = static_cast<double>(kDim * sizeof(float)) / payload_bytes;
}

void BM_CodecEncode(benchmark::State& state, CodecSpec spec) {
  const std::vector<float>& x = Update();
  std::string payload;
  for (auto _ : state) {
    const absl::Status status = Encode(spec, x, &payload);
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(payload.data());
  }
  SetCounters(state, payload.size());
}

void BM_CodecDecodeAccumulate(benchmark::State& state, CodecSpec spec) {
  std::string payload;
  if (!Encode(spec, Update(), &payload).ok()) state.SkipWithError("encode failed");
  std::vector<float> acc(kDim, 0.0f);
  for (auto _ : state) {
    const absl::Status status = DecodeAccumulate(spec, payload, 0.5f, absl::MakeSpan(acc));
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::ClobberMemory();
  }
  SetCounters(state, payload.size());
}

#define TALLY_CODEC_BENCHMARKS(name, spec)                                                     \
  BENCHMARK_CAPTURE(BM_CodecEncode, name, spec)->Unit(benchmark::kMillisecond)->UseRealTime(); \
  BENCHMARK_CAPTURE(BM_CodecDecodeAccumulate, name, spec)                                      \
      ->Unit(benchmark::kMillisecond)                                                          \
      ->UseRealTime()

TALLY_CODEC_BENCHMARKS(float32, Spec(CodecId::kFloat32));
TALLY_CODEC_BENCHMARKS(float16, Spec(CodecId::kFloat16));
TALLY_CODEC_BENCHMARKS(bfloat16, Spec(CodecId::kBfloat16));
TALLY_CODEC_BENCHMARKS(int8_b256, Spec(CodecId::kInt8));
TALLY_CODEC_BENCHMARKS(qsgd_s7_b512, Spec(CodecId::kQsgd));
TALLY_CODEC_BENCHMARKS(sign, Spec(CodecId::kSign));
TALLY_CODEC_BENCHMARKS(topk_1pc, Spec(CodecId::kTopK));
TALLY_CODEC_BENCHMARKS(topk_1pc_f16,
                       Spec(CodecId::kTopK, [](CodecSpec* s) { s->half_values = true; }));
TALLY_CODEC_BENCHMARKS(randk_1pc, Spec(CodecId::kRandK));
TALLY_CODEC_BENCHMARKS(spsa_1pair, Spec(CodecId::kSpsa));
TALLY_CODEC_BENCHMARKS(int8_zstd, Spec(CodecId::kInt8, [](CodecSpec* s) { s->zstd = true; }));

}  // namespace
}  // namespace tally::compress
