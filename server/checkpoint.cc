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
#include "server/checkpoint_format.h"

namespace tally::server {

using checkpoint_format::kMagicV6;
using checkpoint_format::kHeaderBytes;
using checkpoint_format::kDigestBytes;
using checkpoint_format::ErrnoStatus;
using checkpoint_format::Sha256;
using checkpoint_format::WriteAll;
using checkpoint_format::PutU64;
using checkpoint_format::AppendU32;
using checkpoint_format::AppendU64;
using checkpoint_format::AppendString;


namespace {

// The section after the optimizer's: the applied update ids, the
// schedule's records and the layout (what the parameters are, for tools).
std::string RegistrySection(const ModelLayout& layout, const CheckpointContents& contents) {
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
  // Version 6: the privacy ledger (the epsilon spent survives restarts).
  AppendU32(&registry, static_cast<uint32_t>(contents.privacy.ledger.size()));
  registry.append(contents.privacy.ledger);
  registry.append(reinterpret_cast<const char*>(&contents.privacy.clip_norm), 8);
  return registry;
}

// Moves the written `tmp` to `path`, keeping the checkpoint it replaces as
// the fallback; `status`: how writing `tmp` went (on error it is removed).
absl::Status ReplaceCheckpoint(const std::string& dir, const std::string& path,
                               const std::string& tmp, absl::Status status) {
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

}  // namespace

absl::Status WriteCheckpoint(const std::string& dir, const ModelLayout& layout,
                             const ModelSnapshot& snapshot, const CheckpointContents& contents) {
  const auto& optimizer_tensors = contents.optimizer_tensors;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus("mkdir", dir);
  const std::string path = absl::StrCat(dir, "/", kCheckpointFileName);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp);
  char header[kHeaderBytes];
  std::memcpy(header, kMagicV6, 8);
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
  const std::string registry = RegistrySection(layout, contents);
  emit(registry.data(), registry.size());
  unsigned char digest[kDigestBytes];
  sha.Final(digest);
  if (status.ok()) status = WriteAll(fd, digest, sizeof(digest), tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus("fsync", tmp);
  ::close(fd);
  return ReplaceCheckpoint(dir, path, tmp, status);
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

}  // namespace tally::server
