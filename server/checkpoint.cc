#include "server/checkpoint.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tally::server {
namespace {

constexpr char kMagic[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '1'};
constexpr size_t kHeaderBytes = 8 + 4 * 8;
constexpr size_t kDigestBytes = 32;

absl::Status ErrnoStatus(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat("checkpoint: ", what, " '", path, "': ", std::strerror(errno)));
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void Update(const void* data, size_t size) { EVP_DigestUpdate(ctx_, data, size); }
  void Final(unsigned char out[kDigestBytes]) { EVP_DigestFinal_ex(ctx_, out, nullptr); }

 private:
  EVP_MD_CTX* ctx_;
};

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write", path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, void* data, size_t size, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read", path);
    }
    if (n == 0) return absl::DataLossError(absl::StrCat("checkpoint '", path, "' is truncated"));
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void PutU64(char* out, uint64_t v) { std::memcpy(out, &v, 8); }
uint64_t GetU64(const char* in) {
  uint64_t v;
  std::memcpy(&v, in, 8);
  return v;
}

}  // namespace

absl::Status WriteCheckpoint(const std::string& dir, const ModelLayout& layout,
                             const ModelSnapshot& snapshot) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus("mkdir", dir);
  const std::string path = absl::StrCat(dir, "/", kCheckpointFileName);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp);
  char header[kHeaderBytes];
  std::memcpy(header, kMagic, 8);
  PutU64(header + 8, snapshot.version);
  PutU64(header + 16, snapshot.round);
  PutU64(header + 24, layout.Hash());
  PutU64(header + 32, snapshot.params.size());
  Sha256 sha;
  sha.Update(header, sizeof(header));
  const size_t param_bytes = snapshot.params.size() * sizeof(float);
  sha.Update(snapshot.params.data(), param_bytes);
  unsigned char digest[kDigestBytes];
  sha.Final(digest);
  absl::Status status = WriteAll(fd, header, sizeof(header), tmp);
  if (status.ok()) status = WriteAll(fd, snapshot.params.data(), param_bytes, tmp);
  if (status.ok()) status = WriteAll(fd, digest, sizeof(digest), tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus("fsync", tmp);
  ::close(fd);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus("rename", tmp);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpoint(const std::string& dir,
                                                               const ModelLayout& layout) {
  const std::string path = absl::StrCat(dir, "/", kCheckpointFileName);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<LoadedCheckpoint>();
    return ErrnoStatus("open", path);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  char header[kHeaderBytes];
  absl::Status status = ReadAll(fd, header, sizeof(header), path);
  if (!status.ok()) return status;
  if (std::memcmp(header, kMagic, 8) != 0) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' has no tally header"));
  }
  LoadedCheckpoint ckpt;
  ckpt.version = GetU64(header + 8);
  ckpt.round = GetU64(header + 16);
  const uint64_t hash = GetU64(header + 24);
  const uint64_t num_params = GetU64(header + 32);
  if (hash != layout.Hash() || num_params != layout.NumParams()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint '", path, "' is for another model (", num_params,
        " parameters, layout hash ", absl::Hex(hash), "); the config describes ",
        layout.NumParams(), " parameters, hash ", absl::Hex(layout.Hash())));
  }
  if (ckpt.version == 0) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' has version 0"));
  }
  ckpt.params.resize(num_params);
  status = ReadAll(fd, ckpt.params.data(), num_params * sizeof(float), path);
  if (!status.ok()) return status;
  unsigned char stored[kDigestBytes];
  status = ReadAll(fd, stored, sizeof(stored), path);
  if (!status.ok()) return status;
  char extra;
  if (::read(fd, &extra, 1) != 0) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' has trailing bytes"));
  }
  Sha256 sha;
  sha.Update(header, sizeof(header));
  sha.Update(ckpt.params.data(), num_params * sizeof(float));
  unsigned char digest[kDigestBytes];
  sha.Final(digest);
  if (std::memcmp(digest, stored, kDigestBytes) != 0) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' fails its checksum"));
  }
  return std::optional<LoadedCheckpoint>(std::move(ckpt));
}

}  // namespace tally::server
