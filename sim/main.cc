// tally-sim: runs a federated-learning demo over real gRPC on loopback.
//
// N simulated clients (one thread each, each with its own tally::Client)
// train a softmax-regression classifier on synthetic non-IID data (Dirichlet
// label split) against a tally server: an in-process one on 127.0.0.1:0 by
// default, or an external one given with --server. Prints per-round test
// accuracy, loss, bytes received by the server and round time, then a summary.
// Exit status: 0 if accuracy rose above the initial model's, 1 otherwise or on
// error, 2 on bad flags.
//
// Byzantine clients: --byzantine=N makes the first N clients run --attack
// (sim/attacks.h); the in-process server's strategy comes from --rule, --pre
// and --f (f defaults to N for a robust rule). Under an attack the accuracy
// check is not applied (FedAvg is expected to collapse); exit 0 unless an
// error. --compare runs every (strategy, attack) pair of --compare_rules x
// --compare_attacks in-process on the same seed, --compare_rounds rounds each,
// and prints one table of final test accuracy.
//
// --async_compare: the virtual-time heterogeneous mode (sim/virtual_time.h):
// no gRPC, no server; each of --schedules runs the same clients for
// --virtual_hours of simulated time. Exit 0 unless an error.
//
// Compressed uploads: --upload_codec=NAME (with --codec_* parameters and
// --error_feedback) gives the in-process server that compression.upload entry
// and makes every client offer the codec; the summary adds the upload bytes
// per client per round (mean PushResult::payload_bytes) and the rounds to
// --target_accuracy. --codec_compare runs every configuration of
// sim/upload_codec.h's CodecCompareRuns() on the same seed and data,
// --codec_compare_rounds rounds each, and prints a markdown table.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "compress/codec.h"
#include "core/cli.h"
#include "core/status_macros.h"
#include "proto/codec_params.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"
#include "sim/attacks.h"
#include "sim/federation.h"
#include "sim/report.h"
#include "sim/softmax_model.h"
#include "sim/synthetic_data.h"
#include "sim/upload_codec.h"
#include "sim/virtual_time.h"

ABSL_FLAG(std::string, server, "",
          "Address (host:port) of a running tally-server to use. Empty: start an "
          "in-process server on 127.0.0.1 with a free port.");
ABSL_FLAG(int, clients, 0,
          "Number of simulated clients (one thread each); 0 = 20, or 50 with --async_compare.");
ABSL_FLAG(int, rounds, 30,
          "Stop after this many rounds. With the in-process server this is also its "
          "total_rounds; an external server may say DONE earlier.");
ABSL_FLAG(int, features, 0,
          "Input features F; the model's kernel is [F, classes]. 0 = 32, or 256 with "
          "--codec_compare (2570 parameters: top-k at 1% keeps 26).");
ABSL_FLAG(int, classes, 10, "Classes C; the model's bias is [C].");
ABSL_FLAG(int, samples_per_client, 0,
          "Mean training samples per client (the Dirichlet split varies it); 0 = 200, or 2000 "
          "with --codec_compare (enough data that 100 rounds do not overfit 2570 parameters).");
ABSL_FLAG(int, test_samples, 2000, "Held-out test samples for the per-round evaluation.");
ABSL_FLAG(double, alpha, 0.5,
          "Dirichlet concentration of the label split; smaller is more non-IID.");
ABSL_FLAG(double, separation, 0,
          "Std dev of the class-mean coordinates; 0 = auto (0.5 * sqrt(32 / features), "
          "about 84% centralized accuracy).");
ABSL_FLAG(int, local_epochs, 1, "Local epochs per round (unless the task sets local steps).");
ABSL_FLAG(int, batch, 32, "Local mini-batch size.");
ABSL_FLAG(double, lr, 0, "Local SGD learning rate; 0 = 0.1, or 0.02 with --codec_compare.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the synthetic data and of local training (shuffling).");
ABSL_FLAG(int64_t, chunk_bytes, 1 << 20, "Upload chunk size in bytes (the server may cap it).");
ABSL_FLAG(bool, quiet, false, "No live progress line on stderr.");
ABSL_FLAG(std::string, server_log_level, "warning",
          "Log level of the in-process server: debug, info, warning, error.");
ABSL_FLAG(int, byzantine, 0,
          "The first N clients are Byzantine and run --attack. With --compare, 0 = clients / 5.");
ABSL_FLAG(std::string, attack, "none",
          "Byzantine attack: none, sign_flip, scaling, gaussian, alie, ipm, label_flip, nan.");
ABSL_FLAG(double, attack_scale, -10, "scaling attack: the factor applied to the honest delta.");
ABSL_FLAG(double, attack_sigma, 1.0, "gaussian attack: noise standard deviation.");
ABSL_FLAG(double, alie_z, 0,
          "alie attack: z in mean - z * std; 0 = the ALIE paper's z_max for (clients, byzantine).");
ABSL_FLAG(double, ipm_epsilon, 0.1, "ipm attack: epsilon in -epsilon * mean.");
ABSL_FLAG(std::string, rule, "",
          "In-process server's aggregation rule (mean = FedAvg, krum, median, trimmed_mean, "
          "flag, ...). Empty: the server default (mean). Ignored with --server.");
ABSL_FLAG(std::string, pre, "",
          "In-process server's pre-steps, comma-separated (nnm, clipping, arc, bucketing). "
          "Ignored with --server.");
