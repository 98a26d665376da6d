#include "proto/chunk_wire.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/varint.h"

namespace tally::wire {
namespace {

// Sequential reader over a list of slices.
class SliceCursor {
 public:
  explicit SliceCursor(const std::vector<grpc::Slice>& slices) : slices_(slices) { Skip0(); }

  bool AtEnd() const { return index_ >= slices_.size(); }

  bool ReadByte(uint8_t* b) {
    if (AtEnd()) return false;
    *b = slices_[index_].begin()[pos_];
    Advance(1);
    return true;
  }

  bool ReadVarint(uint64_t* value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!ReadByte(&b)) return false;
      result |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *value = result;
        return true;
      }
    }
    return false;  // More than 10 bytes.
  }

  // Appends views of the next `n` bytes to `views` (if non-null).
  bool Take(uint64_t n, std::vector<absl::string_view>* views) {
    while (n > 0) {
      if (AtEnd()) return false;
      const grpc::Slice& s = slices_[index_];
      const size_t here = static_cast<size_t>(std::min<uint64_t>(n, s.size() - pos_));
      if (views != nullptr) {
        views->emplace_back(reinterpret_cast<const char*>(s.begin()) + pos_, here);
      }
      Advance(here);
      n -= here;
    }
    return true;
  }

 private:
  void Advance(size_t n) {
    pos_ += n;
    if (pos_ == slices_[index_].size()) {
      pos_ = 0;
      ++index_;
      Skip0();
    }
  }
  void Skip0() {
    while (index_ < slices_.size() && slices_[index_].size() == 0) ++index_;
  }

  const std::vector<grpc::Slice>& slices_;
  size_t index_ = 0;
  size_t pos_ = 0;
};

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed UpdateChunk: ", what));
}

}  // namespace

absl::Status ParseUpdateChunk(const std::vector<grpc::Slice>& slices, ParsedUpdateChunk* out) {
  SliceCursor cursor(slices);
  while (!cursor.AtEnd()) {
    uint64_t tag;
    if (!cursor.ReadVarint(&tag)) return Malformed("truncated tag");
    const uint64_t field = tag >> 3;
    const int wire_type = static_cast<int>(tag & 7);
    if (field == 0) return Malformed("field number 0");
    if (field == 1 || field == 2) {
      if (wire_type != 2) return Malformed("wrong wire type for header/data");
      uint64_t length;
      if (!cursor.ReadVarint(&length)) return Malformed("truncated length");
      std::vector<absl::string_view> views;
      if (!cursor.Take(length, &views)) return Malformed("field longer than the message");
      if (field == 1) {
        std::string bytes;
        bytes.reserve(length);
        for (absl::string_view v : views) bytes.append(v.data(), v.size());
        if (!out->header.ParseFromString(bytes)) return Malformed("unparsable header");
        out->has_header = true;
      } else {
        // Last one wins, as in protobuf.
        out->data = std::move(views);
        out->data_size = length;
        out->has_data = true;
      }
      continue;
    }
    switch (wire_type) {
      case 0: {
        uint64_t value;
        if (!cursor.ReadVarint(&value)) return Malformed("truncated varint");
        if (field == 3) out->offset = value;
        break;
      }
      case 1:
        if (field == 3 || !cursor.Take(8, nullptr)) return Malformed("bad fixed64 field");
        break;
      case 2: {
        uint64_t length;
        if (field == 3 || !cursor.ReadVarint(&length) || !cursor.Take(length, nullptr)) {
          return Malformed("bad length-delimited field");
        }
        break;
      }
      case 5:
        if (field == 3 || !cursor.Take(4, nullptr)) return Malformed("bad fixed32 field");
        break;
      default:
        return Malformed(absl::StrCat("unsupported wire type ", wire_type));
    }
  }
  return absl::OkStatus();
}

void ChunkFraming(size_t size, uint64_t offset, std::string* prefix, std::string* suffix) {
  prefix->clear();
  suffix->clear();
  prefix->push_back('\x12');  // Field 2 (data), length-delimited.
  AppendVarint(size, prefix);
  suffix->push_back('\x18');  // Field 3 (offset), varint.
  AppendVarint(offset, suffix);
}

bool ChunkWriter::Next(grpc::ByteBuffer* message) {
  if (offset_ >= payload_.size()) return false;
  const size_t size = std::min(chunk_bytes_, payload_.size() - offset_);
  std::string prefix, suffix;
  ChunkFraming(size, offset_, &prefix, &suffix);
  const char* data = payload_.data() + offset_;
  grpc::Slice slices[3] = {grpc::Slice(prefix),
                           data_ == Data::kBorrow
                               ? grpc::Slice(data, size, grpc::Slice::STATIC_SLICE)
                               : grpc::Slice(data, size),
                           grpc::Slice(suffix)};
  *message = grpc::ByteBuffer(slices, 3);
  offset_ += size;
  return true;
}

std::string HeaderMessage(const google::protobuf::MessageLite& header) {
  std::string out(1, '\x0a');  // Field 1 (header), length-delimited.
  AppendVarint(header.ByteSizeLong(), &out);
  header.AppendToString(&out);
  return out;
}

}  // namespace tally::wire
