// Which available clients a round (or an evaluation) asks
// (docs/workflow.md#sampling). Pure functions of their inputs; thread-safe.
#ifndef TALLY_CORE_CLIENT_SAMPLER_H_
#define TALLY_CORE_CLIENT_SAMPLER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tally {

using ClientAttributes = std::map<std::string, std::string>;

enum class SelectionMode {
  // The first `count` matching clients in the order given (arrival order).
  kFirstCome,
  // A uniform sample without replacement of SampleSize() matching clients,
  // a pure function of (seed, round, the set of matching ids): the order in
  // which clients arrived does not change it.
  kRandom,
  // Each matching client independently with probability `fraction` (q),
  // decided by a hash of (seed, round, client id): the same client in the
  // same round gets the same answer whoever else is available.
  kPoisson,
};

struct SamplingOptions {
  SelectionMode mode = SelectionMode::kFirstCome;
  size_t count = 1;       // kFirstCome, and kRandom when fraction == 0.
  double fraction = 0.0;  // kRandom: ceil(fraction x matching) when > 0; kPoisson: q.
  uint64_t seed = 1;
  // Every entry must be among a client's attributes (exact value); empty =
  // every client.
  ClientAttributes filter;
};

struct CandidateClient {
  std::string id;
  const ClientAttributes* attributes = nullptr;  // Null = none.
};

// What a client may declare at Join: at most 16 entries, names 1..64 bytes
// of [A-Za-z0-9._-], values at most 128 bytes of printable ASCII.
// INVALID_ARGUMENT naming the entry.
inline constexpr size_t kMaxClientAttributes = 16;
absl::Status ValidateClientAttribute(const std::string& name, const std::string& value);
absl::Status ValidateClientAttributes(const ClientAttributes& attributes);

// The attribute a relay declares at Join (role=relay): it holds no data,
// so evaluations never sample it.
inline constexpr char kRoleAttribute[] = "tally.role";
inline constexpr char kRelayRole[] = "relay";

// True when `attributes` hold every entry of `filter`.
bool MatchesFilter(const ClientAttributes& filter, const ClientAttributes* attributes);

// kFirstCome / kRandom: how many of `matching` clients a round takes
// (count, or ceil(fraction x matching) but at least 1, never more than
// matching). kPoisson: the expected number, q x matching.
double SampleSize(const SamplingOptions& options, size_t matching);

// The ids selected for round `round` among `available` (in arrival order;
// ids unique). kFirstCome keeps arrival order; the others return ids
// sorted.
std::vector<std::string> SelectClients(const SamplingOptions& options,
                                       const std::vector<CandidateClient>& available,
                                       uint64_t round);

}  // namespace tally

#endif  // TALLY_CORE_CLIENT_SAMPLER_H_
