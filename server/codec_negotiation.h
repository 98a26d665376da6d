// Which codecs a client uses, decided at Join from what it says it can
// encode and decode and what the server is configured to accept and serve.
// A pure function of its inputs (no gRPC, no state), so every case is a unit
// test (tests/codec_negotiation_test.cc).
//
// Rules (docs/compression.md#compressed-updates):
// - Upload: the first of the server's upload codecs (compression.upload, in
//   order of preference) the client can encode; float32 if none is, which the
//   server always accepts. A client that lists codecs but not float32 and
//   none the server accepts is refused (FAILED_PRECONDITION). A client that
//   lists nothing is offered float32.
// - Download: the first of the server's full-model download codecs the client
//   decodes, else float32. Deltas: the server's delta codec if the client
//   decodes it and the chosen download codec can start a delta chain.
#ifndef TALLY_SERVER_CODEC_NEGOTIATION_H_
#define TALLY_SERVER_CODEC_NEGOTIATION_H_

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compress/codec.h"
#include "server/config.h"

namespace tally::server {

// What a client declared at Join (tally.v1.JoinRequest supported_codecs and
// download_codecs), as codec ids; ids tally does not know are left out.
struct ClientCodecs {
  // None: the client listed no upload codecs (it is offered float32).
  std::optional<std::vector<compress::CodecId>> encodes;
  std::vector<compress::CodecId> decodes;
};

struct NegotiatedCodecs {
  compress::CodecSpec upload;
  compress::CodecSpec download;
  std::optional<compress::CodecSpec> delta;  // None: full models only.
};

absl::StatusOr<NegotiatedCodecs> NegotiateCodecs(const ClientCodecs& client,
                                                 absl::Span<const compress::CodecSpec> uploads,
                                                 const DownloadCodecs& downloads);

}  // namespace tally::server

#endif  // TALLY_SERVER_CODEC_NEGOTIATION_H_
