// tally C++ client SDK.
//
// A Client talks to one tally server: it joins a federation, asks for tasks,
// pulls the global model, and pushes updates (delta = local - base model,
// weighted by the number of local samples). Large models and updates are sent
// in chunks, so any size works. Transient failures (UNAVAILABLE,
// DEADLINE_EXCEEDED) are retried with exponential backoff and full jitter; an
// update keeps its update id across retries, so the server never counts it
// twice.
//
// RESOURCE_EXHAUSTED with a retry hint from the server is retried after the
// hinted delay. An encoded update larger than the server's
// limits.max_update_bytes (JoinResult::max_update_bytes) fails at once,
// before it is sent, with RESOURCE_EXHAUSTED naming both sizes and no hint.
//
// A call that cannot reach the server waits for it up to
// ClientOptions.connect_timeout (60 s), or fails at once with what to change
// when the TLS set-ups of client and server do not fit.
//
// Security: TLS, mutual TLS and bearer tokens through ClientOptions. A server
// with client authentication answers UNAUTHENTICATED to a caller without a
// valid identity and PERMISSION_DENIED to one acting as another client.
//
// This header needs only the C++ standard library and Abseil; it exposes no
// gRPC or protobuf types. For other languages, tally/tally_c.h wraps it in a
// C API (docs/edge.md).
//
// Thread safety: all methods may be called from several threads at once
// (e.g. a background Heartbeat while PushUpdate runs).
#ifndef TALLY_CLIENT_CLIENT_H_
#define TALLY_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace tally {

inline constexpr char kSdkVersion[] = "0.1.0";

// Deep Gradient Compression of every update ("Deep Gradient Compression:
// Reducing the Communication Bandwidth for Distributed Training"; defaults
// the reference code's, except momentum 0 for federated deltas): clipping,
// momentum correction, top-k of each weight tensor (ndim > 1; biases and
// other 1-D tensors go exactly unless compress_1d), momentum factor
// masking, warm-up of sparsity. Sent as a topk payload. compress/dgc.h has
// the exact arithmetic and what each option means for a per-round delta;
// docs/compression.md measured results.
// Local differential privacy (docs/privacy.md#local-dp): every update is
// clipped to L2 norm clip_norm, then gets discrete Gaussian noise of standard
// deviation noise_multiplier x clip_norm (OpenSSL's CSPRNG), before encoding
// and error feedback. Declared to the server at Join with its per-round
// epsilon at delta (replace-one: sensitivity 2 x clip_norm).
struct LocalDpSettings {
  double clip_norm = 1.0;         // C > 0.
  double noise_multiplier = 1.0;  // z > 0; z x C at most about 1024.
  double delta = 1e-5;            // In (0, 1).
};

struct DgcSettings {
  float momentum = 0.0f;           // m in [0, 1] across rounds; 0 = top-k with EF.
  bool nesterov = false;
  bool momentum_masking = true;
  double clip_norm = 0.0;          // Each update scaled to L2 norm <= clip_norm; 0 = off.
  bool compress_1d = false;        // Sparsify 1-D tensors and scalars too.
  double compress_ratio = 0.001;   // Fraction of each compressed tensor sent, (0, 1].
  uint32_t warmup_steps = 0;       // Updates with a denser ratio first.
  std::vector<double> warmup_ratios;  // One per warm-up step; empty = geometric.
  bool half_values = false;        // Values as float16.
  bool zstd = false;
  int32_t zstd_level = 3;
};

