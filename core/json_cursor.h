// JsonCursor: a read position in a JSON text and the whitespace rules of
// RFC 8259 (space, tab, LF, CR), the base of the JSON reader (core/json.cc)
// and of the safetensors header parser (core/safetensors.cc).
#ifndef TALLY_CORE_JSON_CURSOR_H_
#define TALLY_CORE_JSON_CURSOR_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace tally {

class JsonCursor {
 protected:
  explicit JsonCursor(absl::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  // Skips space, then takes `c` if it is next.
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  // Takes `word` if it is next (no space skipped).
  bool ConsumeWord(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace tally

#endif  // TALLY_CORE_JSON_CURSOR_H_
