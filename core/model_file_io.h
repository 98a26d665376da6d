// The pieces the model file formats share (core/model_file.h): files read
// at offsets and written through a temporary name, element types and their
// conversion to float32, and the checks that turn a file's tensor list into
// a ModelLayout. Internal to core/model_file*.cc, core/safetensors.cc,
// core/npz.cc and core/zip.cc.
//
// Thread safety: InputFile is safe for concurrent reads; OutputFile is
// thread-compatible.
#ifndef TALLY_CORE_MODEL_FILE_IO_H_
#define TALLY_CORE_MODEL_FILE_IO_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/model_file.h"
#include "core/model_layout.h"

namespace tally::model_file_internal {

// "path: problem", INVALID_ARGUMENT.
absl::Status Invalid(absl::string_view path, absl::string_view problem);
// "path: what: strerror", with the code errno maps to (e.g. NOT_FOUND).
absl::Status ErrnoError(absl::string_view path, absl::string_view what, int error_number);

// A regular file opened for reading at offsets.
class InputFile {
 public:
  static absl::StatusOr<std::unique_ptr<InputFile>> Open(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  // Reads exactly `n` bytes at `offset`; INVALID_ARGUMENT naming `what` if
  // they are not all within the file.
  absl::Status ReadAt(uint64_t offset, void* out, size_t n, absl::string_view what) const;

 private:
  InputFile(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  const std::string path_;
  const int fd_;
  const uint64_t size_;
};

// Writes `path` through `path`.tmp; Commit() flushes, syncs and renames it
// into place. Destroyed uncommitted, it removes the temporary file.
class OutputFile {
 public:
  static absl::StatusOr<std::unique_ptr<OutputFile>> Create(const std::string& path);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Appends; the first failure is reported by Commit().
  void Write(const void* data, size_t n);
  void Write(absl::string_view bytes) { Write(bytes.data(), bytes.size()); }
  // Appends `values` as little-endian float32 (through a bounded buffer).
  void WriteFloats(absl::Span<const float> values);
  uint64_t position() const { return position_; }
  absl::Status Commit();

 private:
  OutputFile(std::string path, std::string tmp, std::FILE* file)
      : path_(std::move(path)), tmp_(std::move(tmp)), file_(file) {}
  const std::string path_;
  const std::string tmp_;
  std::FILE* file_;
  uint64_t position_ = 0;
  int error_ = 0;  // errno of the first failed write.
  bool committed_ = false;
};

// Element types of the two formats.
enum class ElementType {
  kF16,
  kBF16,
  kF32,
  kF64,
  kI8,
  kI16,
  kI32,
  kI64,
  kU8,
  kU16,
  kU32,
  kU64,
  kBool
};
struct ElementFormat {
  ElementType type = ElementType::kF32;
  size_t size = 4;  // Bytes per element.
  bool big_endian = false;
};
bool IsInteger(ElementType type);  // Integers and bools.

// Converts `count` elements at `bytes` to float32 into `out`. `first` is the
// index of bytes' first element within its tensor, for the message of a
// NaN, an infinity or an integer beyond +-2^24 (INVALID_ARGUMENT, no path).
absl::Status DecodeElements(const ElementFormat& format, const unsigned char* bytes, size_t count,
                            uint64_t first, float* out);

// One tensor as a file declares it.
struct FileTensor {
  std::string name;
  std::vector<uint64_t> shape;
  std::string dtype;  // As the file spells it.
  ElementFormat format;
  uint64_t count = 0;  // Elements: the product of `shape`.
  uint64_t bytes = 0;  // count * format.size.
};

// Sets `tensor`'s count and bytes from its shape, refusing a dimension of 0
// and sizes beyond tally's 2^34 parameters (no overflow).
absl::Status SizeTensor(absl::string_view path, FileTensor* tensor);

// The file's layout from its tensors in order, names checked (UTF-8, the
// ModelLayout rules), with dtypes and integer tensors filled in `model`.
absl::Status SetLayout(absl::string_view path, const std::vector<FileTensor>& tensors,
                       ModelFile* model);

// Each format's reader and writer.
absl::StatusOr<ModelFile> ReadSafetensors(const InputFile& file, bool layout_only);
absl::StatusOr<ModelFile> ReadNpz(const InputFile& file, bool layout_only);
absl::Status WriteSafetensors(OutputFile& out, const ModelLayout& layout,
                              absl::Span<const float> params, const WriteModelFileOptions& options);
absl::Status WriteNpz(OutputFile& out, const ModelLayout& layout, absl::Span<const float> params,
                      const WriteModelFileOptions& options);

}  // namespace tally::model_file_internal

#endif  // TALLY_CORE_MODEL_FILE_IO_H_