struct ClientOptions {
  std::string target = "localhost:50051";  // gRPC target, e.g. "host:port".
  std::string client_id;                   // Required; [A-Za-z0-9._:@-]{1,128}.
  int max_attempts = 6;                    // Per call, including the first.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double backoff_multiplier = 2.0;
  absl::Duration call_timeout = absl::Seconds(60);      // Unary calls.
  absl::Duration transfer_timeout = absl::Minutes(30);  // Pull/Push streams.
  // How long a call waits for a connection to the server (one that is not up
  // yet, e.g. starting in a container, or restarting) before it fails with
  // UNAVAILABLE; not counted in max_attempts. Calls fail at once, saying
  // what to change, when the server is reachable but the connection cannot
  // work: TLS on one side only, a refused server or client certificate.
  absl::Duration connect_timeout = absl::Seconds(60);
  size_t chunk_bytes = 1 << 20;                         // Upload chunk size; capped by the server.
  // false (default): Clients of one process that talk to the same target
  // with the same settings share one TCP connection (gRPC's global subchannel
  // pool). true: this Client has a connection of its own, as a separate
  // device would (load generators; many Clients in one process).
  bool own_connection = false;
  // Seeds retry jitter and generated update ids; 0 (default) = random. A
  // fixed seed makes every process generate the same update ids, which a
  // long-lived server then treats as duplicates: use it only in tests.
  uint64_t seed = 0;
  // Metered or shared links: the average rate, in bytes per second, that this
  // client's model pulls and update pushes may use together (payload bytes;
  // gRPC and HTTP/2 framing add a little). Pushes are paced chunk by chunk
  // (in chunks of about a tenth of a second's budget), pulls by reading
  // slower, which gRPC's flow control passes back to the server. 0
  // (default): unlimited. transfer_timeout still bounds each transfer: raise
  // it for large models on slow links.
  uint64_t max_bandwidth_bytes_per_s = 0;

  // Security. Empty tls_ca_file = plaintext. Otherwise TLS, verifying the
  // server's certificate against this PEM CA file (for the target's host
  // name, or tls_server_name if set).
  std::string tls_ca_file;
  std::string tls_server_name;
  // Mutual TLS: this client's PEM certificate chain and private key. The
  // server takes the certificate's CN / SAN as the client's identity, which
  // must equal client_id.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Bearer token sent with every call ("authorization: Bearer ..."; needs
  // TLS). The server maps it to an identity, which must equal client_id.
  std::string auth_token;

  // Compressed uploads: the codecs this client can send ("float16",
  // "bfloat16", "int8", "qsgd", "sign", "topk", "randk"; docs/compression.md), offered at
  // Join. The server assigns the first codec of its compression.upload list
  // that is offered here (JoinResult::upload_codec), with its parameters, and
  // PushUpdate encodes every update with it. Empty (default): float32.
  std::vector<std::string> upload_codecs;
  // Contractive lossy codecs (float16, bfloat16, int8, sign, topk, randk
  // biased): what compression dropped from an update is added to the next
  // one (error feedback, docs/algorithms.md#error-feedback), so that nothing is lost for
  // good. Kept per Client, updated when a push is acknowledged. Never
  // applied to qsgd and rescaled randk (unbiased, their error can exceed the
  // update: the residual would grow; compress/error_feedback.h).
  bool error_feedback = true;
  // Compressed downloads: the codecs this client accepts models and model
  // deltas in, offered at Join. The server assigns the first codec of its
  // compression.download list offered here (JoinResult::download_codec), and
  // deltas between versions when this list has its
  // compression.download_delta codec (JoinResult::delta_codec). Default: all
  // of them, so the server's configuration decides; {"float32"} asks for the
  // exact model every time (unless the server's delta codec is float32: the
  // chain's R then differs from the model by the rounding of float32 sums). With deltas the SDK keeps a copy of the last
  // model pulled (what the next delta applies to).
  std::vector<std::string> download_codecs = {"float32", "float16", "bfloat16",
                                              "int8",    "sign",    "topk"};
  // Set: every update goes through DGC (state kept per Client, advanced when
  // a push is acknowledged; error_feedback does not apply, DGC's velocity
  // keeps what was not sent). The SDK offers topk at Join, and Join fails
  // with FAILED_PRECONDITION unless the server assigns it
  // (compression.upload must list topk). Use server optimizer "sgd": DGC
  // already applies the momentum.
  std::optional<DgcSettings> dgc;
  // Set: local DP on every update (LocalDpSettings above). Default: none.
  std::optional<LocalDpSettings> local_dp;
  // What this client declares about itself at every Join (e.g. "region" ->
  // "eu", "device" -> "gpu"); a server's rounds.filter selects on them
  // (docs/workflow.md#sampling). At most 16 entries; names 1..64 bytes of
  // [A-Za-z0-9._-], values at most 128 printable ASCII bytes.
  std::map<std::string, std::string> attributes;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // Within the flat parameter vector.
  uint64_t size = 0;
};

