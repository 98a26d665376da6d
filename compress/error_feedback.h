// Client-side error feedback (docs/algorithms.md#error-feedback, EF / EF-SGD; Seide et al.
// 2014, Karimireddy et al. 2019): what a lossy codec drops from one update is
// kept and added to the next, so that over many updates the server receives
// everything the client meant to send. The C++ SDK owns one ErrorFeedback per
// client (and per model layout); the Python SDK mirrors it.
//
// Per update x (d floats, in parameter units: the client's delta
// local − base, learning rate already applied), with the residual e (d
// floats, zero at construction and after Reset):
//     p       = x + e                      (float32, entry by entry)
//     payload = Encode(spec, p)            (compress/codec.h)
//     e       = p − Decode(spec, payload)  (float32, entry by entry)
// The decode is the codec's own decoder, so e is exactly what the server will
// not see: the server's DecodeAccumulate adds Decode(spec, payload) bit for
// bit. Hence after T updates
//     Σ_t Decode(payload_t) = Σ_t x_t − e_T + Σ_t r_t,
// r_t = the float32 rounding of p_t = x_t + e_t (|r_t| ≤ 2^-24·|p_t|); the
// gap between what was sent and what was meant stays bounded by ‖e_T‖ while
// Σ x_t grows. With a lossless codec (float32) e is 0 after every update (a
// residual left by an earlier lossy spec is sent in full). Use it only with
// the contractive codecs, whose error is smaller than what they encode
// (topk, sign, randk without rescale, int8, float16, bfloat16;
// ErrorFeedbackSuits): with the unbiased ones (qsgd, randk with rescale)
// the error can exceed the update, and the residual then grows every round
// (measured with tally-sim: qsgd s=7 and rescaled random-k diverge).
//
// Not provided: EF21 (Richtárik, Sokolov, Fatkhullin, "EF21: A New, Simpler,
// Theoretically Better, and Practically Faster Error Feedback", NeurIPS
// 2021: worker keeps g_i and sends c_i = C(x − g_i),
// g_i ← g_i + c_i). Its messages are increments of a per-client estimate
// that the server must keep summed (ḡ = mean g_i) and apply in full every
// round, whether or not a client sent anything; tally's contract is that an
// update is a delta applied once (the round's weighted mean of deltas), with
// partial participation, so EF21's messages would be misread. It needs
// server-side state first.
//
// Thread safety: thread-compatible (one client's state; no internal locks).
#ifndef TALLY_COMPRESS_ERROR_FEEDBACK_H_
#define TALLY_COMPRESS_ERROR_FEEDBACK_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "compress/codec.h"

namespace tally::compress {

// True for the codecs error feedback is for (contractive, lossy: the file
// comment); false for float32 (nothing dropped), qsgd, randk with rescaling
// and spsa. The SDKs apply it only where this holds.
bool ErrorFeedbackSuits(const CodecSpec& spec);

struct ErrorFeedbackOptions {
  // Keep the residual (default true). false: Compress is Encode(spec, x) and
  // the residual stays 0 — for comparisons, or for unbiased codecs. With a
  // lossless codec the residual is 0 either way.
  bool enabled = true;
};

class ErrorFeedback {
 public:
  // The residual of a d-entry model starts at zero.
  explicit ErrorFeedback(size_t d, ErrorFeedbackOptions options = {});

  // *payload = Encode(spec, x + e) and e updated as in the file comment. The
  // update header must carry `spec`. The spec may change between calls (the
  // residual is in parameter units, whatever the codec). INVALID_ARGUMENT if
  // x.size() != d, or from Encode (invalid spec, non-finite x + e, a value
  // the format cannot hold); on error the residual is unchanged.
  absl::Status Compress(const CodecSpec& spec, absl::Span<const float> x, std::string* payload);
  // The same encoding, leaving this residual as it is: *next becomes what
  // Compress would leave in e (d floats, the only memory it needs besides
  // the payload). For callers that adopt the new residual only once the
  // server has acknowledged the update (the C++ SDK): Adopt(*next) then.
  // Errors as Compress; with the feedback disabled, *next is all zeros.
  absl::Status CompressPending(const CodecSpec& spec, absl::Span<const float> x,
                               std::string* payload, std::vector<float>* next) const;
  // e = residual (from CompressPending). INVALID_ARGUMENT unless it has d
  // entries.
  absl::Status Adopt(std::vector<float> residual);

  // e = 0: after the server rejected or lost an update the residual refers
  // to, or when the client restarts from a new global model.
  void Reset();

  absl::Span<const float> residual() const { return residual_; }
  size_t dim() const { return residual_.size(); }
  const ErrorFeedbackOptions& options() const { return options_; }

 private:
  ErrorFeedbackOptions options_;
  std::vector<float> residual_;
  std::vector<float> scratch_;  // Compress: p = x + e, swapped with residual_.
};

}  // namespace tally::compress

#endif  // TALLY_COMPRESS_ERROR_FEEDBACK_H_
