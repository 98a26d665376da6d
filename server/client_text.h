// What the server accepts as an id, and what it repeats of text a client
// sent. Every string that came from a client (ids, and anything else it
// chose) reaches a status message or a log line only through ClientText, so
// that a reply stays short and a log line stays one line whatever the client
// sent (an error message above gRPC's metadata limit makes the client's gRPC
// drop the connection, and every call sharing it).
//
// Thread-safe (pure functions).
#ifndef TALLY_SERVER_CLIENT_TEXT_H_
#define TALLY_SERVER_CLIENT_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tally::server {

// Client ids and update ids: 1..kMaxIdBytes bytes of [A-Za-z0-9._:@-]
// (enough for a UUID, a hostname or an e-mail-like name; nothing that needs
// quoting in a log line, a metric label or a file).
inline constexpr size_t kMaxIdBytes = 128;
bool IsValidId(absl::string_view id);

// OK for a valid id; else INVALID_ARGUMENT naming `field` (e.g. "client_id"),
// the rule, and what was sent (through ClientText).
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// `text` as a message or a log line may repeat it: in single quotes, at most
// its first kMaxIdBytes bytes, each byte outside printable ASCII and each
// quote or backslash as \xNN; a longer text is followed by its length, as in
// 'abc…'... (10240 bytes). At most 4 * kMaxIdBytes + 32 characters.
std::string ClientText(absl::string_view text);

}  // namespace tally::server

#endif  // TALLY_SERVER_CLIENT_TEXT_H_
