// tally-codec-vectors: runs the C++ codecs (compress/codec.h) on files, so
// that another SDK (the Python one, client/python) can check that its codecs
// give the same bytes and the same floats. The Python tests generate their
// inputs, run this tool once with a manifest, and compare.
//
//   tally-codec-vectors MANIFEST
//
// Each line of MANIFEST is one command (blank lines and '#' comments are
// skipped); SPEC is "<codec>[:key=value,...]" with the tally.v1.CodecParams
// field names (block_size, levels, k, ratio, half_values, biased, seed, zstd,
// zstd_level) over the codec's defaults, as a wire header is read:
//   encode SPEC IN.f32 OUT.bin       x = IN (little-endian float32s);
//                                    OUT = Encode(spec, x)
//   decode SPEC D IN.bin OUT.f32     OUT = Decode(spec, IN) for d = D
//   feedback SPEC D IN.f32 PREFIX    IN holds T updates of D floats; for each
//                                    t writes PREFIX.<t>.bin (the payload of
//                                    compress::ErrorFeedback) and
//                                    PREFIX.<t>.f32 (the residual after it)
//   dgc OPTIONS TENSORS IN.f32 PREFIX
//                                    compress::DgcCompressor over T updates
//                                    (IN: T x d floats). OPTIONS is
//                                    "key=value,..." over DgcOptions'
//                                    defaults (momentum, nesterov,
//                                    momentum_masking, clip_norm,
//                                    compress_1d, compress_ratio,
//                                    warmup_steps, warmup_ratios as values
//                                    joined by '/', half_values, zstd,
//                                    zstd_level) or "-"; TENSORS is
//                                    "size:ndim,..." tiling [0, d). For each
//                                    t: PREFIX.<t>.bin (the payload) or, if
//                                    Compress refuses g, PREFIX.<t>.err (its
//                                    message; the run goes on), then
//                                    PREFIX.<t>.u.f32 / .v.f32 (momentum and
//                                    velocity after the step)
// For every line, stdout gets "ok" or "error <message>" (an encoder or
// decoder that refuses its input, DGC options DgcCompressor::Create
// refuses); the exit status is 1 only for a malformed manifest or an
// unreadable / unwritable file.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compress/codec.h"
#include "compress/dgc.h"
#include "compress/error_feedback.h"

