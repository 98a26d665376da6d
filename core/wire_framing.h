// Hand framing of protobuf length-delimited and varint fields, for the chunk
// messages (tally.v1.UpdateChunk and ModelChunk share the layout: field 2
// "data" bytes, field 3 "offset" uint64) that tally builds around payload
// slices without copying the payload into a protobuf string.
#ifndef TALLY_CORE_WIRE_FRAMING_H_
#define TALLY_CORE_WIRE_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace tally {

// Appends the protobuf varint encoding of `value` to `out`.
inline void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// The bytes of a chunk message {data: <size bytes>, offset: offset} that come
// before and after the data itself.
inline void ChunkFraming(size_t size, uint64_t offset, std::string* prefix, std::string* suffix) {
  prefix->clear();
  suffix->clear();
  prefix->push_back('\x12');  // Field 2 (data), length-delimited.
  AppendVarint(size, prefix);
  suffix->push_back('\x18');  // Field 3 (offset), varint.
  AppendVarint(offset, suffix);
}

}  // namespace tally

#endif  // TALLY_CORE_WIRE_FRAMING_H_
