#include "core/npy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/casts.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

namespace tally {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr size_t kPreambleSize = kMagicSize + 2;  // Magic, major, minor.
constexpr size_t kChunkBytes = 1 << 20;           // A multiple of both item sizes.

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// The parts of a header that matter once it has been validated.
struct ArrayInfo {
  size_t item_size = 4;  // 4: '<f4', 8: '<f8'.
  int ndim = 2;
  size_t rows = 0;
  size_t cols = 0;
};

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

absl::Status ErrnoError(absl::string_view path, absl::string_view what, int error_number) {
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat(path, ": ", what, ": ", std::strerror(error_number)));
}

std::string ShapeText(const std::vector<uint64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&text, i ? ", " : "", shape[i]);
  return absl::StrCat(text, shape.size() == 1 ? ",)" : ")");
}

// Parser for the header, a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// Accepts exactly the three keys, each once, in any order, with either quote
// style and any whitespace. Errors carry no path; the caller adds it.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::Status Parse() {
    SkipSpace();
    if (!Consume('{')) return Error("expected '{'");
    for (;;) {
      SkipSpace();
      if (Consume('}')) break;
      TALLY_RETURN_IF_ERROR(ParseEntry());
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume('}')) break;
      return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the dict");
    if (!has_descr_) return absl::InvalidArgumentError("header has no 'descr'");
    if (!has_fortran_order_) return absl::InvalidArgumentError("header has no 'fortran_order'");
    if (!has_shape_) return absl::InvalidArgumentError("header has no 'shape'");
    return absl::OkStatus();
  }

  NpyHeaderDict TakeDict() { return std::move(dict_); }

 private:
  absl::Status ParseEntry() {
    TALLY_ASSIGN_OR_RETURN(std::string key, ParseString());
    SkipSpace();
    if (!Consume(':')) return Error("expected ':'");
    SkipSpace();
    bool* seen = nullptr;
    absl::Status value;
    if (key == "descr") {
      seen = &has_descr_;
      absl::StatusOr<std::string> descr = ParseString();
      value = descr.status();
      if (descr.ok()) dict_.descr = *std::move(descr);
    } else if (key == "fortran_order") {
      seen = &has_fortran_order_;
      value = ParseBool(&dict_.fortran_order);
    } else if (key == "shape") {
      seen = &has_shape_;
      value = ParseTuple(&dict_.shape);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("header has an unexpected key '", key, "'"));
    }
    if (*seen) return absl::InvalidArgumentError(absl::StrCat("header repeats '", key, "'"));
    *seen = true;
    return value;
  }

  absl::StatusOr<std::string> ParseString() {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) return Error("unterminated string");
    std::string value(text_.substr(pos_, end - pos_));
    if (value.find('\\') != std::string::npos) return Error("escapes in strings are not supported");
    pos_ = end + 1;
    return value;
  }

  absl::Status ParseBool(bool* value) {
    if (ConsumeWord("True")) {
      *value = true;
    } else if (ConsumeWord("False")) {
      *value = false;
    } else {
      return Error("expected True or False");
    }
    return absl::OkStatus();
  }

  // A tuple of non-negative integers: "()", "(3,)", "(3, 4)"; Python 2's
  // "3L" suffix is accepted.
  absl::Status ParseTuple(std::vector<uint64_t>* values) {
    if (!Consume('(')) return Error("expected a tuple");
    values->clear();
    for (;;) {
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
        return Error("expected a non-negative integer in the shape");
      }
      uint64_t value = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        const uint64_t digit = static_cast<uint64_t>(text_[pos_++] - '0');
        if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
          return Error("shape dimension overflows 64 bits");
        }
        value = value * 10 + digit;
      }
      Consume('L');
      values->push_back(value);
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      if (!Consume(',')) return Error("expected ',' or ')' in the shape");
    }
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("malformed header at byte ", pos_, ": ", what));
  }

  absl::string_view text_;
  size_t pos_ = 0;
  bool has_descr_ = false;
  bool has_fortran_order_ = false;
  bool has_shape_ = false;
  NpyHeaderDict dict_;
};

