#include "secagg/graph.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::secagg {

absl::StatusOr<NeighbourGraph> NeighbourGraph::Create(uint32_t num_clients, uint32_t degree,
                                                      const Key& seed) {
  if (num_clients < 2) return absl::InvalidArgumentError("neighbour graph: n < 2");
  const uint32_t k = std::min(degree, num_clients - 1);
  if (k < num_clients - 1 && k % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("neighbour graph: odd degree ", k));
  }
  absl::StatusOr<std::vector<uint32_t>> perm = SeededPermutation(seed, num_clients);
  if (!perm.ok()) return perm.status();
  std::vector<uint32_t> at_position(num_clients);  // Ring position -> client (1-based).
  for (uint32_t i = 0; i < num_clients; ++i) at_position[(*perm)[i]] = i + 1;
  NeighbourGraph graph;
  graph.neighbours_.resize(num_clients);
  for (uint32_t i = 0; i < num_clients; ++i) {
    std::vector<uint32_t>& out = graph.neighbours_[i];
    if (k == num_clients - 1) {
      for (uint32_t j = 1; j <= num_clients; ++j) {
        if (j != i + 1) out.push_back(j);
      }
      continue;
    }
    const uint32_t pos = (*perm)[i];
    for (uint32_t d = 1; d <= k / 2; ++d) {
      out.push_back(at_position[(pos + d) % num_clients]);
      out.push_back(at_position[(pos + num_clients - d) % num_clients]);
    }
    std::sort(out.begin(), out.end());
  }
  return graph;
}

bool NeighbourGraph::AreNeighbours(uint32_t a, uint32_t b) const {
  const std::vector<uint32_t>& n = neighbours_[a - 1];
  return std::binary_search(n.begin(), n.end(), b);
}

}  // namespace tally::secagg
