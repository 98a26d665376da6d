#include "server/checkpoint.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tally::server {
namespace {

constexpr char kMagicV1[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '1'};
constexpr char kMagicV2[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '2'};
constexpr char kMagicV3[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '3'};
constexpr char kMagicV4[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '4'};
constexpr char kMagicV5[8] = {'T', 'A', 'L', 'L', 'Y', 'C', 'K', '5'};
constexpr uint32_t kMaxClients = 10000000;
constexpr uint32_t kMaxIdsPerClient = 1024;
constexpr uint32_t kMaxName = 256;
constexpr uint32_t kMaxStateTensors = 16;
constexpr uint32_t kMaxRank = 64;
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
void AppendU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<char*>(&v), 4); }
void AppendU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<char*>(&v), 8); }
void AppendString(std::string* out, const std::string& s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  *out += s;
}
uint64_t GetU64(const char* in) {
  uint64_t v;
  std::memcpy(&v, in, 8);
  return v;
}

}  // namespace

// One checkpoint file (nullopt if it does not exist); `layout` null: of any
// model.
absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpointFile(const std::string& path,
                                                                   const ModelLayout* layout);

absl::Status WriteCheckpoint(const std::string& dir, const ModelLayout& layout,
                             const ModelSnapshot& snapshot, const CheckpointContents& contents) {
  const auto& optimizer_tensors = contents.optimizer_tensors;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus("mkdir", dir);
  const std::string path = absl::StrCat(dir, "/", kCheckpointFileName);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp);
  char header[kHeaderBytes];
  std::memcpy(header, kMagicV5, 8);
  PutU64(header + 8, snapshot.version);
  PutU64(header + 16, snapshot.round);
  PutU64(header + 24, layout.Hash());
  PutU64(header + 32, snapshot.params.size());
  // The optimizer section's small fields; the tensors are written in place.
  std::string names;
  AppendString(&names, contents.optimizer_name);
  AppendU32(&names, static_cast<uint32_t>(optimizer_tensors.size()));
  std::vector<std::string> tensor_headers;
  for (const auto& [key, values] : optimizer_tensors) {
    std::string th;
    AppendString(&th, key);
    AppendU64(&th, values->size());
    tensor_headers.push_back(std::move(th));
  }
  Sha256 sha;
  absl::Status status;
  auto emit = [&](const void* data, size_t size) {
    sha.Update(data, size);
    if (status.ok()) status = WriteAll(fd, data, size, tmp);
  };
  emit(header, sizeof(header));
  emit(snapshot.params.data(), snapshot.params.size() * sizeof(float));
  emit(names.data(), names.size());
  for (size_t i = 0; i < optimizer_tensors.size(); ++i) {
    emit(tensor_headers[i].data(), tensor_headers[i].size());
    emit(optimizer_tensors[i].second->data(), optimizer_tensors[i].second->size() * sizeof(float));
  }
  // The applied update ids and the schedule's records.
  std::string registry;
  AppendU32(&registry, static_cast<uint32_t>(contents.applied.size()));
  for (const auto& [client, updates] : contents.applied) {
    AppendString(&registry, client);
    AppendU32(&registry, static_cast<uint32_t>(updates.size()));
    for (const std::string& id : updates) AppendString(&registry, id);
  }
  AppendString(&registry, contents.schedule.name);
  AppendU32(&registry, static_cast<uint32_t>(contents.schedule.state.clients.size()));
  for (const aggregators::ClientRecord& record : contents.schedule.state.clients) {
    AppendString(&registry, record.client_id);
    AppendU64(&registry, record.num_samples);
    registry.append(reinterpret_cast<const char*>(&record.seconds_per_step), 8);
  }
  // The layout: what the parameters are, for tools (tally export).
  AppendU32(&registry, static_cast<uint32_t>(layout.tensors().size()));
  for (const TensorLayout& t : layout.tensors()) {
    AppendString(&registry, t.name);
    AppendU32(&registry, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) AppendU64(&registry, static_cast<uint64_t>(d));
  }
  emit(registry.data(), registry.size());
  unsigned char digest[kDigestBytes];
  sha.Final(digest);
  if (status.ok()) status = WriteAll(fd, digest, sizeof(digest), tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus("fsync", tmp);
  ::close(fd);
  // Keep the checkpoint being replaced as the fallback. A crash between the
  // two renames leaves only the fallback (and the complete .tmp, ignored):
  // start-up then restores the fallback.
  const std::string previous = absl::StrCat(dir, "/", kPreviousCheckpointFileName);
  if (status.ok() && ::rename(path.c_str(), previous.c_str()) != 0 && errno != ENOENT) {
    status = ErrnoStatus("rename", path);
  }
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
  return ReadCheckpointFile(absl::StrCat(dir, "/", kCheckpointFileName), &layout);
}

