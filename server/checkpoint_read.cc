// Reading checkpoint files (the writer: server/checkpoint.cc).
#include <fcntl.h>
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
#include "server/checkpoint.h"
#include "server/checkpoint_format.h"

namespace tally::server {

using checkpoint_format::kMagicV1;
using checkpoint_format::kMagicV2;
using checkpoint_format::kMagicV3;
using checkpoint_format::kMagicV4;
using checkpoint_format::kMagicV5;
using checkpoint_format::kMagicV6;
using checkpoint_format::kMaxPrivacyLedger;
using checkpoint_format::kMaxClients;
using checkpoint_format::kMaxIdsPerClient;
using checkpoint_format::kMaxName;
using checkpoint_format::kMaxStateTensors;
using checkpoint_format::kMaxRank;
using checkpoint_format::kHeaderBytes;
using checkpoint_format::kDigestBytes;
using checkpoint_format::ErrnoStatus;
using checkpoint_format::Sha256;
using checkpoint_format::ReadAll;
using checkpoint_format::GetU64;

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

// Format version 6: the privacy ledger's bytes (parsed by the server,
// server/privacy_state.cc) and the clip norm.
absl::Status ReadPrivacySection(SectionReader& in, PrivacyCheckpoint* privacy) {
  uint32_t size = 0;
  TALLY_RETURN_IF_ERROR(in.Read(&size, 4));
  if (size > kMaxPrivacyLedger) return in.Corrupt("privacy ledger too long");
  privacy->ledger.resize(size);
  TALLY_RETURN_IF_ERROR(in.Read(privacy->ledger.data(), size));
  return in.Read(&privacy->clip_norm, 8);
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
  int format = 0;  // 1..6; older formats lack the later sections.
  const char* const magics[] = {kMagicV1, kMagicV2, kMagicV3, kMagicV4, kMagicV5, kMagicV6};
  for (int v = 0; v < 6; ++v) {
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
  if (format >= 6) TALLY_RETURN_IF_ERROR(ReadPrivacySection(in, &ckpt.privacy));
  unsigned char digest[kDigestBytes];
  TALLY_RETURN_IF_ERROR(in.Read(digest, sizeof(digest)));
  char extra;
  if (::read(fd, &extra, 1) != 0) return in.Corrupt("trailing bytes");
  return std::optional<LoadedCheckpoint>(std::move(ckpt));
}

}  // namespace tally::server