ABSL_FLAG(int, f, -1,
          "In-process server's declared Byzantine count; -1 = --byzantine for a robust rule. "
          "Ignored with --server.");
ABSL_FLAG(bool, compare, false,
          "Run every strategy of --compare_rules against every attack of --compare_attacks "
          "with the in-process server, same seed, and print a table of final test accuracy.");
ABSL_FLAG(std::string, compare_rules, "mean,krum,median,trimmed_mean,nnm+trimmed_mean,flag",
          "--compare strategies, comma-separated; each is [pre+...+]rule, e.g. "
          "nnm+trimmed_mean.");
ABSL_FLAG(std::string, compare_attacks, "none,sign_flip,alie,ipm,label_flip,gaussian",
          "--compare attacks, comma-separated.");
ABSL_FLAG(int, compare_rounds, 10, "Rounds per --compare run (--rounds is not used there).");
ABSL_FLAG(bool, async_compare, false,
          "Virtual-time heterogeneous mode (no gRPC, no server): run the same workload under "
          "each of --schedules in simulated time and print time and client updates to "
          "--target_accuracy and the final accuracy. --clients defaults to 50 here.");
ABSL_FLAG(std::string, schedules, "sync,fedasync,fedbuff,fedfix,fedcompass",
          "--async_compare: schedules to run, comma-separated (sync = FedAvg rounds).");
ABSL_FLAG(double, target_accuracy, 0,
          "The test accuracy whose first round (--async_compare: virtual time) is reported; "
          "0 = 0.8 (the default runs plateau near 0.85), or 0.85 with --codec_compare (its "
          "float32 run plateaus near 0.86).");
ABSL_FLAG(double, virtual_hours, 1, "--async_compare: virtual time simulated per schedule.");
ABSL_FLAG(std::string, speed_distribution, "normal",
          "--async_compare: per-client seconds per local step, normal (mean --speed_mean, std "
          "--speed_std) or exponential (mean --speed_mean); floored at 0.1 * mean.");
ABSL_FLAG(double, speed_mean, 1.0, "--async_compare: mean seconds per local step.");
ABSL_FLAG(double, speed_std, 0.3, "--async_compare: std of seconds per step (normal only).");
ABSL_FLAG(double, speed_jitter, 0,
          "--async_compare: per-task relative jitter of the compute time (0 = none).");
ABSL_FLAG(double, dropout, 0, "--async_compare: probability that a client vanishes during a task.");
ABSL_FLAG(double, dropout_return, 600,
          "--async_compare: mean seconds until a vanished client returns; < 0 = never.");
ABSL_FLAG(int, local_steps, 100,
          "--async_compare: local steps per task for sync, fedasync, fedbuff, fedfix "
          "(fedcompass assigns Q in [--q_min, --q_max]).");
ABSL_FLAG(int, sync_clients_per_round, 0,
          "--async_compare: sync samples this many clients per round; 0 = all.");
ABSL_FLAG(double, server_lr, 1.0, "--async_compare: sgd learning rate on the aggregate.");
ABSL_FLAG(double, async_alpha, 0.9, "--async_compare: mixing rate alpha (fedasync/buff/compass).");
ABSL_FLAG(std::string, staleness, "polynomial",
          "--async_compare: staleness function: constant, polynomial, hinge.");
ABSL_FLAG(double, staleness_a, 0.5, "--async_compare: polynomial exponent / hinge slope a.");
ABSL_FLAG(double, staleness_b, 4, "--async_compare: hinge threshold b.");
ABSL_FLAG(std::string, client_weights, "equal",
          "--async_compare: async client weights, equal (1/N) or sample_size.");
ABSL_FLAG(int, buffer_size, 3, "--async_compare: FedBuff's K.");
ABSL_FLAG(double, fedfix_window, 0,
          "--async_compare: FedFix window in seconds; 0 = 0.5 * local_steps * speed_mean "
          "(half a typical task, as FedFix-0.5).");
ABSL_FLAG(int, q_min, 20, "--async_compare: FedCompass Q_min.");
ABSL_FLAG(int, q_max, 100, "--async_compare: FedCompass Q_max.");
ABSL_FLAG(double, latest_time_factor, 1.5, "--async_compare: FedCompass lambda.");
ABSL_FLAG(double, speed_momentum, 0.9, "--async_compare: FedCompass speed EMA weight mu.");
ABSL_FLAG(std::string, upload_codec, "float32",
          "Codec of the clients' updates: float32 (uncompressed), float16, bfloat16, int8, qsgd, "
          "sign, topk, randk. The in-process server accepts it with the --codec_* parameters; "
          "an external --server assigns its own parameters (or float32 if it does not accept "
          "it).");
ABSL_FLAG(double, codec_ratio, 0, "topk, randk: k = ceil(ratio * params); 0 = 0.01.");
ABSL_FLAG(uint64_t, codec_k, 0, "topk, randk: k entries (overrides --codec_ratio); 0 = ratio.");
ABSL_FLAG(int, codec_levels, 0, "qsgd: levels s; 0 = 7.");
ABSL_FLAG(int, codec_block_size, -1,
          "int8, qsgd, sign: entries per scale; 0 = one block; -1 = the codec's default (int8 "
          "256, qsgd 512, sign 0).");
