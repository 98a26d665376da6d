// How tally-sim's clients compress their updates, and the --codec_compare
// table: one run per upload configuration on the same seed and data.
//
// Pure data and formatting (compress/codec.h specs, no gRPC); the caller
// turns an UploadCodec into the server's compression.upload entry and the
// clients' ClientOptions. Thread-compatible.
#ifndef TALLY_SIM_UPLOAD_CODEC_H_
#define TALLY_SIM_UPLOAD_CODEC_H_

#include <string>
#include <vector>

#include "absl/types/span.h"
#include "compress/codec.h"

namespace tally::sim {

// One upload configuration: the codec and its parameters (the server's
// compression.upload entry; spec.seed is ignored, the SDK picks one per
// update) and whether the clients keep an error-feedback residual
// (ClientOptions::error_feedback). The default is uncompressed float32.
struct UploadCodec {
  compress::CodecSpec spec = compress::DefaultSpec(compress::CodecId::kFloat32);
  bool error_feedback = true;

  // float32 without zstd: the plain SDK path, no compression config at all.
  bool Uncompressed() const { return compress::IsPlainFloat32(spec); }
  // The codec's name ("topk"), what a client offers at Join.
  std::string Name() const;
  // Name and the parameters that set its size: "topk 1%", "int8 (block 256)",
  // "randk 1% biased", "qsgd s=7", "+ zstd".
  std::string Label() const;
};

// --codec_compare's runs, in table order: float32, float16, bfloat16, int8,
// qsgd, sign, topk 1% with and without error feedback, randk 1%. Error
// feedback is on for the contractive codecs (||C(x) - x|| < ||x||) and off
// for qsgd: unbiased, but with a variance above ||x||^2 (up to
// sqrt(512)/7 ||x||^2 per bucket of 512), so that the residual grows every
// round (tally-sim's qsgd run with error feedback diverges). randk runs
// biased (no d/k rescaling, contractive) for the same reason: rescaled randk
// with error feedback diverges too.
std::vector<UploadCodec> CodecCompareRuns();

// One --codec_compare result.
struct CodecCompareRow {
  UploadCodec codec;
  bool ok = false;                     // False: the run failed (the rest is unset).
  double upload_bytes_per_update = 0;  // Mean PushResult::payload_bytes.
  double final_accuracy = 0;
  int rounds_to_target = -1;  // -1: never reached.
};

// The markdown table: codec, error feedback, upload bytes per client per
// round, how many times fewer than `baseline` (the float32 row), final
// accuracy, its difference to the baseline in percentage points, rounds to
// `target_accuracy`. A failed row prints "error".
std::string FormatCodecCompareTable(absl::Span<const CodecCompareRow> rows,
                                    const CodecCompareRow& baseline, double target_accuracy);

}  // namespace tally::sim

#endif  // TALLY_SIM_UPLOAD_CODEC_H_