namespace {

using tally::compress::CodecSpec;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::Status WriteFile(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> ReadFloats(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a whole number of floats"));
  }
  std::vector<float> x(bytes->size() / 4);
  if (!x.empty()) std::memcpy(x.data(), bytes->data(), bytes->size());
  return x;
}

absl::Status WriteFloats(const std::string& path, const std::vector<float>& x) {
  return WriteFile(path, x.data(), x.size() * sizeof(float));
}

// "<codec>[:key=value,...]" -> the codec's defaults with the named overrides,
// read like proto/codec_params.cc reads a header's CodecParams.
absl::StatusOr<CodecSpec> ParseSpec(const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  const tally::compress::CodecInfo* info = tally::compress::FindCodec(parts[0]);
  if (info == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown codec ", parts[0]));
  CodecSpec spec = tally::compress::DefaultSpec(info->id);
  if (parts.size() == 1 || parts[1].empty()) return spec;
  for (absl::string_view item : absl::StrSplit(parts[1], ',')) {
    const std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    uint64_t u = 0;
    int32_t i = 0;
    float f = 0.0f;
    const std::string& key = kv[0];
    const std::string value = kv.size() == 2 ? kv[1] : "";
    bool ok = true;
    if (key == "block_size" || key == "levels" || key == "k" || key == "seed") {
      ok = absl::SimpleAtoi(value, &u);
      if (key == "block_size") spec.block_size = static_cast<uint32_t>(u);
      if (key == "levels") spec.levels = static_cast<uint32_t>(u);
      if (key == "k") spec.k = u;
      if (key == "seed") spec.seed = u;
    } else if (key == "ratio") {
      ok = absl::SimpleAtof(value, &f);
      spec.ratio = f;
    } else if (key == "zstd_level") {
      ok = absl::SimpleAtoi(value, &i);
      spec.zstd_level = i;
    } else if (key == "half_values" || key == "biased" || key == "zstd") {
      const bool on = value == "1" || value == "true";
      if (key == "half_values") spec.half_values = on;
      if (key == "biased") spec.rescale = !on;
      if (key == "zstd") spec.zstd = on;
    } else {
      ok = false;
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad spec item '", item, "'"));
  }
  return spec;
}

// The codec's answer to a line: OK or its refusal.
struct Verdict {
  absl::Status status;
};
// A line's verdict; a malformed line or a file error is a failed StatusOr
// instead.
using Outcome = absl::StatusOr<Verdict>;

Outcome RunEncode(const CodecSpec& spec, const std::vector<std::string>& args) {
  if (args.size() != 4) return absl::InvalidArgumentError("encode SPEC IN.f32 OUT.bin");
  absl::StatusOr<std::vector<float>> x = ReadFloats(args[2]);
  if (!x.ok()) return x.status();
  std::string payload;
  const absl::Status encoded = tally::compress::Encode(spec, *x, &payload);
  if (!encoded.ok()) return Verdict{encoded};
  const absl::Status written = WriteFile(args[3], payload.data(), payload.size());
  if (!written.ok()) return written;
  return Verdict{};
}

Outcome RunDecode(const CodecSpec& spec, size_t d, const std::vector<std::string>& args) {
  if (args.size() != 5) return absl::InvalidArgumentError("decode SPEC D IN.bin OUT.f32");
  absl::StatusOr<std::string> payload = ReadFile(args[3]);
  if (!payload.ok()) return payload.status();
  std::vector<float> out(d, 0.0f);
  const absl::Status decoded = tally::compress::Decode(spec, *payload, absl::MakeSpan(out));
  if (!decoded.ok()) return Verdict{decoded};
  const absl::Status written = WriteFloats(args[4], out);
  if (!written.ok()) return written;
  return Verdict{};
}

Outcome RunFeedback(const CodecSpec& spec, size_t d, const std::vector<std::string>& args) {
  if (args.size() != 5) return absl::InvalidArgumentError("feedback SPEC D IN.f32 PREFIX");
  absl::StatusOr<std::vector<float>> x = ReadFloats(args[3]);
  if (!x.ok()) return x.status();
  if (d == 0 || x->size() % d != 0) {
    return absl::InvalidArgumentError(absl::StrCat(args[3], " is not a whole number of updates"));
  }
  tally::compress::ErrorFeedback feedback(d);
  for (size_t t = 0; t * d < x->size(); ++t) {
    std::string payload;
    const absl::Status compressed = feedback.Compress(
        spec, absl::MakeConstSpan(x->data() + t * d, d), &payload);
    if (!compressed.ok()) return Verdict{compressed};
    const std::string prefix = absl::StrCat(args[4], ".", t);
    absl::Status written = WriteFile(prefix + ".bin", payload.data(), payload.size());
    if (written.ok()) {
      written = WriteFloats(prefix + ".f32", std::vector<float>(feedback.residual().begin(),
                                                                feedback.residual().end()));
    }
    if (!written.ok()) return written;
  }
  return Verdict{};
}

bool ParseBool(const std::string& value, bool* out) {
  if (value != "0" && value != "1" && value != "false" && value != "true") return false;
  *out = value == "1" || value == "true";
  return true;
}

bool ParseDgcOption(const std::string& key, const std::string& value,
                    tally::compress::DgcOptions* o) {
  if (key == "momentum") return absl::SimpleAtof(value, &o->momentum);
  if (key == "nesterov") return ParseBool(value, &o->nesterov);
  if (key == "momentum_masking") return ParseBool(value, &o->momentum_masking);
  if (key == "clip_norm") return absl::SimpleAtod(value, &o->clip_norm);
  if (key == "compress_1d") return ParseBool(value, &o->compress_1d);
  if (key == "compress_ratio") return absl::SimpleAtod(value, &o->compress_ratio);
  if (key == "warmup_steps") return absl::SimpleAtoi(value, &o->warmup_steps);
  if (key == "half_values") return ParseBool(value, &o->half_values);
  if (key == "zstd") return ParseBool(value, &o->zstd);
  if (key == "zstd_level") return absl::SimpleAtoi(value, &o->zstd_level);
  if (key != "warmup_ratios") return false;
  for (absl::string_view item : absl::StrSplit(value, '/', absl::SkipEmpty())) {
    double r = 0.0;
    if (!absl::SimpleAtod(item, &r)) return false;
    o->warmup_ratios.push_back(r);
  }
  return true;
}

absl::StatusOr<tally::compress::DgcOptions> ParseDgcOptions(const std::string& text) {
  tally::compress::DgcOptions options;
  if (text == "-") return options;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || !ParseDgcOption(kv[0], kv[1], &options)) {
      return absl::InvalidArgumentError(absl::StrCat("bad DGC option '", item, "'"));
    }
  }
  return options;
}

absl::StatusOr<std::vector<tally::compress::DgcTensor>> ParseDgcTensors(const std::string& text) {
  std::vector<tally::compress::DgcTensor> tensors;
  uint64_t offset = 0;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const std::vector<std::string> parts = absl::StrSplit(item, ':');
    tally::compress::DgcTensor t;
    t.offset = offset;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &t.size) ||
        !absl::SimpleAtoi(parts[1], &t.ndim)) {
      return absl::InvalidArgumentError(absl::StrCat("bad tensor '", item, "' (size:ndim)"));
    }
    offset += t.size;
    tensors.push_back(t);
  }
  return tensors;
}

