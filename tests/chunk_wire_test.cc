// proto/chunk_wire.h against protobuf's own encoder and parser: zero-copy
// UpdateChunk decoding with the bytes cut into slices at every awkward place,
// and the hand framing of pushes and model downloads.
#include "proto/chunk_wire.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::wire {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;

std::vector<grpc::Slice> Cut(const std::string& bytes, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    slices.emplace_back(bytes.data() + i, std::min(piece, bytes.size() - i));
  }
  return slices;
}

std::string Join(const std::vector<absl::string_view>& views) {
  std::string out;
  for (absl::string_view v : views) out.append(v.data(), v.size());
  return out;
}

TEST(ChunkWireTest, DecodesDataAndOffsetAcrossAnySliceBoundaries) {
  tally::v1::UpdateChunk chunk;
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  chunk.set_data(data);
  chunk.set_offset(123456789012ULL);
  const std::string wire = chunk.SerializeAsString();
  for (size_t piece : {1, 2, 3, 5, 7, 64, 999, 4096}) {
    const std::vector<grpc::Slice> slices = Cut(wire, piece);
    ParsedUpdateChunk parsed;
    ASSERT_THAT(ParseUpdateChunk(slices, &parsed), IsOk()) << "piece " << piece;
    EXPECT_FALSE(parsed.has_header);
    EXPECT_TRUE(parsed.has_data);
    EXPECT_EQ(parsed.offset, 123456789012ULL);
    EXPECT_EQ(parsed.data_size, data.size());
    EXPECT_EQ(Join(parsed.data), data) << "piece " << piece;
  }
}

TEST(ChunkWireTest, DecodesTheHeaderAndSkipsUnknownFields) {
  tally::v1::UpdateChunk chunk;
  chunk.mutable_header()->set_client_id("edge-7");
  chunk.mutable_header()->set_num_params(42);
  std::string wire = chunk.SerializeAsString();
  // Unknown fields 9 (varint), 10 (fixed64), 11 (bytes), 12 (fixed32).
  wire += std::string("\x48\x96\x01", 3);
  wire += std::string("\x51", 1) + std::string(8, '\x01');
  wire += std::string("\x5a\x02zz", 4);
  wire += std::string("\x65", 1) + std::string(4, '\x02');
  ParsedUpdateChunk parsed;
  ASSERT_THAT(ParseUpdateChunk(Cut(wire, 3), &parsed), IsOk());
  EXPECT_TRUE(parsed.has_header);
  EXPECT_FALSE(parsed.has_data);
  EXPECT_EQ(parsed.header.client_id(), "edge-7");
  EXPECT_EQ(parsed.header.num_params(), 42u);
}

TEST(ChunkWireTest, RejectsMalformedFraming) {
  const std::vector<std::string> bad = {
      std::string("\x12\x05"
                  "abc",
                  5),                          // Data longer than the message.
      std::string("\x12", 1),                  // Missing length.
      std::string("\x18\xff\xff", 3),          // Truncated varint.
      std::string("\x10\x01", 2),              // Data with wire type 0.
      std::string("\x0a\x03\xff\xff\xff", 5),  // Unparsable header.
      std::string("\x00", 1),                  // Field 0.
      std::string("\x1b", 1),                  // Group wire type.
      std::string("\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12),  // > 10 bytes.
  };
  for (const std::string& wire : bad) {
    ParsedUpdateChunk parsed;
    EXPECT_THAT(ParseUpdateChunk(Cut(wire, 1), &parsed),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << absl::CEscape(wire);
  }
}

// What the SDK and the model downloads frame by hand is what protobuf
// parses: the header message, then data chunks with 1- and multi-byte
// varints (sizes 5 and 300, offsets 0 and 2^40).
TEST(ChunkWireTest, HandFramingIsWhatProtobufParses) {
  tally::v1::UpdateHeader header;
  header.set_client_id("edge-7");
  header.set_num_samples(42);
  tally::v1::UpdateChunk parsed;
  ASSERT_TRUE(parsed.ParseFromString(HeaderMessage(header)));
  EXPECT_TRUE(parsed.has_header());
  EXPECT_EQ(parsed.header().client_id(), "edge-7");
  EXPECT_EQ(parsed.header().num_samples(), 42u);
  for (const auto& [size, offset] : {std::pair<size_t, uint64_t>{5, 0}, {300, uint64_t{1} << 40}}) {
    std::string prefix, suffix;
    ChunkFraming(size, offset, &prefix, &suffix);
    const std::string data(size, 'x');
    tally::v1::UpdateChunk chunk;
    ASSERT_TRUE(chunk.ParseFromString(prefix + data + suffix)) << size;
    EXPECT_EQ(chunk.data(), data);
    EXPECT_EQ(chunk.offset(), offset);
    tally::v1::ModelChunk model_chunk;  // Same field numbers.
    ASSERT_TRUE(model_chunk.ParseFromString(prefix + data + suffix)) << size;
    EXPECT_EQ(model_chunk.data(), data);
    EXPECT_EQ(model_chunk.offset(), offset);
  }
}

// ChunkWriter cuts 2500 bytes into chunks of 1000, 1000 and 500 at offsets
// 0, 1000 and 2000 (hand computation), in both data modes; a borrowed chunk
// points into the payload, a copied one does not.
TEST(ChunkWireTest, ChunkWriterCutsThePayloadIntoParsableMessages) {
  std::string payload(2500, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  for (ChunkWriter::Data mode : {ChunkWriter::Data::kCopy, ChunkWriter::Data::kBorrow}) {
    ChunkWriter writer(payload, 1000, mode);
    grpc::ByteBuffer message;
    std::vector<std::pair<uint64_t, size_t>> chunks;
    while (writer.Next(&message)) {
      std::vector<grpc::Slice> slices;
      ASSERT_TRUE(message.Dump(&slices).ok());
      ASSERT_EQ(slices.size(), 3u);
      EXPECT_EQ(reinterpret_cast<const char*>(slices[1].begin()) ==
                    payload.data() + 1000 * chunks.size(),
                mode == ChunkWriter::Data::kBorrow);
      std::string bytes;
      for (const grpc::Slice& slice : slices) {
        bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
      tally::v1::UpdateChunk chunk;
      ASSERT_TRUE(chunk.ParseFromString(bytes));
      EXPECT_EQ(chunk.data(), payload.substr(chunk.offset(), chunk.data().size()));
      chunks.emplace_back(chunk.offset(), chunk.data().size());
    }
    EXPECT_THAT(chunks, ::testing::ElementsAre(std::pair<uint64_t, size_t>{0, 1000},
                                               std::pair<uint64_t, size_t>{1000, 1000},
                                               std::pair<uint64_t, size_t>{2000, 500}));
    EXPECT_FALSE(writer.Next(&message));
  }
}

}  // namespace
}  // namespace tally::wire
