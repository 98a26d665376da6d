#include "bench/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace tally::bench {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

absl::Status ErrnoError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::StatusOr<std::string> MakeTempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/tally-bench-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return ErrnoError("mkdtemp " + pattern);
  return pattern;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(ServerProcessOptions options) {
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("tally-server binary '", options.binary,
                     "' is not executable (build target tally-server or pass --server_bin)"));
  }
  auto dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  // From here on the destructor removes the dir and stops the child.
  std::unique_ptr<ServerProcess> server(new ServerProcess(std::move(options), *dir));
  absl::Status status = server->Spawn();
  if (status.ok()) status = server->WaitForPort();
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(status.message(), "\n--- server log tail ---\n",
                                                    server->LogTail()));
  }
  return server;
}

absl::Status ServerProcess::Spawn() {
  const std::string config_path = dir_ + "/config.textproto";
  {
    std::ofstream out(config_path);
    out << options_.config_text;
    if (!out) return absl::InternalError("cannot write " + config_path);
  }
  std::vector<std::string> args = {options_.binary, "--config=" + config_path,
                                   "--port_file=" + dir_ + "/port"};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const int log_fd =
      open((dir_ + "/server.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return ErrnoError("open server.log");
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) {
    close(log_fd);
    return ErrnoError("fork");
  }
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    // The caller may block signals (to sigwait them); the server must not.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  return absl::OkStatus();
}

absl::Status ServerProcess::WaitForPort() {
  const std::string port_path = dir_ + "/port";
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  int previous = 0;
  while (absl::Now() < deadline) {
    if (Reaped()) {
      return absl::UnavailableError(absl::StrCat("tally-server ", DescribeWaitStatus(wait_status_),
                                                 " before writing its port"));
    }
    // The file may be observed half-written: accept a port seen twice in a row.
    auto text = ReadFile(port_path);
    int port = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port) && port > 0 &&
        port < 65536) {
      if (port == previous) {
        port_ = port;
        return absl::OkStatus();
      }
      previous = port;
    }
    absl::SleepFor(kPollInterval);
  }
  return absl::DeadlineExceededError(absl::StrCat("tally-server did not write ", port_path,
                                                  " within ",
                                                  absl::FormatDuration(options_.start_timeout)));
}

bool ServerProcess::Reaped() {
  if (reaped_) return true;
  if (pid_ <= 0) return false;
  int status = 0;
  struct rusage usage {};
  const pid_t r = wait4(pid_, &status, WNOHANG, &usage);
  if (r != pid_) return false;
  reaped_ = true;
  wait_status_ = status;
  exit_max_rss_bytes_ = static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // KiB on Linux.
  return true;
}

absl::StatusOr<uint64_t> ServerProcess::PeakRssBytes() const {
  return ReadPeakRssBytes(absl::StrCat("/proc/", pid_));
}

namespace {

// The number in line `field` (e.g. "VmHWM:") of a /proc/<pid>/status text,
// times `unit`.
absl::StatusOr<uint64_t> StatusField(absl::string_view text, absl::string_view field,
                                     uint64_t unit, const std::string& proc_dir) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, field)) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    uint64_t value = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &value)) return value * unit;
  }
  return absl::NotFoundError(absl::StrCat("no ", field, " in ", proc_dir, "/status"));
}

}  // namespace

absl::StatusOr<uint64_t> ReadPeakRssBytes(const std::string& proc_dir) {
  auto text = ReadFile(proc_dir + "/status");
  if (!text.ok()) return text.status();
  return StatusField(*text, "VmHWM:", 1024, proc_dir);
}

absl::StatusOr<ProcessSample> ReadProcessSample(const std::string& proc_dir, bool count_fds) {
  auto text = ReadFile(proc_dir + "/status");
  if (!text.ok()) return text.status();
  ProcessSample sample;
  TALLY_ASSIGN_OR_RETURN(sample.rss_bytes, StatusField(*text, "VmRSS:", 1024, proc_dir));
  TALLY_ASSIGN_OR_RETURN(sample.threads, StatusField(*text, "Threads:", 1, proc_dir));
  if (!count_fds) return sample;
  std::error_code error;
  for (fs::directory_iterator it(proc_dir + "/fd", error), end; !error && it != end;
       it.increment(error)) {
    ++sample.fds;
  }
  if (error) return absl::InternalError(absl::StrCat(proc_dir, "/fd: ", error.message()));
  return sample;
}

absl::StatusOr<uint64_t> CountEstablishedConnections(const std::string& proc_dir, int port) {
  // Lines "sl local_address rem_address st ...", addresses HEX_IP:HEX_PORT,
  // st 01 = ESTABLISHED.
  const std::string local_port = absl::StrFormat(":%04X", port);
  uint64_t count = 0;
  bool any = false;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    auto text = ReadFile(proc_dir + table);
    if (!text.ok()) continue;
    any = true;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (fields.size() > 3 && absl::EndsWith(fields[1], local_port) && fields[3] == "01") {
        ++count;
      }
    }
  }
  if (!any) return absl::NotFoundError(absl::StrCat("cannot read ", proc_dir, "/net/tcp"));
  return count;
}

absl::StatusOr<double> ServerProcess::CpuSeconds() const {
  auto text = ReadFile(absl::StrCat("/proc/", pid_, "/stat"));
  if (!text.ok()) return text.status();
  // "pid (comm) state ppid ..." — comm may contain spaces, so split after ')'.
  const size_t paren = text->rfind(')');
  if (paren == std::string::npos) return absl::InternalError("malformed /proc/<pid>/stat");
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*text).substr(paren + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InternalError("malformed /proc/<pid>/stat");
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

absl::Status ServerProcess::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  if (!Reaped()) {
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + options_.stop_grace;
    while (!Reaped() && absl::Now() < deadline) absl::SleepFor(kPollInterval);
    if (!Reaped()) {
      kill(pid_, SIGKILL);
      sent_sigkill_ = true;
      while (!Reaped()) absl::SleepFor(kPollInterval);
    }
  }
  if (sent_sigkill_) {
    return absl::DeadlineExceededError(absl::StrCat("tally-server did not exit within ",
                                                    absl::FormatDuration(options_.stop_grace),
                                                    " of SIGTERM; killed"));
  }
  if (!WIFEXITED(wait_status_) || WEXITSTATUS(wait_status_) != 0) {
    return absl::InternalError(
        absl::StrCat("tally-server ", DescribeWaitStatus(wait_status_), " on SIGTERM"));
  }
  return absl::OkStatus();
}

std::string ServerProcess::LogTail(size_t max_bytes) const {
  auto text = ReadFile(dir_ + "/server.log");
  if (!text.ok()) return "(no server log)";
  return text->size() <= max_bytes ? *text : text->substr(text->size() - max_bytes);
}

ServerProcess::~ServerProcess() {
  Stop().IgnoreError();
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

absl::StatusOr<std::string> FindServerBinary() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (error) return absl::InternalError("cannot resolve /proc/self/exe: " + error.message());
  const fs::path dir = self.parent_path();
  for (const fs::path& candidate : {dir / "tally-server", dir / ".." / "server" / "tally-server"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate.lexically_normal().string();
  }
  return absl::NotFoundError(absl::StrCat("no tally-server next to ", self.string(),
                                          " (nor in ../server/); pass --server_bin"));
}

}  // namespace tally::bench