ABSL_FLAG(bool, codec_half_values, false, "topk, randk: values as float16.");
ABSL_FLAG(bool, codec_biased, false,
          "randk: do not rescale the values by params / k (contractive; for error feedback).");
ABSL_FLAG(bool, codec_zstd, false, "Wrap every payload in a zstd frame.");
ABSL_FLAG(bool, error_feedback, true,
          "Contractive lossy codecs: each client adds what compression dropped to its next "
          "update (the SDK never does for qsgd and rescaled randk, whose residual would grow).");
ABSL_FLAG(bool, codec_compare, false,
          "Run float32, float16, bfloat16, int8, qsgd, sign, topk 1% with and without error "
          "feedback and randk 1% with the in-process server on the same seed and data, "
          "--codec_compare_rounds rounds each, and print a markdown table of upload bytes, "
          "final accuracy and rounds to --target_accuracy.");
ABSL_FLAG(int, codec_compare_rounds, 100, "Rounds per --codec_compare run.");

namespace tally::sim {
namespace {

// The in-process server's strategy: pre-steps, then the rule.
struct Strategy {
  std::string rule;  // Empty: the server default (mean).
  std::vector<std::string> pre;
  int f = -1;  // -1: the Byzantine count for a robust rule, else unset.

  std::string Name() const {
    std::vector<std::string> parts = pre;
    parts.push_back(rule.empty() ? "mean" : rule);
    return absl::StrJoin(parts, "+");
  }
  bool Robust() const { return !pre.empty() || !(rule.empty() || rule == "mean"); }
};

// "nnm+trimmed_mean" -> pre {nnm}, rule trimmed_mean.
Strategy ParseStrategy(absl::string_view spec) {
  Strategy strategy;
  std::vector<std::string> parts = absl::StrSplit(spec, '+', absl::SkipEmpty());
  if (!parts.empty()) {
    strategy.rule = parts.back();
    parts.pop_back();
  }
  strategy.pre = std::move(parts);
  return strategy;
}

struct ServerSettings {
  int clients = 0;
  int rounds = 0;
  int byzantine = 0;
  Attack attack = Attack::kNone;
  Strategy strategy;
  UploadCodec upload;  // Accepted in compression.upload unless uncompressed.
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tally-sim: %s\n", std::string(status.message()).c_str());
  return 1;
}

// In-process server for the demo: the sim's model, every client in every round.
absl::StatusOr<std::unique_ptr<server::Server>> StartServer(const SoftmaxRegression& model,
                                                            const ServerSettings& settings) {
  const int clients = settings.clients;
  const int rounds = settings.rounds;
  v1::ServerConfig config = server::DefaultConfig();
  config.set_listen_address("127.0.0.1:0");
  config.set_metrics_port(-1);
  v1::ModelConfig* model_config = config.mutable_model();
  model_config->clear_tensors();
  for (const ModelLayout::TensorDef& def : model.TensorDefs()) {
    v1::TensorConfig* tensor = model_config->add_tensors();
    tensor->set_name(def.name);
    for (int64_t d : def.shape) tensor->add_shape(d);
  }
  model_config->mutable_init()->set_kind(v1::ModelInit::ZEROS);
  config.mutable_rounds()->set_clients_per_round(clients);
  config.mutable_rounds()->set_min_clients(clients);
  config.mutable_rounds()->set_total_rounds(rounds);
  if (settings.attack == Attack::kNan && settings.byzantine > 0) {
    // The NaN senders' updates are refused, so a round never fills: close it
    // at a short deadline with the honest ones.
    config.mutable_rounds()->set_min_clients(std::max(1, clients - settings.byzantine));
    config.mutable_rounds()->set_round_timeout_ms(1000);
  }
  const Strategy& strategy = settings.strategy;
  if (!strategy.rule.empty()) config.mutable_strategy()->set_rule(strategy.rule);
  for (const std::string& pre : strategy.pre) config.mutable_strategy()->add_pre(pre);
  const int f = strategy.f >= 0 ? strategy.f : (strategy.Robust() ? settings.byzantine : 0);
  config.mutable_strategy()->set_f(static_cast<uint32_t>(f));
  if (strategy.rule == "monna") {
    // The trusted client: the last one (the first --byzantine attack).
    config.mutable_strategy()->set_trusted_client(sim::SimClientId(clients - 1));
  }
  config.mutable_limits()->set_max_update_bytes(0);  // Re-derived from the model size.
  if (!settings.upload.Uncompressed()) {
    v1::CodecChoice* choice = config.mutable_compression()->add_upload();
    choice->set_codec(settings.upload.Name());
    SpecToProto(settings.upload.spec, choice->mutable_params());
  }
  server::ServerOptions options;
  options.config = std::move(config);
  return server::Server::Create(std::move(options));
}

// Flags whose default, 0, depends on the mode: `value` if set (> 0), else
// `fallback`.
template <typename T>
T SetOr(const absl::Flag<T>& flag, T fallback) {
  const T value = absl::GetFlag(flag);
  return value > 0 ? value : fallback;
}
bool CodecCompare() { return absl::GetFlag(FLAGS_codec_compare); }

// 20, or 50 under --async_compare.
int NumClients() { return SetOr(FLAGS_clients, absl::GetFlag(FLAGS_async_compare) ? 50 : 20); }
// 32, or 256 under --codec_compare.
int NumFeatures() { return SetOr(FLAGS_features, CodecCompare() ? 256 : 32); }
// 200, or 2000 under --codec_compare.
int SamplesPerClient() { return SetOr(FLAGS_samples_per_client, CodecCompare() ? 2000 : 200); }
// 0.8, or 0.85 under --codec_compare.
double TargetAccuracy() { return SetOr(FLAGS_target_accuracy, CodecCompare() ? 0.85 : 0.8); }
// 0.1, or 0.02 under --codec_compare.
double LearningRate() { return SetOr(FLAGS_lr, CodecCompare() ? 0.02 : 0.1); }

SyntheticDataOptions DataOptionsFromFlags() {
  SyntheticDataOptions data;
  data.num_features = NumFeatures();
  data.num_classes = absl::GetFlag(FLAGS_classes);
  data.num_clients = NumClients();
  data.samples_per_client = SamplesPerClient();
  data.test_samples = absl::GetFlag(FLAGS_test_samples);
  data.alpha = absl::GetFlag(FLAGS_alpha);
  data.class_separation = absl::GetFlag(FLAGS_separation);
  data.min_samples_per_client = std::min(data.min_samples_per_client, data.samples_per_client);
  data.seed = absl::GetFlag(FLAGS_seed);
  return data;
}

FederationOptions FederationOptionsFromFlags(const std::string& target) {
  FederationOptions fed;
  fed.target = target;
  fed.max_rounds = absl::GetFlag(FLAGS_rounds);
  fed.train.epochs = absl::GetFlag(FLAGS_local_epochs);
  fed.train.batch_size = absl::GetFlag(FLAGS_batch);
  fed.train.learning_rate = LearningRate();
  fed.train.seed = absl::GetFlag(FLAGS_seed);
  fed.chunk_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_chunk_bytes));
  const bool progress = !absl::GetFlag(FLAGS_quiet) && isatty(STDERR_FILENO);
  fed.progress = progress ? stderr : nullptr;
  return fed;
}

