// The neighbour graph of an instance (docs/secure-aggregation.md#the-neighbour-graph):
// the Harary graph H(k, n) -- clients on a ring, each linked to the k/2
// nearest on either side -- after a random relabelling drawn from a
// server-chosen 32-byte seed (SeededPermutation, secagg/crypto.h): client i
// (1-based) sits at ring position perm[i - 1]. With k >= n - 1 every client
// neighbours every other. Immutable after Create; thread-safe.
#ifndef TALLY_SECAGG_GRAPH_H_
#define TALLY_SECAGG_GRAPH_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "secagg/crypto.h"

namespace tally::secagg {

class NeighbourGraph {
 public:
  // n >= 2; k even (or >= n - 1).
  static absl::StatusOr<NeighbourGraph> Create(uint32_t num_clients, uint32_t degree,
                                               const Key& seed);
  uint32_t num_clients() const { return static_cast<uint32_t>(neighbours_.size()); }
  // Sorted 1-based indices of client i's neighbours (i in 1..n).
  const std::vector<uint32_t>& Neighbours(uint32_t client) const { return neighbours_[client - 1]; }
  bool AreNeighbours(uint32_t a, uint32_t b) const;

 private:
  std::vector<std::vector<uint32_t>> neighbours_;
};

}  // namespace tally::secagg

#endif  // TALLY_SECAGG_GRAPH_H_
