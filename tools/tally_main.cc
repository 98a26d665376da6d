// tally: offline command-line tools.
//
//   tally aggregate --rule=NAME [--pre=a,b] --f=N [rule options]
//                   [--weights=weights.npy] --in=updates.npy --out=result.npy
//   tally export --checkpoint_dir=DIR --out=model.safetensors|model.npz
//                [--model_version=N] [--layout_from=FILE]
//   tally privacy --sampling_rate=Q --noise_multiplier=Z --steps=T --delta=D
//   tally privacy --sampling_rate=Q --target_epsilon=E --steps=T --delta=D
//
// reads a 2-D .npy of client updates (rows = clients, float32 or float64),
// and optionally a 1-D .npy of per-row weights (only `average` uses them),
// applies the pre-steps in order and then the rule (aggregators/rules), and
// writes the aggregate as a 1-D float32 .npy. A one-line summary goes to
// stderr.
//
// export writes the global model of a tally-server checkpoint directory as
// float32 safetensors or .npz (by the extension of --out) with its tensor
// names and shapes (tools/export.h, docs/models.md).
//
// privacy prints the (epsilon, delta) of T steps of the sampled Gaussian
// mechanism as `epsilon=<value> order=<alpha>` (the server's accountant,
// core/privacy/accountant.h; docs/privacy.md), or with --target_epsilon the
// smallest noise multiplier that stays within it as
// `noise_multiplier=<z> epsilon=<value> order=<alpha>`; --print_rdp adds one
// `order=<alpha> rdp=<value>` line per order.
//
// Exit status: 0 on success, 1 on errors (unreadable input, a batch the rule
// refuses, ...), 2 on usage errors (bad flags or command).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "aggregators/rules/rule.h"
#include "aggregators/step/aggregation_step.h"
#include "core/model_file.h"
#include "core/npy.h"
#include "core/privacy/accountant.h"
#include "core/status_macros.h"
#include "tools/export.h"

using tally::aggregators::BucketingOptions;
using tally::aggregators::CenteredClippingOptions;
using tally::aggregators::ClippingOptions;
using tally::aggregators::FlagOptions;
using tally::aggregators::GeometricMedianOptions;
using tally::aggregators::MonnaOptions;
using tally::aggregators::RuleOptions;

ABSL_FLAG(std::string, rule, "",
          "Aggregation rule (required): average, median, trimmed_mean, geometric_median, "
          "krum, multi_krum, centered_clipping, mda, monna, meamed, bulyan, flag, caf.");
ABSL_FLAG(std::string, pre, "",
          "Comma-separated pre-steps applied in order before the rule: nnm, clipping, arc, "
          "bucketing.");
ABSL_FLAG(int64_t, f, 0, "Declared number of Byzantine clients (rows).");
ABSL_FLAG(std::string, in, "", "Input .npy (required): 2-D float32/float64, one row per client.");
ABSL_FLAG(std::string, out, "",
          "Output (required). aggregate: a .npy, the aggregate, 1-D float32. export: a "
          ".safetensors or .npz file, the model as float32 tensors.");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "export: the server's checkpoint_dir (required); its newest valid checkpoint is "
          "exported.");
ABSL_FLAG(uint64_t, model_version, 0,
          "export: the model version to export instead of the newest; a server keeps its "
          "newest checkpoint and the one before it.");
ABSL_FLAG(std::string, layout_from, "",
          "export: a .safetensors or .npz whose tensors name the parameters (needed only for "
          "checkpoints written before format 5, which hold no layout).");
ABSL_FLAG(std::string, weights, "",
          "Optional 1-D float32/float64 .npy of n row weights (finite, >= 0, positive sum): "
          "average becomes the weighted mean. Only average uses weights, and not after "
          "bucketing.");
ABSL_FLAG(double, nu, GeometricMedianOptions().nu, "geometric_median: smoothing nu (> 0).");
ABSL_FLAG(int, iterations, GeometricMedianOptions().iterations,
          "geometric_median: iterations T (>= 0).");
ABSL_FLAG(double, tau, CenteredClippingOptions().tau, "centered_clipping: radius tau (> 0).");
ABSL_FLAG(int, clip_iterations, CenteredClippingOptions().iterations,
          "centered_clipping: iterations L (>= 1).");
ABSL_FLAG(int64_t, idx, static_cast<int64_t>(MonnaOptions().idx),
          "monna: index of the trusted row (< n).");
ABSL_FLAG(double, clip_norm, ClippingOptions().clip_norm, "clipping: norm bound c (> 0).");
ABSL_FLAG(int64_t, bucket_size, static_cast<int64_t>(BucketingOptions().bucket_size),
          "bucketing: bucket size s (>= 1).");
