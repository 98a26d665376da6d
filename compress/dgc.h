// Deep Gradient Compression on the client ("Deep Gradient Compression:
// Reducing the Communication Bandwidth for Distributed Training", Lin, Han,
// Mao, Wang, Dally, ICLR 2018; reference code synxlin/deep-gradient-
// compression): local clipping, momentum correction, top-k selection of the
// accumulated velocity, momentum factor masking and a warm-up schedule of
// sparsity, for one flat model vector whose tensor boundaries are known.
// The C++ SDK owns one DgcCompressor per client; the Python SDK mirrors it.
// docs/compression.md explains the method and its federated adaptation.
//
// Federated deltas. The paper compresses one gradient per iteration; a
// federated client transmits one delta (local − base, after many local SGD
// steps) per round, and that delta is what DGC sees: every per-step notion
// below is per pushed update (per round).
//  - Clipping (the paper's local gradient clipping, before accumulation):
//    with clip_norm C > 0, the whole update — every tensor, compressed or
//    not — is scaled to L2 norm at most C before it enters u and v. The
//    paper clips each worker's gradient to the global threshold times
//    N^(-1/2) (N workers): choose C the same way from the norm a delta of
//    the whole federation may have. Clipping a delta bounds how far one
//    client moves the model in one round (as Flower's fixed clipping of
//    updates does), and bounds what v can accumulate.
//  - Momentum m is momentum across rounds (server-side momentum folded into
//    the client, as FedAvgM with server learning rate 1 and β = m): the
//    long-run step is 1/(1 − m) times the delta's. Local momentum belongs to
//    the client's own optimizer, inside the delta. For deltas the default is
//    therefore m = 0 (v then accumulates the clipped deltas: top-k with error
//    feedback plus clipping, warm-up and per-tensor selection); the paper's
//    m = 0.9 on deltas multiplies the step ~10×.
//  - Scope: by default only tensors with ndim > 1 are compressed; 1-D
//    tensors and scalars (biases, norm layers) are sent exactly, every
//    entry, with no client state (the paper's choice: they are a small part
//    of a large model). With compress_1d they are compressed like the
//    others (their own k = ⌈n · ratio⌉, at least 1), which small models
//    need: on a 64-32-10 MLP the 42 biases alone cap compression at ~40×.
//    The reference applies ordinary momentum to exact tensors on the
//    receiving side; in tally that is the server optimizer's business (and
//    a server momentum also applies to the compressed entries: use "sgd" on
//    the server with DGC clients).
//
// Per Compress(g), g = what the client transmits this time (its delta
// local − base), first the clipping, in double: n² = Σ_j g_j² over all d
// entries in index order (each square exact), n = sqrt(n²); if C > 0 and
// n > C, every g_j ← g_j · s in float32 with s = float32(C / n). Then for
// every entry j of a compressed tensor, in float32 without FMA:
//   plain:     u_j ← m·u_j + g_j;      v_j ← v_j + u_j
//   Nesterov:  u_j ← m·(u_j + g_j);    v_j ← (v_j + u_j) + g_j
// then per compressed tensor of n entries, k = min(n, ⌈n · ratio_e⌉)
// (double arithmetic), the k entries of largest |v_j|, ties to the lowest
// index (exact top-k: the reference's strided sampling with threshold
// adaptation is a speed-up aiming at the same set, and keeps "the first k
// candidates in index order" — the same tie rule). Sent: v_j at those
// entries, the (clipped) g_j at every entry of the other tensors. After a successful
// encode, at each selected j:
//   u_j ← 0 (if momentum_masking);   v_j ← v_j − sent_j
// where sent_j = v_j with float32 values (so v_j ← 0, as the reference), or
// v_j rounded to float16 with half_values (the rounding error stays in v, as
// error feedback would keep it; the reference drops it).
//
// Warm-up of sparsity (the reference code's schedule), step e = the number
// of successful Compress calls since construction or Reset (the reference's
// epoch), E = warmup_steps, base = compress_ratio:
//   e ≥ E:                 ratio_e = base
//   e < E, warmup_ratios:  ratio_e = warmup_ratios[e]
//   e < E otherwise:       ratio_e = max(c^(e+1), base),  c = base^(1/(E+1))
// in double with std::pow (base 0.001, E = 5: 0.316228, 0.1, 0.031623,
// 0.01, 0.003162, then 0.001). The paper instead shrinks the density ×1/4
// per epoch (0.25, 0.0625, 0.015625, 0.004, 0.001): give that as
// warmup_ratios. The ratio only sets k on the client; the update header
// carries k itself, so SDKs need not agree on it to the last bit.
//
// Non-finite values: a NaN in v would never be selected and would persist,
// so Compress rejects a non-finite g, and an update whose
// u or v would overflow to ±inf, before changing any state: u and v are
// always finite.
//
// Wire: one topk payload (compress/codec.h) over the whole d-vector,
// indices ascending: every entry of the uncompressed tensors and the
// selected entries of the compressed ones; spec = DefaultSpec(kTopK) with
// k = the number of entries sent, half_values and zstd from the options.
// The update header must carry that spec; the server's DecodeAccumulate is a
// scatter-add of the entries.
//
// Thread safety: thread-compatible (one client's state; no internal locks).
#ifndef TALLY_COMPRESS_DGC_H_
#define TALLY_COMPRESS_DGC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compress/codec.h"
#include "core/model_layout.h"

