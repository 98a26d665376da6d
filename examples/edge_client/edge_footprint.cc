// edge_footprint: what one update push costs the device, per codec. Joins a
// server (whose model is the update's size, e.g. 10M parameters), fills a
// delta once, then for each of --pushes pushes reports the CPU time (user +
// system, all threads: encoding, gRPC, TLS-free framing) per MB of model and
// the peak resident memory during the push above the resident memory before
// it (which already holds the caller's delta and the SDK's error-feedback
// residual). Linux only (/proc/self/status, /proc/self/clear_refs).
//
//   edge_footprint --target=HOST:PORT --client_id=ID [--codec=int8] [--pushes=2]
#include <sys/resource.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tally/client.h"

namespace {

// A field of /proc/self/status in bytes (VmRSS, VmHWM), or 0.
uint64_t StatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  }
  return 0;
}

// Resets VmHWM (the peak) to the current resident size.
void ResetPeak() { std::ofstream("/proc/self/clear_refs") << "5"; }

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

std::string Arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--" + name + "=", 0) == 0) return arg.substr(name.size() + 3);
  }
  return fallback;
}

// One push of `delta` for the current round; prints its costs.
absl::Status MeasurePush(tally::Client& client, const std::string& codec, int index,
                         const std::vector<float>& delta) {
  absl::StatusOr<tally::Task> task = client.GetTask(absl::Seconds(30));
  if (!task.ok()) return task.status();
  tally::Update update;
  update.round = task->round;
  update.base_version = task->model_version;
  update.delta = delta;
  const uint64_t before = StatusBytes("VmRSS");
  ResetPeak();
  const double cpu = CpuSeconds();
  const absl::Time start = absl::Now();
  absl::StatusOr<tally::PushResult> pushed = client.PushUpdate(update);
  if (!pushed.ok()) return pushed.status();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu_used = CpuSeconds() - cpu;
  const double model_mb = delta.size() * sizeof(float) / 1e6;
  const double peak_extra = (double(StatusBytes("VmHWM")) - double(before)) / 1e6;
  std::printf(
      "codec %s push %d: model %.1f MB, sent %.2f MB, cpu %.3f s (%.2f ms/MB), "
      "wall %.3f s, rss before %.1f MB, peak +%.1f MB (%.2fx the model)\n",
      codec.c_str(), index, model_mb, pushed->payload_bytes / 1e6, cpu_used,
      1e3 * cpu_used / model_mb, seconds, before / 1e6, peak_extra, peak_extra / model_mb);
  std::fflush(stdout);
  return absl::OkStatus();
}

absl::Status Run(const std::string& target, const std::string& id, const std::string& codec,
                 int pushes) {
  tally::ClientOptions options;
  options.target = target;
  options.client_id = id;
  if (codec != "float32") options.upload_codecs = {codec};
  absl::StatusOr<std::unique_ptr<tally::Client>> client = tally::Client::Create(options);
  if (!client.ok()) return client.status();
  absl::StatusOr<tally::JoinResult> joined = (*client)->Join();
  if (!joined.ok()) return joined.status();
  if (joined->upload_codec != codec) {
    return absl::FailedPreconditionError("the server assigned " + joined->upload_codec);
  }
  std::vector<float> delta(joined->model.num_params);
  uint32_t state = 12345;
  for (float& v : delta) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(state >> 8) - (1 << 23)) * 1e-9f;
  }
  for (int i = 1; i <= pushes; ++i) {
    if (absl::Status s = MeasurePush(**client, codec, i, delta); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string id = Arg(argc, argv, "client_id", "");
  if (id.empty()) {
    std::fprintf(stderr,
                 "usage: %s --target=HOST:PORT --client_id=ID [--codec=int8] "
                 "[--pushes=2]\n",
                 argv[0]);
    return 2;
  }
  const absl::Status status =
      Run(Arg(argc, argv, "target", "localhost:50051"), id, Arg(argc, argv, "codec", "int8"),
          std::stoi(Arg(argc, argv, "pushes", "2")));
  if (!status.ok()) {
    std::fprintf(stderr, "edge_footprint: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
