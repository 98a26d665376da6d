// The one conversion between the wire's codec description (tally.v1.Codec +
// CodecParams) and compress::CodecSpec, shared by the server and the SDK so
// that both read a header the same way.
#ifndef TALLY_PROTO_CODEC_PARAMS_H_
#define TALLY_PROTO_CODEC_PARAMS_H_

#include "absl/status/statusor.h"
#include "compress/codec.h"
#include "tally/v1/tally.pb.h"

namespace tally {

// The codec a wire id names, or nullptr for CODEC_UNSPECIFIED and ids this
// build does not know.
const compress::CodecInfo* CodecFromProto(v1::Codec codec);

// The codec's defaults (compress::DefaultSpec) overridden by every non-zero
// field of `params`. INVALID_ARGUMENT for CODEC_UNSPECIFIED or an id this
// build does not know (the spec's values are checked by ValidateSpec).
absl::StatusOr<compress::CodecSpec> SpecFromProto(v1::Codec codec, const v1::CodecParams& params);

// The reverse: the codec id and every field of `spec` (the seed included).
v1::Codec CodecToProto(const compress::CodecSpec& spec);
void SpecToProto(const compress::CodecSpec& spec, v1::CodecParams* params);

}  // namespace tally

#endif  // TALLY_PROTO_CODEC_PARAMS_H_
