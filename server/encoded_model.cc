#include "server/encoded_model.h"

#include <algorithm>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/chunk_wire.h"
#include "grpcpp/support/slice.h"
#include "proto/codec_params.h"
#include "server/log.h"

namespace tally::server {
namespace {

using SnapshotRef = std::shared_ptr<const ModelSnapshot>;
// Whatever keeps a segment's payload bytes alive: a snapshot, a
// reconstruction, an encoded string.
using Owner = std::shared_ptr<const void>;

void ReleaseOwner(void* owner) { delete static_cast<Owner*>(owner); }

// Random, never 0 (which requests use for "no chain").
uint64_t NewChainId() {
  std::random_device device;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{device()} << 32) ^ device();
  return id;
}

struct SegmentDesc {
  compress::CodecSpec codec;
  uint64_t base_version = 0;
  bool delta_base = false;
  uint64_t chain_id = 0;
};

// The segment of `snapshot`'s version whose payload is [data, data + size),
// kept alive by `owner`. Data chunks are slices into it: nothing is copied.
std::shared_ptr<const ModelSegment> MakeSegment(const tally::v1::ModelSpec& spec,
                                                size_t chunk_bytes, const ModelSnapshot& snapshot,
                                                const SegmentDesc& desc, Owner owner,
                                                const char* data, size_t size) {
  auto segment = std::make_shared<ModelSegment>();
  segment->version = snapshot.version;
  segment->base_version = desc.base_version;
  segment->codec = desc.codec.id;
  segment->payload_bytes = size;

  tally::v1::ModelChunk header;
  tally::v1::ModelHeader* h = header.mutable_header();
  h->set_version(snapshot.version);
  *h->mutable_model_spec() = spec;
  h->set_codec(CodecToProto(desc.codec));
  SpecToProto(desc.codec, h->mutable_codec_params());
  h->set_payload_bytes(size);
  h->set_round(snapshot.round);
  h->set_base_version(desc.base_version);
  h->set_delta_base(desc.delta_base);
  h->set_chain_id(desc.chain_id);
  grpc::Slice header_slice(header.SerializeAsString());
  segment->messages.emplace_back(&header_slice, 1);

  std::string prefix, suffix;
  for (size_t offset = 0; offset < size; offset += chunk_bytes) {
    const size_t n = std::min(chunk_bytes, size - offset);
    wire::ChunkFraming(n, offset, &prefix, &suffix);
    grpc::Slice slices[3] = {
        grpc::Slice(prefix),
        // The slice keeps the owner alive until gRPC is done with it.
        grpc::Slice(const_cast<char*>(data + offset), n, &ReleaseOwner, new Owner(owner)),
        grpc::Slice(suffix)};
    segment->messages.emplace_back(slices, 3);
  }
  return segment;
}

std::shared_ptr<const ModelSegment> StringSegment(const tally::v1::ModelSpec& spec,
                                                  size_t chunk_bytes, const ModelSnapshot& snapshot,
                                                  const SegmentDesc& desc,
                                                  std::shared_ptr<const std::string> payload) {
  const char* data = payload->data();
  const size_t size = payload->size();
  return MakeSegment(spec, chunk_bytes, snapshot, desc, std::move(payload), data, size);
}

std::shared_ptr<const ModelSegment> FloatSegment(const tally::v1::ModelSpec& spec,
                                                 size_t chunk_bytes, const ModelSnapshot& snapshot,
                                                 const SegmentDesc& desc,
                                                 std::shared_ptr<const std::vector<float>> values) {
  const char* data = reinterpret_cast<const char*>(values->data());
  const size_t size = values->size() * sizeof(float);
  return MakeSegment(spec, chunk_bytes, snapshot, desc, std::move(values), data, size);
}

}  // namespace

ModelDownloads::ModelDownloads(tally::v1::ModelSpec spec, size_t chunk_bytes, DownloadCodecs codecs)
    : spec_(std::move(spec)), chunk_bytes_(chunk_bytes), codecs_(std::move(codecs)) {
  std::vector<compress::CodecSpec> full = codecs_.full;
  const bool has_float32 = std::any_of(full.begin(), full.end(), [](const compress::CodecSpec& c) {
    return c.id == compress::CodecId::kFloat32;
  });
  if (!has_float32) full.push_back(compress::DefaultSpec(compress::CodecId::kFloat32));
  for (const compress::CodecSpec& codec : full) {
    channels_.push_back(std::make_unique<Channel>());
    channels_.back()->full = codec;
    if (codecs_.delta.has_value() && DeltaChainCapable(codec)) {
      channels_.push_back(std::make_unique<Channel>());
      channels_.back()->full = codec;
      channels_.back()->delta = codecs_.delta;
    }
  }
}

absl::StatusOr<SegmentList> ModelDownloads::Get(SnapshotRef snapshot, tally::v1::Codec codec,
                                                tally::v1::Codec delta_codec, uint64_t have_version,
                                                uint64_t have_chain) {
  if (codec == tally::v1::CODEC_UNSPECIFIED) codec = tally::v1::CODEC_DENSE_F32;
  const bool deltas = delta_codec != tally::v1::CODEC_UNSPECIFIED;
  for (const std::unique_ptr<Channel>& channel : channels_) {
    if (CodecToProto(channel->full) != codec || channel->delta.has_value() != deltas) continue;
    if (deltas && CodecToProto(*channel->delta) != delta_codec) break;
    return Serve(*channel, std::move(snapshot), have_version, have_chain);
  }
  if (deltas) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this server sends no ", tally::v1::Codec_Name(delta_codec), " deltas with ",
        tally::v1::Codec_Name(codec), " models (use the delta_codec Join returned, or none)"));
  }
  return absl::InvalidArgumentError(absl::StrCat("this server sends no ",
                                                 tally::v1::Codec_Name(codec),
                                                 " models (use the download_codec Join returned)"));
}