absl::Status CheckFlags() {
  auto bad = [](absl::string_view flag, auto value, absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value, ": must be ", want));
  };
  if (absl::GetFlag(FLAGS_clients) < 0) return bad("clients", absl::GetFlag(FLAGS_clients), ">= 0");
  if (absl::GetFlag(FLAGS_rounds) < 1) return bad("rounds", absl::GetFlag(FLAGS_rounds), ">= 1");
  if (absl::GetFlag(FLAGS_features) < 0) {
    return bad("features", absl::GetFlag(FLAGS_features), ">= 0");
  }
  if (absl::GetFlag(FLAGS_samples_per_client) < 0) {
    return bad("samples_per_client", absl::GetFlag(FLAGS_samples_per_client), ">= 0");
  }
  if (!(absl::GetFlag(FLAGS_lr) >= 0)) return bad("lr", absl::GetFlag(FLAGS_lr), ">= 0");
  if (absl::GetFlag(FLAGS_classes) < 2) {
    return bad("classes", absl::GetFlag(FLAGS_classes), ">= 2");
  }
  if (absl::GetFlag(FLAGS_chunk_bytes) < 1) {
    return bad("chunk_bytes", absl::GetFlag(FLAGS_chunk_bytes), ">= 1");
  }
  const int byzantine = absl::GetFlag(FLAGS_byzantine);
  if (byzantine < 0 || byzantine > NumClients()) {
    return bad("byzantine", byzantine, "in [0, --clients]");
  }
  if (absl::GetFlag(FLAGS_compare_rounds) < 1) {
    return bad("compare_rounds", absl::GetFlag(FLAGS_compare_rounds), ">= 1");
  }
  if (absl::GetFlag(FLAGS_codec_compare_rounds) < 1) {
    return bad("codec_compare_rounds", absl::GetFlag(FLAGS_codec_compare_rounds), ">= 1");
  }
  return absl::OkStatus();
}

// --upload_codec and the --codec_* parameters, valid for `num_params`.
absl::StatusOr<UploadCodec> UploadCodecFromFlags(size_t num_params) {
  const std::string name = absl::GetFlag(FLAGS_upload_codec);
  const compress::CodecInfo* info = compress::FindCodec(name);
  if (info == nullptr || info->id == compress::CodecId::kSpsa) {
    return absl::InvalidArgumentError(
        absl::StrCat("--upload_codec=", name,
                     ": must be float32, float16, bfloat16, int8, qsgd, sign, topk or randk"));
  }
  UploadCodec codec;
  codec.spec = compress::DefaultSpec(info->id);
  codec.error_feedback = absl::GetFlag(FLAGS_error_feedback);
  compress::CodecSpec& spec = codec.spec;
  if (absl::GetFlag(FLAGS_codec_ratio) != 0) spec.ratio = absl::GetFlag(FLAGS_codec_ratio);
  if (absl::GetFlag(FLAGS_codec_k) != 0) spec.k = absl::GetFlag(FLAGS_codec_k);
  if (absl::GetFlag(FLAGS_codec_levels) != 0) spec.levels = absl::GetFlag(FLAGS_codec_levels);
  if (const int block = absl::GetFlag(FLAGS_codec_block_size); block >= 0) {
    spec.block_size = static_cast<uint32_t>(block);
  }
  spec.half_values = absl::GetFlag(FLAGS_codec_half_values);
  if (absl::GetFlag(FLAGS_codec_biased)) spec.rescale = false;
  spec.zstd = absl::GetFlag(FLAGS_codec_zstd);
  if (absl::Status valid = compress::ValidateSpec(spec, num_params); !valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--upload_codec=", name, " with --codec_*: ", valid.message()));
  }
  return codec;
}

