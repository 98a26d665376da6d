// The protobuf varint encoding (base-128, little-endian groups of 7 bits),
// as compressed payloads use it for counts and index gaps. Knows nothing of
// tally's messages: their framing is proto/chunk_wire.h's.
#ifndef TALLY_CORE_VARINT_H_
#define TALLY_CORE_VARINT_H_

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

}  // namespace tally

#endif  // TALLY_CORE_VARINT_H_
