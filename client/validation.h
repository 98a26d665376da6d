// Client-side checks of what the application passes in (options, update ids)
// and of the limits the server announces at Join. Pure functions; internal to
// client/ (not installed).
#ifndef TALLY_CLIENT_VALIDATION_H_
#define TALLY_CLIENT_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compress/dgc.h"
#include "tally/client.h"

namespace tally {
namespace client_internal {

// OK, or INVALID_ARGUMENT naming the offending ClientOptions field.
absl::Status ValidateClientOptions(const ClientOptions& options);

// What ReportEvaluation sends: an EVALUATE task, num_examples > 0, metric
// names of 1..64 printable ASCII bytes with finite values.
// INVALID_ARGUMENT saying which.
absl::Status ValidateEvaluationReport(const Task& task, uint64_t num_examples,
                                      const std::map<std::string, double>& metrics);

// The compress/dgc.h options of the public settings.
compress::DgcOptions DgcOptionsFrom(const DgcSettings& settings);

// Client ids are 1..128 chars of [A-Za-z0-9._:@-].
absl::Status ValidateClientId(absl::string_view client_id);

// Update ids supplied by the application are 1..128 printable ASCII chars.
absl::Status ValidateUpdateId(absl::string_view update_id);

// The delta `update` describes: Update::delta as given, or weights - base
// computed into *storage. INVALID_ARGUMENT for any other combination (delta
// with weights or base, weights without base or of another size), naming
// the fields.
absl::StatusOr<absl::Span<const float>> UpdateDelta(const Update& update,
                                                    std::vector<float>* storage);

// The upload chunk size: min(requested, server_max) rounded down to a
// multiple of 4 bytes (one float). server_max == 0 means "no server cap".
// FAILED_PRECONDITION if that leaves less than one float.
// RESOURCE_EXHAUSTED (without a retry hint: PushUpdate fails at once) if an
// encoded update of `payload_bytes` in `codec` exceeds the server's
// limits.max_update_bytes as Join reported it (0: unknown, no check).
absl::Status CheckUpdateBytes(uint64_t payload_bytes, absl::string_view codec,
                              uint64_t max_update_bytes);

absl::StatusOr<size_t> EffectiveChunkBytes(size_t requested, uint32_t server_max);

}  // namespace client_internal
}  // namespace tally

#endif  // TALLY_CLIENT_VALIDATION_H_