ABSL_FLAG(uint64_t, seed, RuleOptions().seed, "RNG seed of bucketing, caf and flag's random init.");
ABSL_FLAG(int, flag_r, FlagOptions().r,
          "flag: subspace dimension r (>= 1, or 0 = ceil(n/2), n the number of rows).");
ABSL_FLAG(double, flag_lambda, FlagOptions().lambda, "flag: pairwise regulariser lambda (>= 0).");
ABSL_FLAG(int, flag_iterations, FlagOptions().iterations, "flag: IRLS iterations (>= 1).");
ABSL_FLAG(std::string, flag_init, FlagOptions().init,
          "flag: initial subspace, deterministic or random (seeded by --seed).");
ABSL_FLAG(std::string, flag_scale, FlagOptions().scale,
          "flag: output scale, median_norm (the rows' scale) or reference (the reference "
          "code's (1/r) x projected sum of unit vectors).");

ABSL_FLAG(double, sampling_rate, 1.0,
          "privacy: the probability q that a client takes part in a step (Poisson sampling), "
          "in [0, 1].");
ABSL_FLAG(double, noise_multiplier, 0.0,
          "privacy: the noise multiplier z (noise standard deviation / clip norm), > 0.");
ABSL_FLAG(uint64_t, steps, 0, "privacy: the number of steps (rounds) T.");
ABSL_FLAG(double, delta, 0.0, "privacy: delta, in (0, 1).");
ABSL_FLAG(double, target_epsilon, 0.0,
          "privacy: find the smallest noise multiplier spending at most this epsilon (> 0) "
          "instead of computing epsilon for --noise_multiplier.");
ABSL_FLAG(bool, print_rdp, false, "privacy: also print the RDP at every order 2..256.");

namespace tally::tools {
namespace {

namespace agg = ::tally::aggregators;

constexpr char kUsage[] =
    "offline tools for tally.\n"
    "Usage: tally aggregate --rule=NAME [--pre=a,b] --f=N [rule options] "
    "[--weights=weights.npy] --in=updates.npy --out=result.npy\n"
    "       tally export --checkpoint_dir=DIR --out=model.safetensors|model.npz "
    "[--model_version=N] [--layout_from=FILE]\n"
    "       tally privacy --sampling_rate=Q (--noise_multiplier=Z | --target_epsilon=E) "
    "--steps=T --delta=D [--print_rdp]";

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// "tally <command>: <message>" on stderr.
void Say(absl::string_view message, const char* command = "aggregate") {
  std::fprintf(stderr, "tally %s: %s\n", command, std::string(message).c_str());
}

int Fail(int exit_code, absl::string_view message, const char* command = "aggregate") {
  Say(message, command);
  return exit_code;
}

// The settings flags of each rule and pre-step: one overload per settings
// struct of agg::RuleSettings (std::visit in OptionsFromFlags).
void FromFlags(agg::NoOptions&) {}
void FromFlags(agg::GeometricMedianOptions& o) {
  o.nu = absl::GetFlag(FLAGS_nu);
  o.iterations = absl::GetFlag(FLAGS_iterations);
}
void FromFlags(agg::CenteredClippingOptions& o) {
  o.tau = absl::GetFlag(FLAGS_tau);
  o.iterations = absl::GetFlag(FLAGS_clip_iterations);
}
void FromFlags(agg::MdaOptions&) {}  // No flag: the default bound.
void FromFlags(agg::MonnaOptions& o) { o.idx = static_cast<size_t>(absl::GetFlag(FLAGS_idx)); }
void FromFlags(agg::FlagOptions& o) {
  o.r = absl::GetFlag(FLAGS_flag_r);
  o.lambda = absl::GetFlag(FLAGS_flag_lambda);
  o.iterations = absl::GetFlag(FLAGS_flag_iterations);
  o.init = absl::GetFlag(FLAGS_flag_init);
  o.scale = absl::GetFlag(FLAGS_flag_scale);
}
void FromFlags(agg::ClippingOptions& o) { o.clip_norm = absl::GetFlag(FLAGS_clip_norm); }
void FromFlags(agg::BucketingOptions& o) {
  o.bucket_size = static_cast<size_t>(absl::GetFlag(FLAGS_bucket_size));
}

// The options of the rule or pre-step `name` from the flags (range checks
// are left to CreateRule / CreatePreStep).
RuleOptions OptionsFromFlags(const std::string& name) {
  RuleOptions options;
  options.name = name;
  options.f = static_cast<size_t>(absl::GetFlag(FLAGS_f));
  options.seed = absl::GetFlag(FLAGS_seed);
  options.settings = agg::DefaultSettings(name);
  std::visit([](auto& settings) { FromFlags(settings); }, options.settings);
  return options;
}

// INVALID_ARGUMENT for missing or negative flag values.
absl::Status CheckFlags() {
  if (absl::GetFlag(FLAGS_rule).empty()) return absl::InvalidArgumentError("--rule is required");
  if (absl::GetFlag(FLAGS_in).empty()) return absl::InvalidArgumentError("--in is required");
  if (absl::GetFlag(FLAGS_out).empty()) return absl::InvalidArgumentError("--out is required");
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"f", absl::GetFlag(FLAGS_f)},
                                    {"idx", absl::GetFlag(FLAGS_idx)},
                                    {"bucket_size", absl::GetFlag(FLAGS_bucket_size)}}) {
    if (value < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", value, ": must be >= 0"));
    }
  }
  return absl::OkStatus();
}

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  for (const std::string& candidate : names) {
    if (candidate == name) return true;
  }
  return false;
}

