#include "secagg/buckets.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::secagg {

absl::StatusOr<Key> BucketSeed(const Key& master, uint64_t round) {
  Bytes info;
  const char kLabel[] = "tally-secagg/1 buckets";
  info.assign(kLabel, kLabel + sizeof(kLabel) - 1);
  for (int i = 0; i < 8; ++i) info.push_back(static_cast<uint8_t>(round >> (8 * i)));
  return HkdfSha256Key(master, info);
}

absl::StatusOr<std::vector<std::vector<uint32_t>>> AssignBuckets(const Key& seed,
                                                                 uint32_t num_clients,
                                                                 uint32_t bucket_size) {
  if (bucket_size == 0 || num_clients < bucket_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot cut ", num_clients, " clients into buckets of ", bucket_size));
  }
  absl::StatusOr<std::vector<uint32_t>> perm = SeededPermutation(seed, num_clients);
  if (!perm.ok()) return perm.status();
  const uint32_t buckets = num_clients / bucket_size;
  const uint32_t extra = num_clients % bucket_size;
  std::vector<std::vector<uint32_t>> out(buckets);
  size_t next = 0;
  for (uint32_t b = 0; b < buckets; ++b) {
    const uint32_t size = bucket_size + (b < extra ? 1 : 0);
    out[b].assign(perm->begin() + next, perm->begin() + next + size);
    std::sort(out[b].begin(), out[b].end());
    next += size;
  }
  return out;
}

absl::Status ValidateBucketing(uint32_t num_clients, uint32_t bucket_size, uint32_t f) {
  if (bucket_size < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("secure_aggregation.bucket_size: ", bucket_size,
                     " is below 3 (a bucket's sum would reveal a pair's or a client's update)"));
  }
  const uint32_t buckets = num_clients / std::max<uint32_t>(bucket_size, 1);
  if (buckets < 2 * uint64_t{f} + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy.f: ", f, " Byzantine clients can spoil ", f, " of the ", buckets,
        " buckets of secure_aggregation.bucket_size ", bucket_size, " among ", num_clients,
        " clients; the robust rule needs at least 2f + 1 = ", 2 * uint64_t{f} + 1,
        " buckets (more clients per round or smaller buckets)"));
  }
  return absl::OkStatus();
}

}  // namespace tally::secagg
