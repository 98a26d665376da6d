// The checkpoint file's format constants and byte helpers, shared by its
// writer (server/checkpoint.cc) and reader (server/checkpoint_read.cc).
// Internal to those two files.
#ifndef TALLY_SERVER_CHECKPOINT_FORMAT_H_
#define TALLY_SERVER_CHECKPOINT_FORMAT_H_

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/checkpoint.h"

namespace tally::server::checkpoint_format {


constexpr char kMagicV1[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '1'};
constexpr char kMagicV2[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '2'};
constexpr char kMagicV3[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '3'};
constexpr char kMagicV4[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '4'};
constexpr char kMagicV5[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '5'};
constexpr char kMagicV6[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '6'};
constexpr uint32_t kMaxPrivacyLedger = 1 << 20;
constexpr uint32_t kMaxClients = 10000000;
constexpr uint32_t kMaxIdsPerClient = 1024;
constexpr uint32_t kMaxName = 256;
constexpr uint32_t kMaxStateTensors = 16;
constexpr uint32_t kMaxRank = 64;
constexpr size_t kHeaderBytes = 8 + 4 * 8;
constexpr size_t kDigestBytes = 32;

inline absl::Status ErrnoStatus(absl::string_view what, const std::string& path) {
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

inline absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
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

inline absl::Status ReadAll(int fd, void* data, size_t size, const std::string& path) {
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

inline void PutU64(char* out, uint64_t v) { std::memcpy(out, &v, 8); }
inline void AppendU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<char*>(&v), 4); }
inline void AppendU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<char*>(&v), 8); }
inline void AppendString(std::string* out, const std::string& s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  *out += s;
}
inline uint64_t GetU64(const char* in) {
  uint64_t v;
  std::memcpy(&v, in, 8);
  return v;
}


}  // namespace tally::server::checkpoint_format

namespace tally::server {

// One checkpoint file (nullopt if it does not exist); `layout` null: of any
// model.
absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpointFile(const std::string& path,
                                                                   const ModelLayout* layout);

}  // namespace tally::server

#endif  // TALLY_SERVER_CHECKPOINT_FORMAT_H_