struct ModelInfo {
  std::vector<TensorInfo> tensors;
  uint64_t num_params = 0;
  uint64_t layout_hash = 0;
};

struct JoinResult {
  ModelInfo model;
  std::string upload_codec = "float32";  // The codec PushUpdate encodes with.
  std::string download_codec = "float32";  // The codec PullModel receives models in.
  std::string delta_codec;                 // Of model deltas; empty = none.
  uint64_t model_version = 0;
  uint32_t max_chunk_bytes = 0;
  uint64_t max_update_bytes = 0;
  absl::Duration heartbeat_interval;
};

// A per-round setting from the server's client_config: a number or a string.
using TaskConfigValue = std::variant<double, std::string>;

struct Task {
  // kEvaluate: pull model_version, evaluate it on local data (no training)
  // and call ReportEvaluation(task, ...).
  enum class Kind { kTrain, kWait, kDone, kEvaluate };
  Kind kind = Kind::kWait;
  uint64_t round = 0;
  uint64_t model_version = 0;
  uint32_t local_steps = 0;  // 0 = client decides.
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration retry_after;
  // The server's per-round settings (docs/workflow.md#per-round-config),
  // e.g. "lr" -> 0.05.
  std::map<std::string, TaskConfigValue> config;
  uint64_t evaluation_id = 0;  // kEvaluate: echoed by ReportEvaluation.

  // config[name] if it is a number, else `fallback`.
  double ConfigNumber(const std::string& name, double fallback) const;
  // config[name] if it is a string, else `fallback`.
  std::string ConfigText(const std::string& name, const std::string& fallback) const;
};

struct Model {
  uint64_t version = 0;
  uint64_t round = 0;
  ModelInfo info;
  std::vector<float> params;  // info.num_params floats.
  uint64_t payload_bytes = 0;  // Model bytes received (after compression).
  uint32_t deltas = 0;         // Deltas applied to the model held (0 = a full model).
};

// One update, in one of two forms (PushUpdate refuses a mix with
// INVALID_ARGUMENT): `delta`, the local model minus the model it was trained
// from; or `weights` and `base`, the local model and that model (the pulled
// Model::params), of which the SDK sends weights - base. Never put weights in
// `delta`: the server adds the delta to the global model.
struct Update {
  uint64_t round = 0;
  uint64_t base_version = 0;
  uint64_t num_samples = 1;
  uint32_t local_steps = 0;
  absl::Span<const float> delta;    // Local model minus base model; or
  absl::Span<const float> weights;  // the local model, with
  absl::Span<const float> base;     // the model it was trained from.
  std::map<std::string, double> metrics;
  std::string update_id;  // Empty = generated; retries reuse it.
};

struct PushResult {
  std::string update_id;
  bool duplicate = false;  // The server already had this update.
  uint64_t round = 0;
  uint64_t model_version = 0;
  uint32_t attempts = 0;
  uint64_t payload_bytes = 0;  // Update bytes sent (after compression).
};

