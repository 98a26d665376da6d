// The one place that knows how tally's chunk messages are framed on the
// wire, so that payloads travel as slices of their own buffers instead of
// being copied into protobuf strings (measured: that copy was ~15% of the
// server's CPU per ingested byte).
//
// tally.v1.UpdateChunk and tally.v1.ModelChunk share the layout: field 1 the
// header (a message), field 2 "data" (bytes), field 3 "offset" (uint64).
// - Encoding (server model downloads, SDK pushes): HeaderMessage and
//   ChunkFraming give the bytes around the payload.
// - Decoding (server uploads): ParseUpdateChunk reads the framing straight
//   from the slices gRPC received; the header is parsed with protobuf, the
//   data returned as views into the slices. Unknown fields are skipped as
//   protobuf would; malformed framing is an INVALID_ARGUMENT error.
#ifndef TALLY_PROTO_CHUNK_WIRE_H_
#define TALLY_PROTO_CHUNK_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "tally/v1/tally.pb.h"

namespace tally::wire {

struct ParsedUpdateChunk {
  bool has_header = false;
  tally::v1::UpdateHeader header;
  bool has_data = false;
  uint64_t offset = 0;
  // Views into the slices passed to ParseUpdateChunk, in order.
  std::vector<absl::string_view> data;
  size_t data_size = 0;
};

// `slices` must outlive the views in `out->data`.
absl::Status ParseUpdateChunk(const std::vector<grpc::Slice>& slices, ParsedUpdateChunk* out);

// The bytes of a chunk message {data: <size bytes>, offset: offset} that come
// before and after the data itself.
void ChunkFraming(size_t size, uint64_t offset, std::string* prefix, std::string* suffix);

// A whole chunk message holding only `header` (field 1).
std::string HeaderMessage(const google::protobuf::MessageLite& header);

// Cuts a payload into whole chunk messages {data, offset} of at most
// `chunk_bytes` (> 0) data bytes each, in order: the framing, then the data
// copied into a slice of its own (kCopy), or referenced where it is
// (kBorrow: the payload must then outlive gRPC's sending of every message).
// Not thread-safe.
class ChunkWriter {
 public:
  enum class Data { kCopy, kBorrow };
  ChunkWriter(absl::string_view payload, size_t chunk_bytes, Data data)
      : payload_(payload), chunk_bytes_(chunk_bytes), data_(data) {}

  // The next chunk message; false when the whole payload has been given.
  bool Next(grpc::ByteBuffer* message);

 private:
  const absl::string_view payload_;
  const size_t chunk_bytes_;
  const Data data_;
  size_t offset_ = 0;
};

}  // namespace tally::wire

#endif  // TALLY_PROTO_CHUNK_WIRE_H_
