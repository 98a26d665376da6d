#include "server/codec_negotiation.h"

#include <algorithm>

namespace tally::server {
namespace {

bool Lists(absl::Span<const compress::CodecId> ids, compress::CodecId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// The first of `preferred` whose id is in `ids`, else float32.
compress::CodecSpec FirstListed(absl::Span<const compress::CodecSpec> preferred,
                                absl::Span<const compress::CodecId> ids) {
  for (const compress::CodecSpec& spec : preferred) {
    if (Lists(ids, spec.id)) return spec;
  }
  return compress::DefaultSpec(compress::CodecId::kFloat32);
}

}  // namespace

absl::StatusOr<NegotiatedCodecs> NegotiateCodecs(const ClientCodecs& client,
                                                 absl::Span<const compress::CodecSpec> uploads,
                                                 const DownloadCodecs& downloads) {
  NegotiatedCodecs chosen;
  chosen.upload = compress::DefaultSpec(compress::CodecId::kFloat32);
  if (client.encodes.has_value()) chosen.upload = FirstListed(uploads, *client.encodes);
  if (client.encodes.has_value() && !Lists(*client.encodes, chosen.upload.id)) {
    return absl::FailedPreconditionError(
        "no common codec: the server accepts CODEC_DENSE_F32 and compression.upload's codecs");
  }
  chosen.download = FirstListed(downloads.full, client.decodes);
  if (downloads.delta.has_value() && Lists(client.decodes, downloads.delta->id) &&
      DeltaChainCapable(chosen.download)) {
    chosen.delta = downloads.delta;
  }
  return chosen;
}

}  // namespace tally::server