absl::StatusOr<RestoredCheckpoint> RestoreCheckpoint(const std::string& dir,
                                                     const ModelLayout& layout) {
  RestoredCheckpoint restored;
  for (const char* name : {kCheckpointFileName, kPreviousCheckpointFileName}) {
    const std::string path = absl::StrCat(dir, "/", name);
    absl::StatusOr<std::optional<LoadedCheckpoint>> read = ReadCheckpointFile(path, &layout);
    if (!read.ok()) {
      if (read.status().code() != absl::StatusCode::kDataLoss) return read.status();
      restored.skipped.push_back({path, std::string(read.status().message())});
      continue;
    }
    if (!read->has_value()) continue;
    restored.checkpoint = *std::move(read);
    restored.path = path;
    break;
  }
  return restored;
}

absl::Status NoValidCheckpointError(const std::string& dir, const RestoredCheckpoint& restored) {
  std::string why;
  for (const SkippedCheckpoint& skipped : restored.skipped) {
    absl::StrAppend(&why, why.empty() ? "" : "; ", skipped.why);
  }
  return absl::DataLossError(absl::StrCat(
      "checkpoint_dir '", dir, "' has no valid checkpoint (", why,
      "). Refusing to start from the initial model, which would overwrite them: put a good "
      "checkpoint back as ",
      kCheckpointFileName,
      ", or run with --start_fresh_if_corrupt to start over (the corrupt "
      "files are kept as *.corrupt)"));
}

absl::Status SetAsideCorruptCheckpoints(const RestoredCheckpoint& restored) {
  for (const SkippedCheckpoint& skipped : restored.skipped) {
    const std::string aside = absl::StrCat(skipped.path, ".corrupt");
    if (::rename(skipped.path.c_str(), aside.c_str()) != 0) {
      return ErrnoStatus("rename", skipped.path);
    }
  }
  return absl::OkStatus();
}

RestoreReport ReportOf(const RestoredCheckpoint& restored) {
  RestoreReport report;
  if (!restored.checkpoint.has_value()) return report;
  const LoadedCheckpoint& ckpt = *restored.checkpoint;
  report.version = ckpt.version;
  report.from = restored.path;
  absl::flat_hash_set<std::string> clients;
  for (const auto& [client, ids] : ckpt.applied) clients.insert(client);
  for (const auto& record : ckpt.schedule.state.clients) clients.insert(record.client_id);
  report.clients = clients.size();
  return report;
}

namespace {

// Reads a checkpoint file section by section. The whole file passed its
// checksum first (VerifyChecksum), so a failure here is a file this code did
// not write: still DATA_LOSS, never a crash or a huge allocation.
class SectionReader {
 public:
  SectionReader(int fd, const std::string& path) : fd_(fd), path_(path) {}

  absl::Status Read(void* data, size_t size) { return ReadAll(fd_, data, size, path_); }
  absl::Status ReadString(std::string* out, absl::string_view what) {
    uint32_t size = 0;
    TALLY_RETURN_IF_ERROR(Read(&size, 4));
    if (size > kMaxName) return Corrupt(absl::StrCat(what, " too long"));
    out->resize(size);
    return Read(out->data(), size);
  }
  absl::Status Corrupt(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("checkpoint '", path_, "': ", what));
  }

 private:
  const int fd_;
  const std::string& path_;
};

