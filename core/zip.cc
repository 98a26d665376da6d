#include "core/zip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tally::model_file_internal {
namespace {

constexpr uint32_t kLocalSignature = 0x04034b50;
constexpr uint32_t kCentralSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kEnd64Signature = 0x06064b50;
constexpr uint32_t kLocator64Signature = 0x07064b50;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kEndSize = 22;
constexpr size_t kEnd64Size = 56;
constexpr size_t kLocatorSize = 20;
constexpr uint32_t kMax32 = 0xffffffffu;
constexpr uint16_t kMax16 = 0xffffu;
constexpr uint64_t kMaxMembers = 1 << 20;
constexpr uint64_t kMaxDirectoryBytes = 1 << 28;
// Deflate expands at most ~1032:1; a member claiming more is a lie.
constexpr uint64_t kMaxDeflateRatio = 1033;
constexpr size_t kInflateInputBytes = 1 << 16;

uint64_t Get(const unsigned char* p, size_t size) {
  uint64_t v = 0;
  for (size_t i = size; i-- > 0;) v = v << 8 | p[i];
  return v;
}

void Put(std::string* out, uint64_t v, size_t size) {
  for (size_t i = 0; i < size; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

// A cursor over a central-directory record; reads past its end fail.
class Cursor {
 public:
  Cursor(const unsigned char* data, size_t size) : data_(data), size_(size) {}
  bool Has(size_t n) const { return n <= size_ - pos_; }
  uint64_t Take(size_t n) {  // Caller checked Has(n).
    const uint64_t v = Get(data_ + pos_, n);
    pos_ += n;
    return v;
  }
  const unsigned char* here() const { return data_ + pos_; }
  void Skip(size_t n) { pos_ += n; }
  size_t pos() const { return pos_; }

 private:
  const unsigned char* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Where the central directory is, from the end records.
struct Directory {
  uint64_t entries = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  uint64_t end = 0;  // Where the records after the directory start.
};

absl::StatusOr<Directory> FindDirectory(const InputFile& file) {
  const std::string& path = file.path();
  if (file.size() < kEndSize) return Invalid(path, "not a ZIP archive (too short for .npz)");
  const uint64_t tail_size = std::min<uint64_t>(file.size(), kEndSize + kMax16);
  std::vector<unsigned char> tail(static_cast<size_t>(tail_size));
  TALLY_RETURN_IF_ERROR(
      file.ReadAt(file.size() - tail_size, tail.data(), tail.size(), "end of archive"));
  // The last end record whose comment reaches exactly the end of the file.
  size_t at = tail.size();
  for (size_t i = tail.size() - kEndSize + 1; i-- > 0;) {
    if (Get(&tail[i], 4) == kEndSignature && i + kEndSize + Get(&tail[i + 20], 2) == tail.size()) {
      at = i;
      break;
    }
  }
  if (at == tail.size()) return Invalid(path, "not a ZIP archive (no end of central directory)");
  const unsigned char* end = &tail[at];
  Directory dir;
  dir.end = file.size() - tail_size + at;
  if (Get(end + 4, 2) != 0 || Get(end + 6, 2) != 0) {
    return Invalid(path, "ZIP archives split over several disks are not supported");
  }
  dir.entries = Get(end + 10, 2);
  dir.size = Get(end + 12, 4);
  dir.offset = Get(end + 16, 4);
  if (dir.entries == kMax16 || dir.size == kMax32 || dir.offset == kMax32) {
    // zip64: a locator right before the end record points at the zip64 end record.
    if (dir.end < kLocatorSize) return Invalid(path, "zip64 end record missing");
    unsigned char locator[kLocatorSize];
    TALLY_RETURN_IF_ERROR(
        file.ReadAt(dir.end - kLocatorSize, locator, kLocatorSize, "zip64 locator"));
    if (Get(locator, 4) != kLocator64Signature) return Invalid(path, "zip64 locator missing");
    const uint64_t end64 = Get(locator + 8, 8);
    if (end64 > dir.end - kLocatorSize || dir.end - kLocatorSize - end64 < kEnd64Size) {
      return Invalid(path, "zip64 end record offset out of range");
    }
    unsigned char record[kEnd64Size];
    TALLY_RETURN_IF_ERROR(file.ReadAt(end64, record, kEnd64Size, "zip64 end record"));
    if (Get(record, 4) != kEnd64Signature) return Invalid(path, "bad zip64 end record");
    if (Get(record + 16, 4) != 0 || Get(record + 20, 4) != 0) {
      return Invalid(path, "ZIP archives split over several disks are not supported");
    }
    dir.entries = Get(record + 32, 8);
    dir.size = Get(record + 40, 8);
    dir.offset = Get(record + 48, 8);
    dir.end = end64;
  }
  if (dir.offset > dir.end || dir.size > dir.end - dir.offset) {
    return Invalid(path, absl::StrCat("central directory (", dir.size, " bytes at offset ",
                                      dir.offset, ") lies outside the archive"));
  }
  if (dir.entries > kMaxMembers || dir.size > kMaxDirectoryBytes ||
      dir.entries > dir.size / kCentralHeaderSize) {
    return Invalid(path, absl::StrCat("central directory claims ", dir.entries, " members in ",
                                      dir.size, " bytes"));
  }
  return dir;
}

// The zip64 extended information of a central record: each field that the
// 32-bit (16-bit) record holds as all-ones is here, in this order.
absl::Status ReadZip64Extra(absl::string_view path, Cursor extra, ZipMember* member,
                            uint64_t* local_offset, uint64_t* disk) {
  while (extra.Has(4)) {
    const uint64_t id = extra.Take(2);
    const uint64_t size = extra.Take(2);
    if (!extra.Has(size))
      return Invalid(path, absl::StrCat("member '", member->name, "' has a malformed extra field"));
    if (id != 1) {
      extra.Skip(size);
      continue;
    }
    Cursor fields(extra.here(), size);
    for (uint64_t* field : {&member->uncompressed_size, &member->compressed_size, local_offset}) {
      if (*field != kMax32) continue;
      if (!fields.Has(8))
        return Invalid(path, absl::StrCat("member '", member->name, "' has a short zip64 field"));
      *field = fields.Take(8);
    }
    if (*disk == kMax16) *disk = fields.Has(4) ? fields.Take(4) : 1;
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

// One central record at the cursor; fills `member` and its local header offset.
absl::Status ReadCentralRecord(absl::string_view path, Cursor& dir, ZipMember* member,
                               uint64_t* local_offset) {
  if (!dir.Has(kCentralHeaderSize) || dir.Take(4) != kCentralSignature) {
    return Invalid(path, "malformed central directory record");
  }
  dir.Skip(4);  // Versions.
  const uint64_t flags = dir.Take(2);
  member->method = static_cast<uint16_t>(dir.Take(2));
  dir.Skip(4);  // Time, date.
  member->crc32 = static_cast<uint32_t>(dir.Take(4));
  member->compressed_size = dir.Take(4);
  member->uncompressed_size = dir.Take(4);
  const size_t name_size = dir.Take(2);
  const size_t extra_size = dir.Take(2);
  const size_t comment_size = dir.Take(2);
  uint64_t disk = dir.Take(2);
  dir.Skip(6);  // Attributes.
  *local_offset = dir.Take(4);
  if (!dir.Has(name_size + extra_size + comment_size)) {
    return Invalid(path, "central directory record runs past the directory");
  }
  member->name.assign(reinterpret_cast<const char*>(dir.here()), name_size);
  dir.Skip(name_size);
  TALLY_RETURN_IF_ERROR(
      ReadZip64Extra(path, Cursor(dir.here(), extra_size), member, local_offset, &disk));
  dir.Skip(extra_size + comment_size);
  const std::string quoted = absl::StrCat("member '", member->name, "'");
  if (disk != 0) return Invalid(path, absl::StrCat(quoted, " is on another disk"));
  if (flags & 0x41) return Invalid(path, absl::StrCat(quoted, " is encrypted"));
  if (member->method != 0 && member->method != 8) {
    return Invalid(path, absl::StrCat(quoted, " uses compression method ", member->method,
                                      " (tally reads stored and deflate, as numpy writes)"));
  }
  if (member->method == 0 && member->compressed_size != member->uncompressed_size) {
    return Invalid(path, absl::StrCat(quoted, " is stored but its sizes differ"));
  }
  if (member->method == 8 &&
      member->uncompressed_size / kMaxDeflateRatio > member->compressed_size) {
    return Invalid(path, absl::StrCat(quoted, " claims ", member->uncompressed_size, " bytes from ",
                                      member->compressed_size,
                                      " compressed bytes, more than deflate can produce"));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32(uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = static_cast<uint32_t>(::crc32(crc, p, n));
    p += n;
    size -= n;
  }
  return crc;
}

absl::StatusOr<std::vector<ZipMember>> ListZipMembers(const InputFile& file) {
  const std::string& path = file.path();
  TALLY_ASSIGN_OR_RETURN(const Directory dir, FindDirectory(file));
  std::vector<unsigned char> bytes(static_cast<size_t>(dir.size));
  TALLY_RETURN_IF_ERROR(file.ReadAt(dir.offset, bytes.data(), bytes.size(), "central directory"));
  Cursor cursor(bytes.data(), bytes.size());
  std::vector<ZipMember> members(static_cast<size_t>(dir.entries));
  std::vector<std::pair<uint64_t, size_t>> by_offset;  // Local header offset, member.
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < members.size(); ++i) {
    ZipMember& member = members[i];
    uint64_t local = 0;
    TALLY_RETURN_IF_ERROR(ReadCentralRecord(path, cursor, &member, &local));
    if (!names.insert(member.name).second) {
      return Invalid(path, absl::StrCat("member '", member.name, "' appears twice"));
    }
    unsigned char header[kLocalHeaderSize];
    if (local > dir.offset || dir.offset - local < kLocalHeaderSize) {
      return Invalid(path, absl::StrCat("member '", member.name, "' has a local header offset ",
                                        local, " outside the archive's data"));
    }
    TALLY_RETURN_IF_ERROR(file.ReadAt(local, header, sizeof(header), "local header"));
    const size_t name_size = Get(header + 26, 2);
    const uint64_t data = local + kLocalHeaderSize + name_size + Get(header + 28, 2);
    std::string local_name(name_size, '\0');
    if (Get(header, 4) != kLocalSignature || data > dir.offset ||
        member.compressed_size > dir.offset - data ||
        !file.ReadAt(local + kLocalHeaderSize, local_name.data(), name_size, "name").ok() ||
        local_name != member.name) {
      return Invalid(path, absl::StrCat("member '", member.name,
                                        "' has a local header that does not match the central "
                                        "directory, or data outside the archive"));
    }
    member.data_offset = data;
    by_offset.emplace_back(local, i);
  }
  if (cursor.pos() != bytes.size()) {
    return Invalid(path, "central directory holds more than its records");
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const ZipMember& before = members[by_offset[k - 1].second];
    if (by_offset[k].first < before.data_offset + before.compressed_size) {
      return Invalid(path, absl::StrCat("members '", before.name, "' and '",
                                        members[by_offset[k].second].name, "' overlap"));
    }
  }
  return members;
}

struct ZipMemberReader::Inflater {
  z_stream stream{};
  std::vector<unsigned char> input;
};

ZipMemberReader::ZipMemberReader(const InputFile& file, const ZipMember& member)
    : file_(file), member_(member) {}

ZipMemberReader::~ZipMemberReader() {
  if (inflater_ != nullptr) inflateEnd(&inflater_->stream);
}

absl::StatusOr<std::unique_ptr<ZipMemberReader>> ZipMemberReader::Open(const InputFile& file,
                                                                       const ZipMember& member) {
  std::unique_ptr<ZipMemberReader> reader(new ZipMemberReader(file, member));
  if (member.method == 8) {
    auto inflater = std::make_unique<Inflater>();
    if (inflateInit2(&inflater->stream, -MAX_WBITS) != Z_OK) {
      return absl::ResourceExhaustedError("zlib: inflateInit2 failed");
    }
    inflater->input.resize(kInflateInputBytes);
    reader->inflater_ = std::move(inflater);
  }
  return reader;
}

absl::Status ZipMemberReader::Corrupt(absl::string_view what) const {
  return Invalid(file_.path(), absl::StrCat("member '", member_.name, "': ", what));
}

absl::Status ZipMemberReader::Refill() {
  z_stream& zs = inflater_->stream;
  const size_t n = static_cast<size_t>(
      std::min<uint64_t>(member_.compressed_size - consumed_, inflater_->input.size()));
  TALLY_RETURN_IF_ERROR(
      file_.ReadAt(member_.data_offset + consumed_, inflater_->input.data(), n, "member data"));
  consumed_ += n;
  zs.next_in = inflater_->input.data();
  zs.avail_in = static_cast<uInt>(n);
  return absl::OkStatus();
}

absl::Status ZipMemberReader::Read(void* out, size_t n, absl::string_view what) {
  if (n > member_.uncompressed_size - produced_) {
    return Corrupt(absl::StrCat("truncated ", what, ": the member ends after ",
                                member_.uncompressed_size, " bytes"));
  }
  if (inflater_ == nullptr) {
    TALLY_RETURN_IF_ERROR(file_.ReadAt(member_.data_offset + produced_, out, n, what));
  } else {
    z_stream& zs = inflater_->stream;
    zs.next_out = static_cast<Bytef*>(out);
    size_t left = n;
    while (left > 0) {
      if (zs.avail_in == 0) {
        if (consumed_ == member_.compressed_size) {
          return Corrupt(absl::StrCat("truncated ", what, ": the compressed data ends early"));
        }
        TALLY_RETURN_IF_ERROR(Refill());
      }
      const uInt chunk = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
      zs.avail_out = chunk;
      const int result = inflate(&zs, Z_NO_FLUSH);
      left -= chunk - zs.avail_out;
      if (result == Z_STREAM_END && left > 0) {
        return Corrupt(absl::StrCat("truncated ", what, ": the compressed data ends early"));
      }
      if (result != Z_OK && result != Z_STREAM_END && result != Z_BUF_ERROR) {
        return Corrupt(
            absl::StrCat("corrupt deflate data (", zs.msg != nullptr ? zs.msg : "zlib error", ")"));
      }
    }
  }
  crc_ = Crc32(crc_, out, n);
  produced_ += n;
  return absl::OkStatus();
}

absl::Status ZipMemberReader::Finish() {
  if (produced_ != member_.uncompressed_size) {
    return Corrupt(absl::StrCat(member_.uncompressed_size - produced_,
                                " unexpected bytes after the array data"));
  }
  if (inflater_ != nullptr) {
    // The stream must end here, on the last compressed byte.
    z_stream& zs = inflater_->stream;
    unsigned char extra;
    int result = Z_OK;
    for (;;) {
      if (zs.avail_in == 0 && consumed_ < member_.compressed_size) TALLY_RETURN_IF_ERROR(Refill());
      zs.next_out = &extra;
      zs.avail_out = 1;
      result = inflate(&zs, Z_NO_FLUSH);
      if (zs.avail_out == 0) return Corrupt("holds more data than its declared size");
      if (result != Z_OK) break;
      if (zs.avail_in == 0 && consumed_ == member_.compressed_size) break;
    }
    if (result != Z_STREAM_END) return Corrupt("the compressed data does not end properly");
    if (zs.avail_in != 0 || consumed_ != member_.compressed_size) {
      return Corrupt("compressed bytes after the end of the deflate stream");
    }
  }
  if (crc_ != member_.crc32) return Corrupt("CRC-32 mismatch (the data is corrupt)");
  return absl::OkStatus();
}

absl::Status ZipWriter::EndMember() {
  if (entries_.empty()) return absl::OkStatus();
  if (out_->position() - content_start_ != entries_.back().size) {
    return absl::InternalError(absl::StrCat("zip: member '", entries_.back().name, "' wrote ",
                                            out_->position() - content_start_, " bytes, declared ",
                                            entries_.back().size));
  }
  return absl::OkStatus();
}

namespace {

bool Ascii(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Fixed fields shared by the local and the central header, from "version
// needed" to the name length: version, flags (bit 11: UTF-8 name), method 0,
// time and date (1980-01-01 00:00, for reproducible files), CRC, sizes.
void PutCommon(std::string* out, const std::string& name, uint32_t crc32, uint64_t size,
               bool zip64) {
  Put(out, zip64 ? 45 : 20, 2);
  Put(out, Ascii(name) ? 0 : 0x800, 2);
  Put(out, 0, 2);
  Put(out, 0, 2);
  Put(out, 0x21, 2);
  Put(out, crc32, 4);
  Put(out, zip64 ? kMax32 : size, 4);
  Put(out, zip64 ? kMax32 : size, 4);
  Put(out, name.size(), 2);
}

}  // namespace

absl::Status ZipWriter::BeginMember(const std::string& name, uint64_t size, uint32_t crc32) {
  TALLY_RETURN_IF_ERROR(EndMember());
  const uint64_t offset = out_->position();
  const bool zip64 = force_zip64_ || size >= kMax32 || offset >= kMax32;
  std::string header;
  Put(&header, kLocalSignature, 4);
  PutCommon(&header, name, crc32, size, zip64);
  Put(&header, zip64 ? 20 : 0, 2);
  header += name;
  if (zip64) {
    Put(&header, 1, 2);
    Put(&header, 16, 2);
    Put(&header, size, 8);
    Put(&header, size, 8);
  }
  out_->Write(header);
  content_start_ = out_->position();
  entries_.push_back({name, size, crc32, offset});
  return absl::OkStatus();
}

absl::Status ZipWriter::Finish() {
  TALLY_RETURN_IF_ERROR(EndMember());
  const uint64_t directory_offset = out_->position();
  for (const Entry& entry : entries_) {
    const bool zip64 = force_zip64_ || entry.size >= kMax32 || entry.offset >= kMax32;
    std::string record;
    Put(&record, kCentralSignature, 4);
    Put(&record, 3 << 8 | 45, 2);  // Made by: Unix, version 4.5.
    PutCommon(&record, entry.name, entry.crc32, entry.size, zip64);
    Put(&record, zip64 ? 28 : 0, 2);
    Put(&record, 0, 2);               // Comment.
    Put(&record, 0, 2);               // Disk.
    Put(&record, 0, 2);               // Internal attributes.
    Put(&record, 0100644u << 16, 4);  // External: a regular file, rw-r--r--.
    Put(&record, zip64 ? kMax32 : entry.offset, 4);
    record += entry.name;
    if (zip64) {
      Put(&record, 1, 2);
      Put(&record, 24, 2);
      Put(&record, entry.size, 8);
      Put(&record, entry.size, 8);
      Put(&record, entry.offset, 8);
    }
    out_->Write(record);
  }
  const uint64_t directory_size = out_->position() - directory_offset;
  const bool zip64 = force_zip64_ || entries_.size() >= kMax16 || directory_size >= kMax32 ||
                     directory_offset >= kMax32;
  std::string end;
  if (zip64) {
    const uint64_t end64 = out_->position();
    Put(&end, kEnd64Signature, 4);
    Put(&end, kEnd64Size - 12, 8);
    Put(&end, 3 << 8 | 45, 2);
    Put(&end, 45, 2);
    Put(&end, 0, 4);
    Put(&end, 0, 4);
    Put(&end, entries_.size(), 8);
    Put(&end, entries_.size(), 8);
    Put(&end, directory_size, 8);
    Put(&end, directory_offset, 8);
    Put(&end, kLocator64Signature, 4);
    Put(&end, 0, 4);
    Put(&end, end64, 8);
    Put(&end, 1, 4);
  }
  Put(&end, kEndSignature, 4);
  Put(&end, 0, 4);  // Disks.
  Put(&end, zip64 ? kMax16 : entries_.size(), 2);
  Put(&end, zip64 ? kMax16 : entries_.size(), 2);
  Put(&end, zip64 ? kMax32 : directory_size, 4);
  Put(&end, zip64 ? kMax32 : directory_offset, 4);
  Put(&end, 0, 2);  // Comment.
  out_->Write(end);
  return absl::OkStatus();
}

}  // namespace tally::model_file_internal
