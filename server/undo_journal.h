// UndoJournal: the bytes of one in-flight update, kept so that its partial
// contribution can be subtracted from the round's running sum if the upload
// never completes (client died, stream truncated, NaN in a later chunk, round
// closed under it).
//
// Why a file: the weighted mean is accumulated chunk by chunk as bytes
// arrive, so memory is O(model) however many clients upload at once, but
// excluding a half-received update exactly needs the half it sent. Keeping
// those halves in RAM would make memory O(clients x model) again; an
// unlinked temporary file keeps them in the kernel's page cache, outside the
// process's RSS, and costs one memcpy per byte. The file is never read unless
// the upload aborts, and vanishes (usually before any disk write-back) when
// the journal is closed.
//
// Thread-compatible: one upload uses it at a time.
#ifndef TALLY_SERVER_UNDO_JOURNAL_H_
#define TALLY_SERVER_UNDO_JOURNAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tally::server {

class UndoJournal {
 public:
  // Creates an anonymous file in `dir` (O_TMPFILE, or mkstemp + unlink).
  static absl::StatusOr<std::unique_ptr<UndoJournal>> Open(const std::string& dir);
  ~UndoJournal();
  UndoJournal(const UndoJournal&) = delete;
  UndoJournal& operator=(const UndoJournal&) = delete;

  absl::Status Append(const char* data, size_t size);
  uint64_t size() const { return size_; }

  // Calls fn(byte_offset, data, size) over everything appended, in order, in
  // blocks of at most 1 MiB (a multiple of 4 bytes).
  absl::Status Replay(const std::function<void(uint64_t, const char*, size_t)>& fn) const;

 private:
  explicit UndoJournal(int fd) : fd_(fd) {}
  int fd_;
  uint64_t size_ = 0;
};

}  // namespace tally::server

#endif  // TALLY_SERVER_UNDO_JOURNAL_H_