// Hashes everything before the file's last kDigestBytes and compares with
// them, then rewinds. Done before any field is believed, so a flipped bit
// anywhere (header included) is DATA_LOSS, and start-up tries the fallback.
absl::Status VerifyChecksum(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat", path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < kHeaderBytes + kDigestBytes) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' is truncated"));
  }
  Sha256 sha;
  std::vector<char> buffer(std::min<uint64_t>(size - kDigestBytes, 1 << 20));
  for (uint64_t left = size - kDigestBytes; left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buffer.size()));
    TALLY_RETURN_IF_ERROR(ReadAll(fd, buffer.data(), n, path));
    sha.Update(buffer.data(), n);
    left -= n;
  }
  unsigned char stored[kDigestBytes], digest[kDigestBytes];
  TALLY_RETURN_IF_ERROR(ReadAll(fd, stored, sizeof(stored), path));
  sha.Final(digest);
  if (std::memcmp(digest, stored, kDigestBytes) != 0) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' fails its checksum"));
  }
  if (::lseek(fd, 0, SEEK_SET) != 0) return ErrnoStatus("seek", path);
  return absl::OkStatus();
}

// Format versions 2 and later: the optimizer's name and state tensors.
absl::Status ReadOptimizerSection(SectionReader& in, uint64_t num_params,
                                  OptimizerState* optimizer) {
  TALLY_RETURN_IF_ERROR(in.ReadString(&optimizer->name, "optimizer name"));
  uint32_t tensors = 0;
  TALLY_RETURN_IF_ERROR(in.Read(&tensors, 4));
  if (tensors > kMaxStateTensors) return in.Corrupt("too many optimizer state tensors");
  for (uint32_t t = 0; t < tensors; ++t) {
    std::string key;
    TALLY_RETURN_IF_ERROR(in.ReadString(&key, "optimizer state key"));
    uint64_t count = 0;
    TALLY_RETURN_IF_ERROR(in.Read(&count, 8));
    if (count != num_params) return in.Corrupt("optimizer state of the wrong size");
    std::vector<float> values(count);
    TALLY_RETURN_IF_ERROR(in.Read(values.data(), count * sizeof(float)));
    optimizer->tensors.emplace_back(std::move(key), std::move(values));
  }
  return absl::OkStatus();
}

// Format versions 3 and later: the ids of the updates the model contains.
absl::Status ReadAppliedSection(SectionReader& in, AppliedUpdateIds* applied) {
  uint32_t clients = 0;
  TALLY_RETURN_IF_ERROR(in.Read(&clients, 4));
  if (clients > kMaxClients) return in.Corrupt("too many clients");
  for (uint32_t c = 0; c < clients; ++c) {
    auto& [client, updates] = applied->emplace_back();
    TALLY_RETURN_IF_ERROR(in.ReadString(&client, "a client id"));
    uint32_t count = 0;
    TALLY_RETURN_IF_ERROR(in.Read(&count, 4));
    if (count > kMaxIdsPerClient) return in.Corrupt("too many update ids");
    updates.resize(count);
    for (std::string& id : updates) TALLY_RETURN_IF_ERROR(in.ReadString(&id, "an update id"));
  }
  return absl::OkStatus();
}

// Format version 4: the schedule's name and client records.
absl::Status ReadScheduleSection(SectionReader& in, ScheduleCheckpoint* schedule) {
  TALLY_RETURN_IF_ERROR(in.ReadString(&schedule->name, "schedule name"));
  uint32_t records = 0;
  TALLY_RETURN_IF_ERROR(in.Read(&records, 4));
  if (records > kMaxClients) return in.Corrupt("too many schedule records");
  for (uint32_t r = 0; r < records; ++r) {
    // One at a time: a wrong count fails on a short read, not a huge allocation.
    aggregators::ClientRecord& record = schedule->state.clients.emplace_back();
    TALLY_RETURN_IF_ERROR(in.ReadString(&record.client_id, "a client id"));
    TALLY_RETURN_IF_ERROR(in.Read(&record.num_samples, 8));
    TALLY_RETURN_IF_ERROR(in.Read(&record.seconds_per_step, 8));
  }
  return absl::OkStatus();
}

