#include "server/undo_journal.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tally::server {
namespace {

absl::Status ErrnoError(absl::string_view what) {
  return absl::InternalError(absl::StrCat("undo journal: ", what, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<UndoJournal>> UndoJournal::Open(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string path = dir + "/tally-undo-XXXXXX";
    fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd < 0) return ErrnoError(absl::StrCat("cannot create a file in '", dir, "'"));
    ::unlink(path.c_str());
  }
  return std::unique_ptr<UndoJournal>(new UndoJournal(fd));
}

std::unique_ptr<UndoJournal> UndoJournal::InMemory(std::string buffer) {
  auto journal = std::unique_ptr<UndoJournal>(new UndoJournal(-1));
  journal->buffer_ = std::move(buffer);
  journal->buffer_.clear();
  return journal;
}

UndoJournal::~UndoJournal() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status UndoJournal::Rewind() {
  size_ = 0;
  if (fd_ < 0) {
    buffer_.clear();
    return absl::OkStatus();
  }
  if (::lseek(fd_, 0, SEEK_SET) < 0) return ErrnoError("lseek");
  return absl::OkStatus();
}

absl::Status UndoJournal::Append(const char* data, size_t size) {
  if (fd_ < 0) {
    buffer_.append(data, size);
    size_ += size;
    return absl::OkStatus();
  }
  while (size > 0) {
    const ssize_t n = ::write(fd_, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write");
    }
    data += n;
    size -= static_cast<size_t>(n);
    size_ += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status UndoJournal::AppendPieces(absl::Span<const absl::string_view> pieces) {
  if (fd_ < 0) {
    for (absl::string_view piece : pieces)
      TALLY_RETURN_IF_ERROR(Append(piece.data(), piece.size()));
    return absl::OkStatus();
  }
  constexpr size_t kMaxIov = 256;
  std::vector<iovec> iov;
  size_t next = 0;
  while (next < pieces.size()) {
    iov.clear();
    size_t total = 0;
    for (; next < pieces.size() && iov.size() < kMaxIov; ++next) {
      iov.push_back({const_cast<char*>(pieces[next].data()), pieces[next].size()});
      total += pieces[next].size();
    }
    size_t done = 0;
    size_t first = 0;
    while (done < total) {
      const ssize_t n = ::writev(fd_, iov.data() + first, static_cast<int>(iov.size() - first));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("writev");
      }
      done += static_cast<size_t>(n);
      size_ += static_cast<uint64_t>(n);
      // Skip what was written; trim a partially written iovec.
      size_t left = static_cast<size_t>(n);
      while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (left > 0) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status UndoJournal::Replay(
    const std::function<void(uint64_t, const char*, size_t)>& fn) const {
  constexpr size_t kBlock = 1 << 20;
  if (fd_ < 0) {
    for (uint64_t offset = 0; offset < size_; offset += kBlock) {
      fn(offset, buffer_.data() + offset,
         static_cast<size_t>(std::min<uint64_t>(kBlock, size_ - offset)));
    }
    return absl::OkStatus();
  }
  std::vector<char> buffer(kBlock);
  uint64_t offset = 0;
  while (offset < size_) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kBlock, size_ - offset));
    const ssize_t n = ::pread(fd_, buffer.data(), want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("pread");
    }
    if (n == 0) return absl::DataLossError("undo journal: unexpected end of file");
    // Keep blocks float-aligned: a short read is trimmed to a multiple of 4.
    const size_t usable = static_cast<size_t>(n) & ~size_t{3};
    if (usable == 0) continue;
    fn(offset, buffer.data(), usable);
    offset += usable;
  }
  return absl::OkStatus();
}

}  // namespace tally::server