SegmentList ModelDownloads::Serve(Channel& channel, SnapshotRef snapshot, uint64_t have_version,
                                  uint64_t have_chain) {
  tally::MutexLock lock(&channel.mu);
  if (channel.current == nullptr || snapshot->version > channel.current->version) {
    Advance(channel, snapshot);
  }
  // A puller that read the store just before a newer version was encoded:
  // a one-off, off the chain.
  if (snapshot->version < channel.current->version) return {PlainSegment(channel, snapshot)};
  if (have_version != 0 && have_version < snapshot->version && have_chain == channel.chain_id) {
    auto first = std::find_if(channel.deltas.begin(), channel.deltas.end(), [&](const auto& delta) {
      return delta->base_version == have_version;
    });
    uint64_t bytes = 0;
    for (auto it = first; it != channel.deltas.end(); ++it) bytes += (*it)->payload_bytes;
    if (first != channel.deltas.end() && bytes < channel.current->payload_bytes) {
      return SegmentList(first, channel.deltas.end());
    }
  }
  return {channel.current};
}

void ModelDownloads::Advance(Channel& channel, const SnapshotRef& snapshot) {
  if (!channel.delta.has_value()) {
    channel.current = PlainSegment(channel, snapshot);
    return;
  }
  if (absl::Status advanced = AdvanceChain(channel, *snapshot); !advanced.ok()) {
    LogWarning(absl::StrCat("model download: the ", compress::FindCodec(channel.full.id)->name,
                            " delta chain restarts at version ", snapshot->version, ": ",
                            advanced.message()));
    channel.recon = nullptr;
    channel.recon_version = 0;
    channel.deltas.clear();
    channel.current = PlainSegment(channel, snapshot);
  }
}

absl::Status ModelDownloads::AdvanceChain(Channel& channel, const ModelSnapshot& snapshot) {
  const std::vector<float>& model = snapshot.params;
  const size_t d = model.size();
  auto next = std::make_shared<std::vector<float>>(model);
  std::shared_ptr<const ModelSegment> delta;
  if (channel.recon != nullptr) {
    const std::vector<float>& recon = *channel.recon;
    std::vector<float>& diff = *next;
    for (size_t j = 0; j < d; ++j) diff[j] = model[j] - recon[j];
    auto payload = std::make_shared<std::string>();
    TALLY_RETURN_IF_ERROR(compress::Encode(*channel.delta, diff, payload.get()));
    TALLY_RETURN_IF_ERROR(compress::Decode(*channel.delta, *payload, absl::MakeSpan(diff)));
    for (size_t j = 0; j < d; ++j) diff[j] = recon[j] + diff[j];
    delta = StringSegment(
        spec_, chunk_bytes_, snapshot,
        {*channel.delta, channel.recon_version, /*delta_base=*/true, channel.chain_id},
        std::move(payload));
  } else {
    channel.chain_id = NewChainId();
  }
  // P: the download codec's rounding, which the full encoding also is.
  const SegmentDesc full_desc{channel.full, 0, /*delta_base=*/true, channel.chain_id};
  std::shared_ptr<const ModelSegment> full;
  if (compress::IsPlainFloat32(channel.full)) {
    full = FloatSegment(spec_, chunk_bytes_, snapshot, full_desc, next);
  } else {
    auto payload = std::make_shared<std::string>();
    TALLY_RETURN_IF_ERROR(compress::Encode(channel.full, *next, payload.get()));
    TALLY_RETURN_IF_ERROR(compress::Decode(channel.full, *payload, absl::MakeSpan(*next)));
    full = StringSegment(spec_, chunk_bytes_, snapshot, full_desc, std::move(payload));
  }

  channel.recon = std::move(next);
  channel.recon_version = snapshot.version;
  channel.current = std::move(full);
  if (delta != nullptr) channel.deltas.push_back(std::move(delta));
  // Keep what can still be served: a chain larger than the full model never is.
  uint64_t bytes = 0;
  for (const auto& kept : channel.deltas) bytes += kept->payload_bytes;
  while (!channel.deltas.empty() && (channel.deltas.size() > codecs_.delta_history ||
                                     bytes >= channel.current->payload_bytes)) {
    bytes -= channel.deltas.front()->payload_bytes;
    channel.deltas.pop_front();
  }
  return absl::OkStatus();
}

std::shared_ptr<const ModelSegment> ModelDownloads::PlainSegment(const Channel& channel,
                                                                 const SnapshotRef& snapshot) {
  const compress::CodecSpec float32 = compress::DefaultSpec(compress::CodecId::kFloat32);
  if (!compress::IsPlainFloat32(channel.full)) {
    auto payload = std::make_shared<std::string>();
    if (absl::Status encoded = compress::Encode(channel.full, snapshot->params, payload.get());
        encoded.ok()) {
      return StringSegment(spec_, chunk_bytes_, *snapshot, {channel.full}, std::move(payload));
    } else {
      LogWarning(absl::StrCat("model download: version ", snapshot->version,
                              " goes out as float32: ", encoded.message()));
    }
  }
  // No copy: the snapshot's own array.
  const char* data = reinterpret_cast<const char*>(snapshot->params.data());
  const size_t size = snapshot->params.size() * sizeof(float);
  return MakeSegment(spec_, chunk_bytes_, *snapshot, {float32}, snapshot, data, size);
}

}  // namespace tally::server
