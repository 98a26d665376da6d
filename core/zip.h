// ZIP archives, as far as .npz files need them (core/npz.cc): listing the
// members through the central directory (zip64 included), reading a stored
// or deflated member sequentially with its size and CRC-32 checked, and
// writing stored members. Format: PKWARE's APPNOTE.TXT.
//
// The archive is untrusted: the directory's offsets and sizes are checked
// against the file (members inside the file, before the directory, not
// overlapping), a member's local header must name the same file, and a
// deflated member's output is bounded by its declared size.
//
// Thread safety: ZipMemberReader and ZipWriter are thread-compatible.
#ifndef TALLY_CORE_ZIP_H_
#define TALLY_CORE_ZIP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_file_io.h"

namespace tally::model_file_internal {

struct ZipMember {
  std::string name;
  uint16_t method = 0;  // 0: stored, 8: deflate.
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t data_offset = 0;  // Of its (compressed) data, after the local header.
};

// The members of the archive in `file`, in central-directory order.
// INVALID_ARGUMENT naming the file for anything malformed, encrypted, split
// over several disks or compressed other than stored or deflate.
absl::StatusOr<std::vector<ZipMember>> ListZipMembers(const InputFile& file);

// A member's content, read front to back.
class ZipMemberReader {
 public:
  static absl::StatusOr<std::unique_ptr<ZipMemberReader>> Open(const InputFile& file,
                                                               const ZipMember& member);
  ~ZipMemberReader();
  ZipMemberReader(const ZipMemberReader&) = delete;
  ZipMemberReader& operator=(const ZipMemberReader&) = delete;

  // Reads exactly `n` bytes of content; INVALID_ARGUMENT naming the member
  // and `what` if the content ends (or the data is corrupt) before.
  absl::Status Read(void* out, size_t n, absl::string_view what);
  // After the whole content was read: no bytes left over, the compressed
  // data used up exactly, the CRC-32 as declared.
  absl::Status Finish();

 private:
  ZipMemberReader(const InputFile& file, const ZipMember& member);
  absl::Status Corrupt(absl::string_view what) const;
  absl::Status Refill();

  const InputFile& file_;
  const ZipMember member_;
  struct Inflater;
  std::unique_ptr<Inflater> inflater_;  // Deflate members only.
  uint64_t produced_ = 0;               // Content bytes returned so far.
  uint64_t consumed_ = 0;               // Compressed bytes read from the file.
  uint32_t crc_ = 0;
};

// Writes stored members: BeginMember (with the content's size and CRC-32,
// see Crc32), the content through the OutputFile, then the next member;
// Finish writes the central directory.
class ZipWriter {
 public:
  // `force_zip64`: zip64 records even where 32-bit fields would do.
  ZipWriter(OutputFile* out, bool force_zip64) : out_(out), force_zip64_(force_zip64) {}
  // INTERNAL if the previous member's content was not its declared size.
  absl::Status BeginMember(const std::string& name, uint64_t size, uint32_t crc32);
  absl::Status Finish();

 private:
  absl::Status EndMember();
  struct Entry {
    std::string name;
    uint64_t size = 0;
    uint32_t crc32 = 0;
    uint64_t offset = 0;  // Of the local header.
  };
  OutputFile* out_;
  const bool force_zip64_;
  std::vector<Entry> entries_;
  uint64_t content_start_ = 0;
};

// CRC-32 (ZIP's, zlib's crc32) of `size` bytes, continuing from `crc`.
uint32_t Crc32(uint32_t crc, const void* data, size_t size);

}  // namespace tally::model_file_internal

#endif  // TALLY_CORE_ZIP_H_