// Checks a parsed header against what tally supports.
absl::StatusOr<ArrayInfo> CheckHeader(absl::string_view path, const NpyHeaderDict& header) {
  ArrayInfo info;
  const std::string& descr = header.descr;
  if (descr == "<f4") {
    info.item_size = 4;
  } else if (descr == "<f8") {
    info.item_size = 8;
  } else if (!descr.empty() && descr[0] == '>') {
    return Invalid(path, absl::StrCat("big-endian dtype '", descr,
                                      "' is not supported (want '<f4' or '<f8')"));
  } else {
    return Invalid(path, absl::StrCat("unsupported dtype '", descr, "' (want '<f4' or '<f8')"));
  }
  if (header.fortran_order) {
    return Invalid(path, "Fortran-order arrays are not supported (save in C order)");
  }
  const std::vector<uint64_t>& shape = header.shape;
  if (shape.size() != 1 && shape.size() != 2) {
    return Invalid(path, absl::StrCat("shape ", ShapeText(shape), " has ", shape.size(),
                                      " dimensions (want 1 or 2)"));
  }
  info.ndim = static_cast<int>(shape.size());
  const uint64_t rows = shape.size() == 2 ? shape[0] : 1;
  const uint64_t cols = shape.back();
  constexpr uint64_t kMaxSize = std::numeric_limits<size_t>::max();
  if (rows > kMaxSize || cols > kMaxSize ||
      (rows != 0 && cols > kMaxSize / info.item_size / rows)) {
    return Invalid(path, absl::StrCat("shape ", ShapeText(shape), " is too large"));
  }
  info.rows = static_cast<size_t>(rows);
  info.cols = static_cast<size_t>(cols);
  return info;
}

// Reads exactly `size` bytes; INVALID_ARGUMENT (truncated `what`) on EOF.
absl::Status ReadExactly(absl::string_view path, std::FILE* file, void* buffer, size_t size,
                         absl::string_view what) {
  const size_t got = std::fread(buffer, 1, size, file);
  if (got == size) return absl::OkStatus();
  if (std::ferror(file)) return ErrnoError(path, "read failed", errno);
  return Invalid(path, absl::StrCat("truncated ", what, ": wanted ", size, " bytes, got ", got));
}

absl::StatusOr<ArrayInfo> ReadHeader(absl::string_view path, std::FILE* file, size_t* prefix_size) {
  // Enough for the preamble of any version; a 1.0 preamble leaves the
  // first bytes of the dict in `start`.
  char start[kNpyMaxPreambleSize];
  const size_t got = std::fread(start, 1, sizeof(start), file);
  if (std::ferror(file)) return ErrnoError(path, "read failed", errno);
  if (got == 0) return Invalid(path, "empty file, not a .npy file");
  absl::StatusOr<NpyPreamble> preamble = ParseNpyPreamble(absl::string_view(start, got));
  if (!preamble.ok()) return Invalid(path, preamble.status().message());
  const size_t header_size = preamble->header_size;
  std::string text(start + preamble->size, got - preamble->size);
  if (text.size() > header_size) {
    return Invalid(path, absl::StrCat("malformed header: ", header_size, " bytes is too short"));
  }
  const size_t have = text.size();
  text.resize(header_size);
  TALLY_RETURN_IF_ERROR(ReadExactly(path, file, text.data() + have, header_size - have, "header"));
  *prefix_size = preamble->size + header_size;
  absl::StatusOr<NpyHeaderDict> dict = ParseNpyHeaderDict(text);
  if (!dict.ok()) return Invalid(path, dict.status().message());
  return CheckHeader(path, *dict);
}

float DecodeF4(const unsigned char* p) {
  const uint32_t bits = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                        static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  return absl::bit_cast<float>(bits);
}

float DecodeF8(const unsigned char* p) {
  uint64_t bits = 0;
  for (int i = 7; i >= 0; --i) bits = bits << 8 | p[i];
  return static_cast<float>(absl::bit_cast<double>(bits));
}

void EncodeF4(float value, unsigned char* p) {
  const uint32_t bits = absl::bit_cast<uint32_t>(value);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(bits >> (8 * i));
}

// Reads the rows * cols items after the header, converting to float. The file
// must end right after them.
absl::Status ReadData(absl::string_view path, std::FILE* file, const ArrayInfo& info,
                      size_t prefix_size, std::vector<float>* data) {
  const size_t count = info.rows * info.cols;
  const size_t bytes = count * info.item_size;
  struct stat st;
  if (::fstat(fileno(file), &st) == 0 && S_ISREG(st.st_mode)) {
    // A regular file: check its size before allocating anything.
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);
    const uint64_t available = file_size > prefix_size ? file_size - prefix_size : 0;
    if (available < bytes) {
      return Invalid(path, absl::StrCat("truncated data: the shape needs ", bytes,
                                        " bytes, the file has ", available));
    }
    if (available > bytes) {
      return Invalid(path, absl::StrCat(available - bytes, " unexpected bytes after the data"));
    }
    data->reserve(count);
  }
  std::vector<unsigned char> buffer(std::min(bytes, kChunkBytes));
  for (size_t done = 0; done < bytes;) {
    const size_t want = std::min(bytes - done, buffer.size());
    TALLY_RETURN_IF_ERROR(ReadExactly(path, file, buffer.data(), want, "data"));
    for (size_t i = 0; i < want; i += info.item_size) {
      data->push_back(info.item_size == 4 ? DecodeF4(&buffer[i]) : DecodeF8(&buffer[i]));
    }
    done += want;
  }
  if (std::fgetc(file) != EOF) return Invalid(path, "unexpected bytes after the data");
  if (std::ferror(file)) return ErrnoError(path, "read failed", errno);
  return absl::OkStatus();
}

