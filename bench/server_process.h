// ServerProcess: a tally-server child process started for a benchmark run.
//
// Start() creates a private temp dir, writes the given text-proto config into
// it, runs `<binary> --config=<dir>/config.textproto --port_file=<dir>/port`
// with stdout/stderr going to <dir>/server.log, and waits until the server has
// written the port it bound. The destructor stops the server (SIGTERM, then
// SIGKILL after the grace period) and removes the temp dir, whatever happened.
// The child also gets SIGTERM if the thread that started it dies
// (PR_SET_PDEATHSIG), so a crashed benchmark leaves no server behind.
//
// Thread safety: pid() and port() may be read from any thread; the other
// methods must not race with Stop() or the destructor.
#ifndef TALLY_BENCH_SERVER_PROCESS_H_
#define TALLY_BENCH_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tally::bench {

struct ServerProcessOptions {
  std::string binary;       // Path of the tally-server executable.
  std::string config_text;  // Text-proto ServerConfig.
  std::vector<std::string> extra_args;
  absl::Duration start_timeout = absl::Seconds(30);  // Until the port file appears.
  absl::Duration stop_grace = absl::Seconds(5);      // SIGTERM -> SIGKILL.
};

class ServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(ServerProcessOptions options);
  ~ServerProcess();

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // The server's peak resident set so far (VmHWM in /proc/<pid>/status).
  absl::StatusOr<uint64_t> PeakRssBytes() const;
  // User + system CPU time the server has used so far (/proc/<pid>/stat).
  absl::StatusOr<double> CpuSeconds() const;

  // SIGTERM, then SIGKILL if still running after the grace period; reaps the
  // child. Idempotent. OK iff the server exited with status 0 after SIGTERM.
  absl::Status Stop();
  // After Stop(): the peak RSS the kernel accounted to the child (ru_maxrss).
  uint64_t exit_max_rss_bytes() const { return exit_max_rss_bytes_; }
  // The last `max_bytes` of the server's stdout/stderr.
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  ServerProcess(ServerProcessOptions options, std::string dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}

  absl::Status Spawn();
  absl::Status WaitForPort();
  // Non-blocking reap; true if the child has exited (and records how).
  bool Reaped();

  const ServerProcessOptions options_;
  const std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool reaped_ = false;
  int wait_status_ = 0;
  bool sent_sigkill_ = false;
  uint64_t exit_max_rss_bytes_ = 0;
};

// VmHWM (peak resident set) from `proc_dir`/status, e.g. "/proc/self".
absl::StatusOr<uint64_t> ReadPeakRssBytes(const std::string& proc_dir);

// What a process holds at one moment, from `proc_dir` (e.g. "/proc/self").
// Listing fd/ costs a few milliseconds at 10,000 descriptors: count_fds
// false leaves fds 0.
struct ProcessSample {
  uint64_t rss_bytes = 0;  // VmRSS.
  uint64_t fds = 0;        // Entries of fd/.
  uint64_t threads = 0;    // Threads: in status.
};
absl::StatusOr<ProcessSample> ReadProcessSample(const std::string& proc_dir, bool count_fds);

// ESTABLISHED TCP connections (IPv4 and IPv6) in `proc_dir`'s network
// namespace whose local port is `port`: on a server's listening port, one
// per connected peer.
absl::StatusOr<uint64_t> CountEstablishedConnections(const std::string& proc_dir, int port);

// Where tally-server is expected when --server_bin is not given: next to this
// executable (installed layout), then ../server/ (CMake build tree).
absl::StatusOr<std::string> FindServerBinary();

}  // namespace tally::bench

#endif  // TALLY_BENCH_SERVER_PROCESS_H_