// The aggregation step the flags describe: pre-steps in order, then the
// rule (the server's step, aggregators/step/aggregation_step.h; no optimizer
// is applied here). INVALID_ARGUMENT (a usage error) for unknown names or
// bad options.
absl::StatusOr<std::unique_ptr<agg::AggregationStep>> CreateStep() {
  agg::AggregationStepOptions step;
  step.rule = OptionsFromFlags(absl::GetFlag(FLAGS_rule));
  const RuleOptions& options = step.rule;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_pre), ',', absl::SkipWhitespace())) {
    if (!Contains(agg::PreStepNames(), std::string(name))) {
      return absl::InvalidArgumentError(
          absl::StrCat("--pre: unknown pre-step '", name,
                       "' (known: ", absl::StrJoin(agg::PreStepNames(), ", "), ")"));
    }
    step.pre_steps.push_back(OptionsFromFlags(std::string(name)));
  }
  if (!Contains(agg::RuleNames(), options.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rule: unknown rule '", options.name,
                     "' (known: ", absl::StrJoin(agg::RuleNames(), ", "), ")"));
  }
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<agg::AggregationStep> made,
                         agg::AggregationStep::Create(step));
  if (!absl::GetFlag(FLAGS_weights).empty()) {
    if (!made->UsesWeights()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--weights: rule '", options.name, "' is unweighted (only average uses weights)"));
    }
    for (const RuleOptions& pre : step.pre_steps) {
      if (!agg::KeepsRowOrder(pre.name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--weights: pre-step '", pre.name, "' merges or reorders rows"));
      }
    }
  }
  return made;
}

// The --weights file: a 1-D .npy of n values (empty without --weights).
absl::StatusOr<std::vector<double>> ReadWeights(size_t n) {
  const std::string path = absl::GetFlag(FLAGS_weights);
  if (path.empty()) return std::vector<double>();
  absl::StatusOr<NpyMatrix> weights = ReadNpy(path);
  if (!weights.ok()) return weights.status();
  if (weights->ndim != 1 || weights->cols != n) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a 1-D array of n=", n,
                                                   " weights, got ", weights->ndim, "-D with ",
                                                   weights->rows * weights->cols, " values"));
  }
  return std::vector<double>(weights->data.begin(), weights->data.end());
}

int Aggregate() {
  if (absl::Status flags = CheckFlags(); !flags.ok()) return Fail(kExitUsage, flags.message());
  absl::StatusOr<std::unique_ptr<agg::AggregationStep>> step = CreateStep();
  if (!step.ok()) return Fail(kExitUsage, step.status().message());

  const std::string in = absl::GetFlag(FLAGS_in);
  const std::string out_path = absl::GetFlag(FLAGS_out);
  absl::StatusOr<NpyMatrix> batch = ReadNpy(in);
  if (!batch.ok()) return Fail(kExitError, batch.status().message());
  const size_t n = batch->rows;
  const size_t d = batch->cols;
  absl::StatusOr<std::vector<double>> weights = ReadWeights(n);
  if (!weights.ok()) return Fail(kExitError, weights.status().message());

  std::vector<float> result(d);
  const absl::Status aggregated = (*step)->CombineRows(
      absl::MakeSpan(batch->data), n, *weights, absl::MakeSpan(result), /*influence=*/nullptr);
  if (!aggregated.ok()) return Fail(kExitError, aggregated.message());
  if (absl::Status written = WriteNpyVector(out_path, result); !written.ok()) {
    return Fail(kExitError, written.message());
  }

  double norm = 0;
  for (float x : result) norm += static_cast<double>(x) * x;
  const std::string pre = absl::GetFlag(FLAGS_pre);
  std::string summary = absl::StrCat("rule=", absl::GetFlag(FLAGS_rule),
                                     pre.empty() ? "" : " pre=", pre, " f=", absl::GetFlag(FLAGS_f),
                                     " n=", n);
  if (!weights->empty()) absl::StrAppend(&summary, " weighted");
  absl::StrAppend(&summary, " d=", d, " |out|=", std::sqrt(norm), " -> ", out_path);
  Say(summary);
  return 0;
}