absl::Status WriteArray(const std::string& path, const std::vector<uint64_t>& shape,
                        absl::Span<const float> data) {
  const std::string prefix = NpyF4Prefix(shape);
  FilePtr file(std::fopen(path.c_str(), "wb"));
  if (file == nullptr) return ErrnoError(path, "cannot open for writing", errno);
  bool ok = std::fwrite(prefix.data(), 1, prefix.size(), file.get()) == prefix.size();
  std::vector<unsigned char> buffer(std::min(data.size() * 4, kChunkBytes));
  for (size_t done = 0; ok && done < data.size();) {
    const size_t items = std::min(data.size() - done, buffer.size() / 4);
    for (size_t i = 0; i < items; ++i) EncodeF4(data[done + i], &buffer[4 * i]);
    ok = std::fwrite(buffer.data(), 4, items, file.get()) == items;
    done += items;
  }
  const int close_result = std::fclose(file.release());
  if (!ok || close_result != 0) {
    const int error_number = errno;
    std::remove(path.c_str());
    return ErrnoError(path, "write failed", error_number);
  }
  return absl::OkStatus();
}

}  // namespace

std::string NpyF4Prefix(const std::vector<uint64_t>& shape) {
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': ", ShapeText(shape), ", }");
  // Pad with spaces so the data starts at a multiple of 64 bytes; end with
  // '\n' (as numpy does).
  const size_t unpadded = kPreambleSize + 2 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string prefix(kMagic, kMagicSize);
  prefix.push_back('\x01');
  prefix.push_back('\x00');
  prefix.push_back(static_cast<char>(header.size() & 0xff));
  prefix.push_back(static_cast<char>(header.size() >> 8));
  return prefix + header;
}

absl::StatusOr<NpyHeaderDict> ParseNpyHeaderDict(absl::string_view text) {
  HeaderParser parser(text);
  TALLY_RETURN_IF_ERROR(parser.Parse());
  return parser.TakeDict();
}

absl::StatusOr<NpyPreamble> ParseNpyPreamble(absl::string_view start) {
  if (start.size() < kMagicSize ||
      start.substr(0, kMagicSize) != absl::string_view(kMagic, kMagicSize)) {
    if (start.size() < kMagicSize &&
        absl::string_view(kMagic, kMagicSize).substr(0, start.size()) == start) {
      return absl::InvalidArgumentError("truncated header");
    }
    return absl::InvalidArgumentError("not a .npy file (bad magic string)");
  }
  if (start.size() < kPreambleSize) return absl::InvalidArgumentError("truncated header");
  const int major = static_cast<unsigned char>(start[kMagicSize]);
  const int minor = static_cast<unsigned char>(start[kMagicSize + 1]);
  if ((major != 1 && major != 2) || minor != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported .npy format version ", major, ".", minor, " (want 1.0 or 2.0)"));
  }
  // Header length: little-endian uint16 (1.0) or uint32 (2.0).
  const size_t length_size = major == 1 ? 2 : 4;
  if (start.size() < kPreambleSize + length_size) {
    return absl::InvalidArgumentError("truncated header");
  }
  NpyPreamble preamble;
  preamble.size = kPreambleSize + length_size;
  for (size_t i = 0; i < length_size; ++i) {
    preamble.header_size |=
        static_cast<size_t>(static_cast<unsigned char>(start[kPreambleSize + i])) << (8 * i);
  }
  if (preamble.header_size > kNpyMaxHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header of ", preamble.header_size, " bytes exceeds the limit of ", kNpyMaxHeaderSize));
  }
  return preamble;
}

absl::StatusOr<NpyMatrix> ReadNpy(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return ErrnoError(path, "cannot open", errno);
  size_t prefix_size = 0;
  TALLY_ASSIGN_OR_RETURN(const ArrayInfo info, ReadHeader(path, file.get(), &prefix_size));
  NpyMatrix matrix;
  matrix.rows = info.rows;
  matrix.cols = info.cols;
  matrix.ndim = info.ndim;
  TALLY_RETURN_IF_ERROR(ReadData(path, file.get(), info, prefix_size, &matrix.data));
  return matrix;
}

absl::Status WriteNpy(const std::string& path, size_t rows, size_t cols,
                      absl::Span<const float> data) {
  if ((cols != 0 && rows > data.size() / cols) || rows * cols != data.size()) {
    return Invalid(path, absl::StrCat("shape (", rows, ", ", cols, ") does not match ", data.size(),
                                      " floats"));
  }
  return WriteArray(path, {rows, cols}, data);
}

absl::Status WriteNpyVector(const std::string& path, absl::Span<const float> data) {
  return WriteArray(path, {data.size()}, data);
}

}  // namespace tally