namespace tally::compress {

// One tensor of the flat model vector.
struct DgcTensor {
  uint64_t offset = 0;  // First entry.
  uint64_t size = 1;    // Entries, >= 1.
  uint32_t ndim = 0;    // Rank; only ndim > 1 is compressed.
};

// The tensors of a model layout (ndim = shape.size()).
inline std::vector<DgcTensor> DgcTensorsFromLayout(const ModelLayout& layout) {
  std::vector<DgcTensor> tensors;
  for (const TensorLayout& t : layout.tensors()) {
    tensors.push_back({t.offset, t.size, static_cast<uint32_t>(t.shape.size())});
  }
  return tensors;
}

// Defaults are the reference's (configs/dgc/__init__.py) except momentum
// (0, not the reference's SGD momentum 0.9: see "Federated deltas" above),
// clip_norm and compress_1d (which the reference does not have).
struct DgcOptions {
  // Momentum m in [0, 1] across updates, used as float32 (default 0). 0: no
  // momentum correction (v accumulates g: top-k with error feedback).
  float momentum = 0.0f;
  // Nesterov momentum correction (default false).
  bool nesterov = false;
  // Momentum factor masking: u_j ← 0 where v_j was sent (default true).
  bool momentum_masking = true;
  // C: each update is scaled to L2 norm <= C before accumulation, in [0,
  // inf) (default 0: no clipping).
  double clip_norm = 0.0;
  // Compress 1-D tensors and scalars too (default false: sent exactly).
  bool compress_1d = false;
  // base: fraction of each compressed tensor sent after the warm-up, in
  // (0, 1] (default 0.001, i.e. 99.9 % sparsity).
  double compress_ratio = 0.001;
  // E: number of warm-up steps (Compress calls) (default 0: none).
  uint32_t warmup_steps = 0;
  // Explicit warm-up ratios, one per warm-up step, each in (0, 1] (the
  // reference's warmup_coeff list); empty (default) = the geometric schedule.
  std::vector<double> warmup_ratios;
  // Values as float16 on the wire (default false: float32).
  bool half_values = false;
  // Wrap the payload in a zstd frame at zstd_level (default false, 3).
  bool zstd = false;
  int32_t zstd_level = 3;
};

// s of the file comment: the factor the update is scaled by (1 if
// clip_norm <= 0 or the norm is at most clip_norm). g must be finite.
float DgcClipScale(absl::Span<const float> g, double clip_norm);

// ratio_e of the file comment for step e. Requires valid options (Create).
double DgcCompressRatio(const DgcOptions& options, uint64_t step);

class DgcCompressor {
 public:
  // `tensors` must tile [0, d) in order: the first at offset 0, each next
  // one where the previous ends, d = the end of the last (ModelLayout's
  // tensors do). INVALID_ARGUMENT naming the tensor or option otherwise.
  static absl::StatusOr<DgcCompressor> Create(std::vector<DgcTensor> tensors,
                                              DgcOptions options = {});

  // One update (d entries): *payload = the topk payload and *spec = the
  // codec spec for the update header, as in the file comment; then advances
  // the step. INVALID_ARGUMENT if its size is not d, it has a non-finite
  // entry, u
  // or v would overflow, or (half_values) a sent value exceeds float16's
  // range; on error nothing changes (u, v, step, *spec; *payload may be
  // cleared).
  absl::Status Compress(absl::Span<const float> update, std::string* payload, CodecSpec* spec);

  // u = v = 0 and step = 0 (a client starting over from a new model).
  void Reset();

  size_t dim() const { return momentum_.size(); }
  uint64_t step() const { return step_; }
  // The ratio the next Compress uses.
  double ratio() const { return DgcCompressRatio(options_, step_); }
  // u and v over the whole vector (zero on the uncompressed tensors).
  absl::Span<const float> momentum() const { return momentum_; }
  absl::Span<const float> velocity() const { return velocity_; }
  const DgcOptions& options() const { return options_; }

 private:
  DgcCompressor(std::vector<DgcTensor> tensors, DgcOptions options, size_t d);

  // Whether t goes through momentum and top-k (else sent exactly).
  bool Compressed(const DgcTensor& t) const;
  // Next u_j from u_j and g_j (the momentum correction formulas).
  float NextMomentum(float u, float g) const;
  // Appends the selection of the compressed tensor t (from scratch_) and the
  // entries of an uncompressed one to indices_ / values_.
  void Select(const DgcTensor& t, absl::Span<const float> g, double ratio);
  // After a successful encode: u, v ← their next values, then masking.
  void Commit(absl::Span<const float> g);

  std::vector<DgcTensor> tensors_;
  DgcOptions options_;
  uint64_t step_ = 0;
  std::vector<float> momentum_;  // u
  std::vector<float> velocity_;  // v
  // Per call, reused: the clipped update, the next v, |v| keys of one
  // tensor, what is sent.
  std::vector<float> clipped_;
  std::vector<float> scratch_;
  std::vector<uint32_t> keys_;
  std::vector<uint64_t> indices_;
  std::vector<float> values_;
};

}  // namespace tally::compress

#endif  // TALLY_COMPRESS_DGC_H_
