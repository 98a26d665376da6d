#include "proto/codec_params.h"

#include "absl/strings/str_cat.h"

namespace tally {

const compress::CodecInfo* CodecFromProto(v1::Codec codec) {
  return codec > 0 && codec <= 255 ? compress::FindCodec(static_cast<compress::CodecId>(codec))
                                   : nullptr;
}

absl::StatusOr<compress::CodecSpec> SpecFromProto(v1::Codec codec, const v1::CodecParams& params) {
  const compress::CodecInfo* info = CodecFromProto(codec);
  if (info == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", static_cast<int>(codec), " is not one this server knows"));
  }
  compress::CodecSpec spec = compress::DefaultSpec(info->id);
  if (params.block_size() != 0) spec.block_size = params.block_size();
  if (params.levels() != 0) spec.levels = params.levels();
  if (params.k() != 0) spec.k = params.k();
  if (params.ratio() != 0) spec.ratio = params.ratio();
  if (params.half_values()) spec.half_values = true;
  if (params.biased()) spec.rescale = false;
  spec.seed = params.seed();
  if (params.zstd()) spec.zstd = true;
  if (params.zstd_level() != 0) spec.zstd_level = params.zstd_level();
  return spec;
}

v1::Codec CodecToProto(const compress::CodecSpec& spec) {
  return static_cast<v1::Codec>(static_cast<int>(spec.id));
}

void SpecToProto(const compress::CodecSpec& spec, v1::CodecParams* params) {
  params->set_block_size(spec.block_size);
  params->set_levels(spec.levels);
  params->set_k(spec.k);
  params->set_ratio(spec.ratio);
  params->set_half_values(spec.half_values);
  params->set_biased(spec.id == compress::CodecId::kRandK && !spec.rescale);
  params->set_seed(spec.seed);
  params->set_zstd(spec.zstd);
  params->set_zstd_level(spec.zstd_level);
}

}  // namespace tally
