#include "core/client_sampler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tally {
namespace {

constexpr size_t kMaxAttributeNameBytes = 64;
constexpr size_t kMaxAttributeValueBytes = 128;

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// SplitMix64's output function (Steele, Lea, Flood: "Fast splittable
// pseudorandom number generators", OOPSLA 2014).
uint64_t Mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// SplitMix64 started from a state derived from (seed, round).
class RoundRng {
 public:
  RoundRng(uint64_t seed, uint64_t round) : state_(Mix64(seed) ^ Mix64(round + kGolden)) {}
  uint64_t Next() { return Mix64(state_ += kGolden); }
  // Uniform in [0, bound), bound >= 1, without modulo bias (rejection).
  uint64_t Below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    while (true) {
      const uint64_t r = Next();
      if (r >= threshold) return r % bound;
    }
  }

 private:
  uint64_t state_;
};

// FNV-1a 64 of the id.
uint64_t HashId(const std::string& id) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const unsigned char c : id) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::vector<std::string> MatchingIds(const SamplingOptions& options,
                                     const std::vector<CandidateClient>& available) {
  std::vector<std::string> ids;
  for (const CandidateClient& client : available) {
    if (MatchesFilter(options.filter, client.attributes)) ids.push_back(client.id);
  }
  return ids;
}

}  // namespace

absl::Status ValidateClientAttribute(const std::string& name, const std::string& value) {
  const bool name_ok =
      !name.empty() && name.size() <= kMaxAttributeNameBytes &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == '-';
      });
  if (!name_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute name '", absl::CEscape(name), "' must be 1..64 bytes of [A-Za-z0-9._-]"));
  }
  if (value.size() > kMaxAttributeValueBytes ||
      !std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute '", name, "' must have a value of at most 128 printable ASCII bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateClientAttributes(const ClientAttributes& attributes) {
  if (attributes.size() > kMaxClientAttributes) {
    return absl::InvalidArgumentError(
        absl::StrCat(attributes.size(), " attributes, at most ", kMaxClientAttributes));
  }
  for (const auto& [name, value] : attributes) {
    if (absl::Status valid = ValidateClientAttribute(name, value); !valid.ok()) return valid;
  }
  return absl::OkStatus();
}

bool MatchesFilter(const ClientAttributes& filter, const ClientAttributes* attributes) {
  for (const auto& [name, value] : filter) {
    if (attributes == nullptr) return false;
    auto it = attributes->find(name);
    if (it == attributes->end() || it->second != value) return false;
  }
  return true;
}

double SampleSize(const SamplingOptions& options, size_t matching) {
  if (options.mode == SelectionMode::kPoisson) return options.fraction * static_cast<double>(matching);
  size_t size = options.count;
  if (options.mode == SelectionMode::kRandom && options.fraction > 0) {
    size = std::max<size_t>(1, static_cast<size_t>(std::ceil(options.fraction * matching)));
  }
  return static_cast<double>(std::min(size, matching));
}

std::vector<std::string> SelectClients(const SamplingOptions& options,
                                       const std::vector<CandidateClient>& available,
                                       uint64_t round) {
  std::vector<std::string> ids = MatchingIds(options, available);
  if (options.mode == SelectionMode::kFirstCome) {
    ids.resize(static_cast<size_t>(SampleSize(options, ids.size())));
    return ids;
  }
  std::sort(ids.begin(), ids.end());
  if (options.mode == SelectionMode::kPoisson) {
    const uint64_t round_key = Mix64(Mix64(options.seed) ^ Mix64(round + kGolden));
    std::vector<std::string> chosen;
    for (std::string& id : ids) {
      // A uniform double in [0, 1) on the 2^-53 grid.
      const double u = static_cast<double>(Mix64(round_key ^ HashId(id)) >> 11) * 0x1p-53;
      if (u < options.fraction) chosen.push_back(std::move(id));
    }
    return chosen;
  }
  // Partial Fisher-Yates: the first k positions are a uniform k-subset.
  const size_t k = static_cast<size_t>(SampleSize(options, ids.size()));
  RoundRng rng(options.seed, round);
  for (size_t i = 0; i < k; ++i) {
    std::swap(ids[i], ids[i + rng.Below(ids.size() - i)]);
  }
  ids.resize(k);
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace tally
