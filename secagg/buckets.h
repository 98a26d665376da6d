// Robust over secure (docs/secure-aggregation.md#robust-over-secure): the
// clients of a round are shuffled into buckets of at least s clients, one
// SecAgg+ instance each, so the server learns only bucket sums; a robust rule
// then runs over the bucket means. f Byzantine clients spoil at most f
// buckets, so the rule must tolerate f of B = floor(n / s) inputs.
// Pure functions, thread-safe.
#ifndef TALLY_SECAGG_BUCKETS_H_
#define TALLY_SECAGG_BUCKETS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "secagg/crypto.h"

namespace tally::secagg {

// The bucket seed of `round` from the server's secret master seed:
// HKDF-SHA256(master, info = "tally-secagg/1 buckets" | round (u64 LE)). The
// server logs it when the round starts, so the assignment can be audited.
absl::StatusOr<Key> BucketSeed(const Key& master, uint64_t round);

// The buckets of positions 0..n-1 (clients in the order the round admitted
// them): SeededPermutation(seed, n) cut into B = floor(n / s) consecutive
// buckets; the n mod s left over go one each to the first buckets (sizes s
// or s + 1, never below s). Each bucket is sorted. INVALID_ARGUMENT if
// s = 0 or n < s.
absl::StatusOr<std::vector<std::vector<uint32_t>>> AssignBuckets(const Key& seed,
                                                                 uint32_t num_clients,
                                                                 uint32_t bucket_size);

// Checks that f Byzantine clients cannot control half the buckets:
// B = floor(n / s) >= 2f + 1. INVALID_ARGUMENT naming the fields otherwise.
absl::Status ValidateBucketing(uint32_t num_clients, uint32_t bucket_size, uint32_t f);

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_BUCKETS_H_