// What every simulated client offers at Join for `upload`.
void SetUploadCodec(const UploadCodec& upload, FederationOptions* fed) {
  fed->upload_codecs.clear();
  if (upload.spec.id != compress::CodecId::kFloat32) fed->upload_codecs.push_back(upload.Name());
  fed->error_feedback = upload.error_feedback;
}

AttackOptions AttackOptionsFromFlags() {
  AttackOptions options;
  options.scale = absl::GetFlag(FLAGS_attack_scale);
  options.sigma = absl::GetFlag(FLAGS_attack_sigma);
  options.alie_z = absl::GetFlag(FLAGS_alie_z);
  options.ipm_epsilon = absl::GetFlag(FLAGS_ipm_epsilon);
  return options;
}

Strategy StrategyFromFlags() {
  Strategy strategy;
  strategy.rule = absl::GetFlag(FLAGS_rule);
  for (absl::string_view step : absl::StrSplit(absl::GetFlag(FLAGS_pre), ',', absl::SkipEmpty())) {
    strategy.pre.emplace_back(step);
  }
  strategy.f = absl::GetFlag(FLAGS_f);
  return strategy;
}

// One federation against a fresh in-process server.
absl::StatusOr<FederationResult> RunInProcess(const SoftmaxRegression& model,
                                              const FederatedData& data,
                                              const ServerSettings& settings,
                                              FederationOptions fed) {
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<server::Server> server, StartServer(model, settings));
  fed.target = absl::StrCat("127.0.0.1:", server->port());
  absl::StatusOr<FederationResult> result = RunFederation(fed, model, data);
  server->Shutdown(absl::Seconds(5));
  return result;
}

// --compare: one in-process run per (strategy, attack), one table.
int RunCompare(const SoftmaxRegression& model, const FederatedData& data) {
  std::vector<Strategy> strategies;
  for (absl::string_view spec :
       absl::StrSplit(absl::GetFlag(FLAGS_compare_rules), ',', absl::SkipEmpty())) {
    strategies.push_back(ParseStrategy(spec));
  }
  std::vector<Attack> attacks;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_compare_attacks), ',', absl::SkipEmpty())) {
    absl::StatusOr<Attack> attack = ParseAttack(name);
    if (!attack.ok()) {
      Fail(attack.status());
      return 2;
    }
    attacks.push_back(*attack);
  }
  if (strategies.empty() || attacks.empty()) {
    Fail(absl::InvalidArgumentError("--compare_rules and --compare_attacks must not be empty"));
    return 2;
  }
  const int clients = NumClients();
  // Default: a fifth of the clients (4 of 20).
  const int byzantine =
      absl::GetFlag(FLAGS_byzantine) > 0 ? absl::GetFlag(FLAGS_byzantine) : clients / 5;
  const int rounds = absl::GetFlag(FLAGS_compare_rounds);
  absl::PrintF(
      "tally-sim --compare: %d clients (%d Byzantine, f = %d for robust rules), %d rounds per "
      "run, seed %d, %d runs\n",
      clients, byzantine, absl::GetFlag(FLAGS_f) >= 0 ? absl::GetFlag(FLAGS_f) : byzantine, rounds,
      absl::GetFlag(FLAGS_seed), strategies.size() * attacks.size());
  std::fflush(stdout);

  // accuracy[s][a]; NaN = the run failed.
  std::vector<std::vector<double>> accuracy(strategies.size());
  double initial = 0;
  bool any_failed = false;
  const absl::Time start = absl::Now();
  for (size_t i = 0; i < strategies.size(); ++i) {
    for (Attack attack : attacks) {
      ServerSettings settings;
      settings.clients = clients;
      settings.rounds = rounds;
      settings.byzantine = byzantine;
      settings.attack = attack;
      settings.strategy = strategies[i];
      if (settings.strategy.f < 0) settings.strategy.f = absl::GetFlag(FLAGS_f);
      FederationOptions fed = FederationOptionsFromFlags("");
      fed.max_rounds = rounds;
      fed.out = nullptr;
      fed.byzantine = attack == Attack::kNone ? 0 : byzantine;
      fed.attack = attack;
      fed.attack_options = AttackOptionsFromFlags();
      absl::StatusOr<FederationResult> result = RunInProcess(model, data, settings, fed);
      double acc = std::nan("");
      if (result.ok() && !result->rounds.empty()) {
        const Summary summary = Summarize(result->rounds, result->total_time);
        acc = summary.final_accuracy;
        initial = summary.initial_accuracy;
      } else {
        any_failed = true;
        std::fprintf(stderr, "tally-sim: %s / %s: %s\n", strategies[i].Name().c_str(),
                     std::string(AttackName(attack)).c_str(),
                     std::string(result.status().message()).c_str());
      }
      accuracy[i].push_back(acc);
      if (fed.progress != nullptr) {
        absl::FPrintF(stderr, "\r\x1b[K  %s / %s: %.4f", strategies[i].Name(), AttackName(attack),
                      acc);
        std::fflush(stderr);
      }
    }
  }
  if (!absl::GetFlag(FLAGS_quiet) && isatty(STDERR_FILENO)) std::fprintf(stderr, "\r\x1b[K");

  size_t width = 8;
  for (const Strategy& strategy : strategies) width = std::max(width, strategy.Name().size());
  std::string table = absl::StrFormat("%-*s", static_cast<int>(width), "strategy");
  for (Attack attack : attacks) absl::StrAppendFormat(&table, "  %10s", AttackName(attack));
  table += "\n";
  for (size_t i = 0; i < strategies.size(); ++i) {
    absl::StrAppendFormat(&table, "%-*s", static_cast<int>(width), strategies[i].Name());
    for (double acc : accuracy[i]) {
      if (std::isnan(acc)) {
        absl::StrAppendFormat(&table, "  %10s", "error");
      } else {
        absl::StrAppendFormat(&table, "  %10.4f", acc);
      }
    }
    table += "\n";
  }
  absl::PrintF("%s", table);
  absl::PrintF("final test accuracy after %d rounds (initial model: %.4f); %.1f s in all\n", rounds,
               initial, absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  return any_failed ? 1 : 0;
}