int Export() {
  ExportOptions options;
  options.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  options.out = absl::GetFlag(FLAGS_out);
  options.model_version = absl::GetFlag(FLAGS_model_version);
  options.layout_from = absl::GetFlag(FLAGS_layout_from);
  if (options.checkpoint_dir.empty()) {
    return Fail(kExitUsage, "--checkpoint_dir is required", "export");
  }
  if (options.out.empty()) return Fail(kExitUsage, "--out is required", "export");
  if (absl::Status format = ModelFileFormatOf(options.out).status(); !format.ok()) {
    return Fail(kExitUsage, absl::StrCat("--out: ", format.message()), "export");
  }
  absl::StatusOr<ExportReport> report = ExportCheckpoint(options);
  if (!report.ok()) return Fail(kExitError, report.status().message(), "export");
  for (const std::string& warning : report->warnings) Say(warning, "export");
  Say(report->summary, "export");
  return 0;
}

int Privacy() {
  constexpr char kCommand[] = "privacy";
  const double q = absl::GetFlag(FLAGS_sampling_rate);
  const double delta = absl::GetFlag(FLAGS_delta);
  const uint64_t steps = absl::GetFlag(FLAGS_steps);
  const double target = absl::GetFlag(FLAGS_target_epsilon);
  double z = absl::GetFlag(FLAGS_noise_multiplier);
  if (!(delta > 0 && delta < 1)) return Fail(kExitUsage, "--delta must be in (0, 1)", kCommand);
  if (!(q >= 0 && q <= 1)) return Fail(kExitUsage, "--sampling_rate must be in [0, 1]", kCommand);
  if ((target != 0) == (z != 0)) {
    return Fail(kExitUsage, "give exactly one of --noise_multiplier and --target_epsilon",
                kCommand);
  }
  if (target != 0) {
    absl::StatusOr<double> found = privacy::NoiseMultiplierForEpsilon(q, steps, delta, target);
    if (!found.ok()) {
      return Fail(found.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                                               : kExitError,
                  found.status().message(), kCommand);
    }
    z = *found;
  }
  const privacy::GaussianSteps run{q, z, steps};
  absl::StatusOr<std::vector<double>> rdp = privacy::ComposedRdp({&run, 1});
  if (!rdp.ok()) return Fail(kExitUsage, rdp.status().message(), kCommand);
  absl::StatusOr<privacy::EpsilonAndOrder> eps = privacy::ComputeEpsilon({&run, 1}, delta);
  if (!eps.ok()) return Fail(kExitUsage, eps.status().message(), kCommand);
  if (target != 0) std::printf("noise_multiplier=%.12g ", z);
  std::printf("epsilon=%.12g order=%d\n", eps->epsilon, eps->order);
  if (absl::GetFlag(FLAGS_print_rdp)) {
    for (size_t i = 0; i < rdp->size(); ++i) {
      std::printf("order=%d rdp=%.17g\n", privacy::kMinOrder + static_cast<int>(i), (*rdp)[i]);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tally::tools

int main(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;
  // --help lists this file's flags (absl's default matches files named after
  // the binary).
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "tools/tally_main.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(tally::tools::kUsage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() < 2) {
    std::fprintf(stderr, "tally: missing command\n%s\n(see --help)\n", tally::tools::kUsage);
    return tally::tools::kExitUsage;
  }
  const std::string command = rest[1];
  if (command != "aggregate" && command != "export" && command != "privacy") {
    std::fprintf(stderr,
                 "tally: unknown command '%s' (known: aggregate, export, privacy; see --help)\n",
                 rest[1]);
    return tally::tools::kExitUsage;
  }
  if (rest.size() > 2) {
    std::fprintf(stderr, "tally %s: unexpected argument '%s' (see --help)\n", command.c_str(),
                 rest[2]);
    return tally::tools::kExitUsage;
  }
  if (command == "privacy") return tally::tools::Privacy();
  return command == "export" ? tally::tools::Export() : tally::tools::Aggregate();
}
