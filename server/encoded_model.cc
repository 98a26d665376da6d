#include "server/encoded_model.h"

#include <algorithm>
#include <string>

#include "core/wire_framing.h"
#include "grpcpp/support/slice.h"

namespace tally::server {
namespace {

using SnapshotRef = std::shared_ptr<const ModelSnapshot>;

void ReleaseSnapshot(void* ref) { delete static_cast<SnapshotRef*>(ref); }

}  // namespace

std::shared_ptr<const EncodedModel> EncodeModel(SnapshotRef snapshot,
                                                const tally::v1::ModelSpec& spec,
                                                size_t chunk_bytes) {
  auto encoded = std::make_shared<EncodedModel>();
  encoded->version = snapshot->version;
  const char* payload = reinterpret_cast<const char*>(snapshot->params.data());
  const size_t total = snapshot->params.size() * sizeof(float);

  tally::v1::ModelChunk header;
  tally::v1::ModelHeader* h = header.mutable_header();
  h->set_version(snapshot->version);
  *h->mutable_model_spec() = spec;
  h->set_codec(tally::v1::CODEC_DENSE_F32);
  h->set_payload_bytes(total);
  h->set_round(snapshot->round);
  grpc::Slice header_slice(header.SerializeAsString());
  encoded->messages.emplace_back(&header_slice, 1);
  encoded->chunk_bytes.push_back(0);

  std::string prefix, suffix;
  for (size_t offset = 0; offset < total; offset += chunk_bytes) {
    const size_t size = std::min(chunk_bytes, total - offset);
    ChunkFraming(size, offset, &prefix, &suffix);
    grpc::Slice slices[3] = {grpc::Slice(prefix),
                             // No copy: the slice keeps the snapshot alive until gRPC is done.
                             grpc::Slice(const_cast<char*>(payload + offset), size,
                                         &ReleaseSnapshot, new SnapshotRef(snapshot)),
                             grpc::Slice(suffix)};
    encoded->messages.emplace_back(slices, 3);
    encoded->chunk_bytes.push_back(size);
  }
  return encoded;
}

std::shared_ptr<const EncodedModel> EncodedModelCache::Get(SnapshotRef snapshot) {
  tally::MutexLock lock(&mu_);
  if (current_ != nullptr && current_->version == snapshot->version) return current_;
  std::shared_ptr<const EncodedModel> encoded = EncodeModel(snapshot, spec_, chunk_bytes_);
  // A puller holding an older snapshot than the cached one gets a one-off.
  if (current_ == nullptr || snapshot->version > current_->version) current_ = encoded;
  return encoded;
}

}  // namespace tally::server