// --codec_compare: one in-process run per upload configuration, one table.
int RunCodecCompare(const SoftmaxRegression& model, const FederatedData& data) {
  const int rounds = absl::GetFlag(FLAGS_codec_compare_rounds);
  const double target = TargetAccuracy();
  const std::vector<UploadCodec> runs = CodecCompareRuns();
  absl::PrintF(
      "tally-sim --codec_compare: %d clients x ~%d samples, model [%d,%d]+[%d] (%d params), %d "
      "rounds per run, local epochs %d, batch %d, lr %g, alpha %g, seed %d, %d runs\n",
      NumClients(), SamplesPerClient(), model.num_features(), model.num_classes(),
      model.num_classes(), model.num_params(), rounds, absl::GetFlag(FLAGS_local_epochs),
      absl::GetFlag(FLAGS_batch), LearningRate(), absl::GetFlag(FLAGS_alpha),
      absl::GetFlag(FLAGS_seed), runs.size());
  std::fflush(stdout);
  const bool progress = !absl::GetFlag(FLAGS_quiet) && isatty(STDERR_FILENO);
  std::vector<CodecCompareRow> rows;
  double initial = 0;
  bool any_failed = false;
  const absl::Time start = absl::Now();
  for (const UploadCodec& upload : runs) {
    ServerSettings settings;
    settings.clients = NumClients();
    settings.rounds = rounds;
    settings.upload = upload;
    FederationOptions fed = FederationOptionsFromFlags("");
    fed.max_rounds = rounds;
    fed.out = nullptr;
    fed.evaluate_every_round = true;           // Exact rounds to target.
    fed.sdk_seed = absl::GetFlag(FLAGS_seed);  // A fresh server per run: qsgd, randk repeat.
    SetUploadCodec(upload, &fed);
    const absl::Time run_start = absl::Now();
    absl::StatusOr<FederationResult> result = RunInProcess(model, data, settings, fed);
    CodecCompareRow row;
    row.codec = upload;
    if (result.ok() && !result->rounds.empty() && result->upload_codec == upload.Name()) {
      const Summary summary = Summarize(result->rounds, result->total_time);
      row.ok = true;
      row.upload_bytes_per_update = result->UploadBytesPerUpdate();
      row.final_accuracy = summary.final_accuracy;
      row.rounds_to_target = RoundsToTarget(result->rounds, target);
      initial = summary.initial_accuracy;
    } else {
      any_failed = true;
      std::fprintf(stderr, "tally-sim: %s: %s\n", upload.Label().c_str(),
                   result.ok() ? absl::StrCat("the server assigned ", result->upload_codec).c_str()
                               : std::string(result.status().message()).c_str());
    }
    rows.push_back(row);
    if (progress) {
      absl::FPrintF(stderr, "  %s: %.4f, %.1f s\n", upload.Label(), row.final_accuracy,
                    absl::ToDoubleSeconds(absl::Now() - run_start));
    }
  }
  absl::PrintF("%s", FormatCodecCompareTable(rows, rows.front(), target));
  absl::PrintF("initial accuracy %.4f; %.1f s in all\n", initial,
               absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  return any_failed ? 1 : 0;
}

// The upload lines under the summary: the codec the server assigned, bytes per
// client per round against float32's 4 * num_params, rounds to
// --target_accuracy.
void PrintUploadSummary(const FederationResult& result, const UploadCodec& upload,
                        size_t num_params) {
  const double per_update = result.UploadBytesPerUpdate();
  const std::string assigned =
      result.upload_codec == upload.Name()
          ? upload.Label()
          : absl::StrCat(result.upload_codec, " (assigned by the server; asked for ", upload.Name(),
                         ")");
  absl::PrintF("  %-18s %s%s\n", "upload codec", assigned,
               result.upload_codec == "float32"
                   ? ""
                   : (upload.error_feedback ? ", error feedback" : ", no error feedback"));
  const double dense = 4.0 * static_cast<double>(num_params);
  absl::PrintF("  %-18s %.1f B per client per round (float32: %.0f B, %.1fx fewer; %d updates)\n",
               "upload", per_update, dense, per_update > 0 ? dense / per_update : 0.0,
               result.updates_pushed);
  const double target = TargetAccuracy();
  const int reached = RoundsToTarget(result.rounds, target);
  absl::PrintF("  %-18s %s\n", absl::StrFormat("rounds to %.2f", target),
               reached >= 0 ? absl::StrCat(reached) : "not reached");
}

// --async_compare: the options of one virtual-time run (its schedule is set
// by the caller).
absl::StatusOr<VirtualTimeOptions> VirtualTimeOptionsFromFlags(int clients) {
  VirtualTimeOptions o;
  TALLY_ASSIGN_OR_RETURN(o.heterogeneity.distribution,
                         ParseSpeedDistribution(absl::GetFlag(FLAGS_speed_distribution)));
  o.heterogeneity.mean_seconds_per_step = absl::GetFlag(FLAGS_speed_mean);
  o.heterogeneity.stddev_seconds_per_step = absl::GetFlag(FLAGS_speed_std);
  o.heterogeneity.jitter = absl::GetFlag(FLAGS_speed_jitter);
  o.heterogeneity.dropout = absl::GetFlag(FLAGS_dropout);
  o.heterogeneity.dropout_return_seconds = absl::GetFlag(FLAGS_dropout_return);
  o.duration_seconds = absl::GetFlag(FLAGS_virtual_hours) * 3600;
  o.target_accuracy = TargetAccuracy();
  o.sync_clients_per_round = absl::GetFlag(FLAGS_sync_clients_per_round);
  o.server_lr = absl::GetFlag(FLAGS_server_lr);
  o.train.batch_size = absl::GetFlag(FLAGS_batch);
  o.train.learning_rate = LearningRate();
  o.seed = absl::GetFlag(FLAGS_seed);
  aggregators::ScheduleOptions& s = o.schedule_options;
  s.alpha = absl::GetFlag(FLAGS_async_alpha);
  s.client_weights = absl::GetFlag(FLAGS_client_weights);
  s.num_clients = static_cast<uint32_t>(clients);
  s.staleness.name = absl::GetFlag(FLAGS_staleness);
  s.staleness.a = absl::GetFlag(FLAGS_staleness_a);
  s.staleness.b = absl::GetFlag(FLAGS_staleness_b);
  const int local_steps = absl::GetFlag(FLAGS_local_steps);
  if (local_steps < 1) return absl::InvalidArgumentError("--local_steps must be >= 1");
  s.local_steps = static_cast<uint32_t>(local_steps);
  s.buffer_size = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_buffer_size)));
  double window = absl::GetFlag(FLAGS_fedfix_window);
  if (window == 0) window = 0.5 * local_steps * o.heterogeneity.mean_seconds_per_step;
  if (!(window > 0 && std::isfinite(window))) {
    return absl::InvalidArgumentError("--fedfix_window must be >= 0 and finite");
  }
  s.window = absl::Seconds(window);
  s.min_local_steps = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_q_min)));
  s.max_local_steps = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_q_max)));
  s.latest_time_factor = absl::GetFlag(FLAGS_latest_time_factor);
  s.speed_momentum = absl::GetFlag(FLAGS_speed_momentum);
  return o;
}

