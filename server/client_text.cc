#include "server/client_text.h"

#include "absl/strings/str_cat.h"

namespace tally::server {

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (IsValidId(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, " must be 1..", kMaxIdBytes, " bytes of [A-Za-z0-9._:@-], got ", ClientText(id)));
}

std::string ClientText(absl::string_view text) {
  std::string out = "'";
  for (unsigned char c : text.substr(0, kMaxIdBytes)) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  out.push_back('\'');
  if (text.size() > kMaxIdBytes) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

}  // namespace tally::server