struct ServerStatusInfo {
  uint64_t model_version = 0;
  uint64_t round = 0;
  uint64_t rounds_completed = 0;
  uint64_t rounds_failed = 0;
  uint32_t connected_clients = 0;
  uint32_t updates_in_round = 0;
  uint32_t uploads_in_flight = 0;
  uint64_t updates_accepted = 0;
  uint64_t updates_rejected = 0;
  uint64_t bytes_received = 0;
  uint64_t peak_rss_bytes = 0;
  uint64_t rss_bytes = 0;
  bool done = false;
  int64_t last_round_millis = 0;
  uint64_t restored_version = 0;    // Restored from a checkpoint at start (0: none).
  std::string restored_from;        // Its file.
  uint64_t restored_clients = 0;    // Clients it had records of (update ids, speeds).
  uint64_t checkpoint_version = 0;  // Newest version on disk (0: none).
  // The server's build (`tally-server --version`): tally's version, the git
  // commit ("unknown" without git) and the build type.
  std::string server_version;
  std::string server_commit;
  std::string server_build_type;
  // Client metrics (docs/workflow.md#metrics): of the latest completed
  // round's updates, and of the latest completed federated evaluation.
  std::map<std::string, double> fit_metrics;
  uint64_t fit_metrics_round = 0;
  std::map<std::string, double> evaluation_metrics;
  uint64_t evaluation_version = 0;
  uint64_t evaluations_completed = 0;
  uint64_t metric_names_dropped = 0;
  std::string history_path;
  // Central differential privacy (docs/privacy.md): epsilon spent so far at
  // privacy_delta, noised steps charged, the budget (0: none) and the clip
  // norm of the next step. All 0 when the server runs without it.
  double privacy_epsilon = 0;
  double privacy_delta = 0;
  uint64_t privacy_steps = 0;
  double privacy_target_epsilon = 0;
  double privacy_clip_norm = 0;
};

// When the server answered RESOURCE_EXHAUSTED (too many uploads at once, or
// this client's upload rate) it says when to try again; the SDK waits that
// long and retries by itself (within max_attempts and the call's deadline).
// Returns the hint of a status the SDK returned, if it has one.
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);
  // Leaves, if joined (one attempt of at most a second, errors ignored).
  virtual ~Client() = default;

  // Opens a session (call first; calling again opens a fresh session,
  // replacing this client's own). The server refuses a Join under a client
  // id whose session another process holds with ALREADY_EXISTS while that
  // session is live (see docs/sessions.md): give each process its own id.
  virtual absl::StatusOr<JoinResult> Join() = 0;

  // What to do next; waits up to `wait` on the server when there is nothing.
  virtual absl::StatusOr<Task> GetTask(absl::Duration wait = absl::ZeroDuration()) = 0;

  // The global model at `version` (0 = latest). Validates the layout hash and
  // the payload length against what Join returned. With a lossy download
  // codec the model is the server's rounding of it (see download_codecs).
  virtual absl::StatusOr<Model> PullModel(uint64_t version = 0) = 0;

  // Uploads one update: its delta, or weights - base (see Update; a mix, or
  // weights without base, is INVALID_ARGUMENT before anything is sent).
  // ALREADY_EXISTS from the server (a retry of an update it already
  // accepted) is reported as success with duplicate = true.
  // RESOURCE_EXHAUSTED without a RetryAfter hint: the encoded update exceeds
  // the server's max_update_bytes (not sent, not retried).
  virtual absl::StatusOr<PushResult> PushUpdate(const Update& update) = 0;

  // Blocks until a model version > `after_version` is published, or until
  // `timeout`; returns the newest version seen (or DEADLINE_EXCEEDED).
  virtual absl::StatusOr<uint64_t> WaitForVersion(uint64_t after_version,
                                                  absl::Duration timeout) = 0;

  // Streams version notices to `on_version` until it returns false, the
  // server ends the stream, or `timeout` passes (each of which returns OK).
  // A dropped stream is reopened after the last version seen.
  virtual absl::Status WatchModel(
      uint64_t after_version, absl::Duration timeout,
      const std::function<bool(uint64_t version, uint64_t round)>& on_version) = 0;

  // The result of an EVALUATE task: `metrics` (name -> finite value; names
  // 1..64 printable ASCII bytes) measured on `num_examples` > 0 local
  // examples (their weight in the server's mean). INVALID_ARGUMENT before
  // anything is sent for a task that is not kEvaluate or bad metrics.
  // Returns the reports the server has taken for this evaluation so far.
  virtual absl::StatusOr<uint32_t> ReportEvaluation(
      const Task& task, uint64_t num_examples, const std::map<std::string, double>& metrics) = 0;

  virtual absl::Status Heartbeat() = 0;
  virtual absl::Status Leave() = 0;

  // Admin service.
  virtual absl::StatusOr<ServerStatusInfo> GetServerStatus() = 0;

  virtual const ClientOptions& options() const = 0;
};

}  // namespace tally

#endif  // TALLY_CLIENT_CLIENT_H_