// --async_compare: one virtual-time run per schedule, one table.
int RunAsyncCompare(const SoftmaxRegression& model, const FederatedData& data) {
  const int clients = static_cast<int>(data.clients.size());
  absl::StatusOr<VirtualTimeOptions> options = VirtualTimeOptionsFromFlags(clients);
  if (!options.ok()) {
    Fail(options.status());
    return 2;
  }
  const std::vector<std::string> schedules =
      absl::StrSplit(absl::GetFlag(FLAGS_schedules), ',', absl::SkipEmpty());
  const HeterogeneityOptions& h = options->heterogeneity;
  absl::PrintF(
      "tally-sim --async_compare: %d clients, %s seconds/step (mean %g%s), jitter %g, dropout "
      "%g, %g virtual hours, local steps %d, seed %d\n",
      clients, SpeedDistributionName(h.distribution), h.mean_seconds_per_step,
      h.distribution == SpeedDistribution::kNormal
          ? absl::StrFormat(", std %g", h.stddev_seconds_per_step)
          : std::string(),
      h.jitter, h.dropout, absl::GetFlag(FLAGS_virtual_hours),
      options->schedule_options.local_steps, options->seed);
  std::fflush(stdout);
  std::vector<VirtualTimeResult> results;
  const absl::Time start = absl::Now();
  for (const std::string& name : schedules) {
    options->schedule = name;
    absl::StatusOr<VirtualTimeResult> result = RunVirtualTime(*options, model, data);
    if (!result.ok()) {
      Fail(absl::Status(result.status().code(),
                        absl::StrCat(name, ": ", result.status().message())));
      return 2;
    }
    results.push_back(*std::move(result));
  }
  absl::PrintF("%s", FormatVirtualTimeTable(results, options->target_accuracy));
  absl::PrintF("initial accuracy %.4f; %.1f s wall time in all\n",
               results.empty() ? 0.0 : results[0].curve[0].accuracy,
               absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  return 0;
}

int Run() {
  if (absl::Status flags = CheckFlags(); !flags.ok()) {
    Fail(flags);
    return 2;
  }
  server::LogLevel log_level;
  if (!server::ParseLogLevel(absl::GetFlag(FLAGS_server_log_level), &log_level)) {
    Fail(absl::InvalidArgumentError("--server_log_level: must be debug, info, warning or error"));
    return 2;
  }
  server::SetLogLevel(log_level);
  absl::StatusOr<Attack> attack = ParseAttack(absl::GetFlag(FLAGS_attack));
  if (!attack.ok()) {
    Fail(absl::InvalidArgumentError(absl::StrCat("--attack: ", attack.status().message())));
    return 2;
  }

  const SoftmaxRegression model(NumFeatures(), absl::GetFlag(FLAGS_classes));
  absl::StatusOr<FederatedData> data = GenerateFederatedData(DataOptionsFromFlags());
  if (!data.ok()) return Fail(data.status());

  if (absl::GetFlag(FLAGS_async_compare)) return RunAsyncCompare(model, *data);
  if (absl::GetFlag(FLAGS_compare) || absl::GetFlag(FLAGS_codec_compare)) {
    if (!absl::GetFlag(FLAGS_server).empty()) {
      Fail(absl::InvalidArgumentError(
          "--compare and --codec_compare need the in-process server (no --server)"));
      return 2;
    }
    return absl::GetFlag(FLAGS_compare) ? RunCompare(model, *data) : RunCodecCompare(model, *data);
  }
  absl::StatusOr<UploadCodec> upload = UploadCodecFromFlags(model.num_params());
  if (!upload.ok()) {
    Fail(upload.status());
    return 2;
  }

  const int byzantine = absl::GetFlag(FLAGS_byzantine);
  const bool attacked = byzantine > 0 && *attack != Attack::kNone;
  std::unique_ptr<server::Server> server;
  std::string target = absl::GetFlag(FLAGS_server);
  const Strategy strategy = StrategyFromFlags();
  if (target.empty()) {
    ServerSettings settings;
    settings.clients = NumClients();
    settings.rounds = absl::GetFlag(FLAGS_rounds);
    settings.byzantine = byzantine;
    settings.attack = *attack;
    settings.strategy = strategy;
    settings.upload = *upload;
    auto started = StartServer(model, settings);
    if (!started.ok()) return Fail(started.status());
    server = std::move(started).value();
    target = absl::StrCat("127.0.0.1:", server->port());
  } else if (!absl::GetFlag(FLAGS_rule).empty() || !absl::GetFlag(FLAGS_pre).empty() ||
             absl::GetFlag(FLAGS_f) >= 0) {
    std::fprintf(stderr,
                 "tally-sim: note: --rule/--pre/--f set only the in-process server's strategy; "
                 "ignored with --server\n");
  }
  if (server == nullptr && !upload->Uncompressed()) {
    std::fprintf(stderr,
                 "tally-sim: note: the clients offer --upload_codec; the server's "
                 "compression.upload decides the parameters (--codec_* are ignored)\n");
  }
  absl::PrintF(
      "tally-sim: %d clients, %d rounds, model [%d,%d]+[%d] (%d params), "
      "alpha %g, %sserver %s%s\n",
      NumClients(), absl::GetFlag(FLAGS_rounds), model.num_features(), model.num_classes(),
      model.num_classes(), model.num_params(), absl::GetFlag(FLAGS_alpha),
      upload->Uncompressed()
          ? ""
          : absl::StrCat("upload ", upload->Label(), upload->error_feedback ? " with" : " without",
                         " error feedback, "),
      target, server ? absl::StrCat(" (in-process, strategy ", strategy.Name(), ")") : "");
  if (byzantine > 0) {
    absl::PrintF("tally-sim: clients 0..%d are Byzantine, attack %s\n", byzantine - 1,
                 AttackName(*attack));
  }

  FederationOptions fed = FederationOptionsFromFlags(target);
  fed.byzantine = byzantine;
  fed.attack = *attack;
  fed.attack_options = AttackOptionsFromFlags();
  SetUploadCodec(*upload, &fed);
  absl::StatusOr<FederationResult> result = RunFederation(fed, model, *data);
  if (server) server->Shutdown(absl::Seconds(5));
  if (!result.ok()) return Fail(result.status());

  const Summary summary = Summarize(result->rounds, result->total_time);
  absl::PrintF("%s", FormatSummary(summary));
  PrintUploadSummary(*result, *upload, model.num_params());
  if (result->rejected_updates > 0) {
    absl::PrintF("Byzantine updates refused by the server: %d\n", result->rejected_updates);
  }
  std::fflush(stdout);
  if (summary.rounds == 0 && result->server_done) {
    std::fprintf(stderr,
                 "tally-sim: FAILED: the server reports DONE (it already completed its "
                 "total_rounds); no round ran. Restart it or use the in-process server.\n");
    return 1;
  }
  if (!attacked && !(summary.final_accuracy > summary.initial_accuracy)) {
    std::fprintf(stderr,
                 "tally-sim: FAILED: test accuracy did not rise above the initial %.4f "
                 "(final %.4f after %d rounds)\n",
                 summary.initial_accuracy, summary.final_accuracy, summary.rounds);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tally::sim

int main(int argc, char** argv) {
  if (!tally::ParseFlags(
          argc, argv, "tally-sim",
          "federated-learning demo over real gRPC with simulated clients.\n"
          "Usage: tally-sim [--server=HOST:PORT] [--clients=20] [--rounds=30] [--seed=1] ...",
          // --help lists this file's flags (absl's default
          // matches files named after the binary).
          [](absl::string_view file) { return absl::EndsWith(file, "sim/main.cc"); })) {
    return 2;
  }
  return tally::sim::Run();
}