// Writes what one DGC step left: the payload or the refusal, then u and v.
absl::Status WriteDgcStep(const std::string& prefix, const absl::Status& compressed,
                          const std::string& payload,
                          const tally::compress::DgcCompressor& dgc) {
  absl::Status written =
      compressed.ok() ? WriteFile(prefix + ".bin", payload.data(), payload.size())
                      : WriteFile(prefix + ".err", compressed.message().data(),
                                  compressed.message().size());
  for (const auto& [suffix, state] : {std::pair{".u.f32", dgc.momentum()},
                                      std::pair{".v.f32", dgc.velocity()}}) {
    if (written.ok()) written = WriteFile(prefix + suffix, state.data(), state.size() * 4);
  }
  return written;
}

Outcome RunDgc(const std::vector<std::string>& args) {
  if (args.size() != 5) return absl::InvalidArgumentError("dgc OPTIONS TENSORS IN.f32 PREFIX");
  absl::StatusOr<tally::compress::DgcOptions> options = ParseDgcOptions(args[1]);
  if (!options.ok()) return options.status();
  absl::StatusOr<std::vector<tally::compress::DgcTensor>> tensors = ParseDgcTensors(args[2]);
  if (!tensors.ok()) return tensors.status();
  absl::StatusOr<std::vector<float>> x = ReadFloats(args[3]);
  if (!x.ok()) return x.status();
  absl::StatusOr<tally::compress::DgcCompressor> dgc =
      tally::compress::DgcCompressor::Create(*std::move(tensors), *std::move(options));
  if (!dgc.ok()) return Verdict{dgc.status()};
  const size_t d = dgc->dim();
  if (x->size() % d != 0) {
    return absl::InvalidArgumentError(absl::StrCat(args[3], " is not a whole number of updates"));
  }
  for (size_t t = 0; t * d < x->size(); ++t) {
    std::string payload;
    CodecSpec spec;
    const absl::Status compressed =
        dgc->Compress(absl::MakeConstSpan(x->data() + t * d, d), &payload, &spec);
    const absl::Status written =
        WriteDgcStep(absl::StrCat(args[4], ".", t), compressed, payload, *dgc);
    if (!written.ok()) return written;
  }
  return Verdict{};
}

Outcome RunLine(const std::vector<std::string>& args) {
  if (args.size() < 2) return absl::InvalidArgumentError("expected COMMAND SPEC ...");
  if (args[0] == "dgc") return RunDgc(args);
  absl::StatusOr<CodecSpec> spec = ParseSpec(args[1]);
  if (!spec.ok()) return spec.status();
  if (args[0] == "encode") return RunEncode(*spec, args);
  size_t d = 0;
  if (args.size() < 3 || !absl::SimpleAtoi(args[2], &d)) {
    return absl::InvalidArgumentError("expected D after SPEC");
  }
  if (args[0] == "decode") return RunDecode(*spec, d, args);
  if (args[0] == "feedback") return RunFeedback(*spec, d, args);
  return absl::InvalidArgumentError(absl::StrCat("unknown command '", args[0], "'"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tally-codec-vectors MANIFEST (see tools/codec_vectors.cc)\n";
    return 1;
  }
  std::ifstream manifest(argv[1]);
  if (!manifest) {
    std::cerr << "tally-codec-vectors: cannot read " << argv[1] << "\n";
    return 1;
  }
  std::string line;
  for (int number = 1; std::getline(manifest, line); ++number) {
    const std::vector<std::string> args = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (args.empty() || args[0][0] == '#') continue;
    const Outcome outcome = RunLine(args);
    if (!outcome.ok()) {
      std::cerr << "tally-codec-vectors: line " << number << ": " << outcome.status().message()
                << "\n";
      return 1;
    }
    if (outcome->status.ok()) {
      std::cout << "ok\n";
    } else {
      std::cout << "error " << outcome->status.message() << "\n";
    }
  }
  return 0;
}
