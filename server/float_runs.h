// Whole float32 values in a chunk that arrived as several byte pieces (the
// slices gRPC received), where a float may straddle two pieces.
#ifndef TALLY_SERVER_FLOAT_RUNS_H_
#define TALLY_SERVER_FLOAT_RUNS_H_

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace tally::server {

// Calls fn(float_index, bytes, count) over runs of whole little-endian floats
// in `pieces`; a float split across two pieces is passed as a run of one.
template <typename Fn>
void ForEachFloatRun(absl::Span<const absl::string_view> pieces, Fn fn) {
  char carry[4];
  size_t carried = 0;
  size_t index = 0;
  for (absl::string_view piece : pieces) {
    const char* p = piece.data();
    size_t n = piece.size();
    if (carried > 0) {
      const size_t take = std::min(4 - carried, n);
      std::memcpy(carry + carried, p, take);
      carried += take;
      p += take;
      n -= take;
      if (carried < 4) continue;
      fn(index++, carry, 1);
      carried = 0;
    }
    const size_t whole = n / 4;
    if (whole > 0) fn(index, p, whole);
    index += whole;
    carried = n % 4;
    std::memcpy(carry, p + 4 * whole, carried);
  }
}

}  // namespace tally::server

#endif  // TALLY_SERVER_FLOAT_RUNS_H_