// Format version 5: the model's layout, which must be the header's.
absl::Status ReadLayoutSection(SectionReader& in, uint64_t hash, uint64_t num_params,
                               std::optional<ModelLayout>* layout) {
  uint32_t tensors = 0;
  TALLY_RETURN_IF_ERROR(in.Read(&tensors, 4));
  if (tensors == 0 || tensors > num_params) return in.Corrupt("bad tensor count");
  std::vector<ModelLayout::TensorDef> defs;
  for (uint32_t t = 0; t < tensors; ++t) {
    ModelLayout::TensorDef& def = defs.emplace_back();
    TALLY_RETURN_IF_ERROR(in.ReadString(&def.name, "tensor name"));
    uint32_t rank = 0;
    TALLY_RETURN_IF_ERROR(in.Read(&rank, 4));
    if (rank > kMaxRank) return in.Corrupt("tensor rank too large");
    def.shape.resize(rank);
    TALLY_RETURN_IF_ERROR(in.Read(def.shape.data(), rank * sizeof(int64_t)));
  }
  absl::StatusOr<ModelLayout> made = ModelLayout::Create(defs);
  if (!made.ok() || made->Hash() != hash || made->NumParams() != num_params) {
    return in.Corrupt("the layout section does not match the header");
  }
  *layout = *std::move(made);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpointFileAnyModel(
    const std::string& path) {
  return ReadCheckpointFile(path, nullptr);
}

absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpointFile(const std::string& path,
                                                                   const ModelLayout* layout) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<LoadedCheckpoint>();
    return ErrnoStatus("open", path);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  TALLY_RETURN_IF_ERROR(VerifyChecksum(fd, path));
  SectionReader in(fd, path);
  char header[kHeaderBytes];
  TALLY_RETURN_IF_ERROR(in.Read(header, sizeof(header)));
  int format = 0;  // 1..5; older formats lack the later sections.
  const char* const magics[] = {kMagicV1, kMagicV2, kMagicV3, kMagicV4, kMagicV5};
  for (int v = 0; v < 5; ++v) {
    if (std::memcmp(header, magics[v], 8) == 0) format = v + 1;
  }
  if (format == 0) return in.Corrupt("no tally header");
  LoadedCheckpoint ckpt;
  ckpt.version = GetU64(header + 8);
  ckpt.round = GetU64(header + 16);
  const uint64_t hash = GetU64(header + 24);
  const uint64_t num_params = GetU64(header + 32);
  ckpt.layout_hash = hash;
  if (layout != nullptr && (hash != layout->Hash() || num_params != layout->NumParams())) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint '", path, "' is for another model (", num_params,
                     " parameters, layout hash ", absl::Hex(hash), "); the config describes ",
                     layout->NumParams(), " parameters, hash ", absl::Hex(layout->Hash())));
  }
  // A SHA-256 is no signature: a forged file can carry a valid one. Never
  // allocate beyond what the file holds.
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat", path);
  if (num_params > static_cast<uint64_t>(st.st_size) / sizeof(float)) {
    return in.Corrupt("more parameters than the file holds");
  }
  if (ckpt.version == 0) return in.Corrupt("version 0");
  ckpt.params.resize(num_params);
  TALLY_RETURN_IF_ERROR(in.Read(ckpt.params.data(), num_params * sizeof(float)));
  if (format >= 2) TALLY_RETURN_IF_ERROR(ReadOptimizerSection(in, num_params, &ckpt.optimizer));
  if (format >= 3) TALLY_RETURN_IF_ERROR(ReadAppliedSection(in, &ckpt.applied));
  if (format >= 4) TALLY_RETURN_IF_ERROR(ReadScheduleSection(in, &ckpt.schedule));
  if (format >= 5) TALLY_RETURN_IF_ERROR(ReadLayoutSection(in, hash, num_params, &ckpt.layout));
  unsigned char digest[kDigestBytes];
  TALLY_RETURN_IF_ERROR(in.Read(digest, sizeof(digest)));
  char extra;
  if (::read(fd, &extra, 1) != 0) return in.Corrupt("trailing bytes");
  return std::optional<LoadedCheckpoint>(std::move(ckpt));
}

}  // namespace tally::server
