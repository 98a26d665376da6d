#include "core/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/base/casts.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model_file_io.h"
#include "core/status_macros.h"

namespace tally {
namespace model_file_internal {
namespace {

constexpr uint64_t kMaxParams = uint64_t{1} << 34;  // core/model_layout.h.
constexpr int64_t kMaxExactInteger = int64_t{1} << 24;
constexpr size_t kWriteChunkFloats = 1 << 18;

std::string ShapeText(const std::vector<uint64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

uint64_t LoadBits(const unsigned char* p, size_t size, bool big_endian) {
  uint64_t bits = 0;
  if (big_endian) {
    for (size_t i = 0; i < size; ++i) bits = bits << 8 | p[i];
  } else {
    for (size_t i = size; i-- > 0;) bits = bits << 8 | p[i];
  }
  return bits;
}

// IEEE 754 binary16 to binary32 (exact: every half is a float).
float HalfToFloat(uint32_t half) {
  const uint32_t sign = (half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1f;
  const uint32_t mantissa = half & 0x3ff;
  if (exponent == 0) {  // Zero or subnormal: mantissa * 2^-24.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 31) return absl::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return absl::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

bool ValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (extra > s.size() - i - 1) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const unsigned char next = static_cast<unsigned char>(s[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = code << 6 | (next & 0x3f);
    }
    static constexpr uint32_t kMinCode[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMinCode[extra] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

absl::Status CheckName(absl::string_view path, const std::string& name) {
  std::string problem;
  if (name.empty()) {
    problem = "a tensor has an empty name";
  } else if (!ValidUtf8(name)) {
    problem = absl::StrCat("tensor name '", absl::CHexEscape(name), "' is not valid UTF-8");
  } else if (name.size() > 256) {
    problem = absl::StrCat("tensor name '", name.substr(0, 40), "...' is longer than 256 bytes");
  } else if (name.find_first_of(";:,") != std::string::npos) {
    problem = absl::StrCat("tensor name '", name,
                           "' holds ';', ':' or ',', which tally's tensor names cannot (rename "
                           "the tensor)");
  } else {
    return absl::OkStatus();
  }
  return Invalid(path, problem);
}

}  // namespace

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

absl::Status ErrnoError(absl::string_view path, absl::string_view what, int error_number) {
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat(path, ": ", what, ": ", std::strerror(error_number)));
}

absl::StatusOr<std::unique_ptr<InputFile>> InputFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(path, "cannot open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int error_number = errno;
    ::close(fd);
    return ErrnoError(path, "cannot stat", error_number);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "not a regular file");
  }
  return std::unique_ptr<InputFile>(new InputFile(path, fd, static_cast<uint64_t>(st.st_size)));
}

InputFile::~InputFile() { ::close(fd_); }

absl::Status InputFile::ReadAt(uint64_t offset, void* out, size_t n, absl::string_view what) const {
  if (offset > size_ || n > size_ - offset) {
    return Invalid(path_, absl::StrCat("truncated ", what, ": ", n, " bytes at offset ", offset,
                                       " run past the end of the file (", size_, " bytes)"));
  }
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path_, "read failed", errno);
    }
    if (got == 0) return Invalid(path_, absl::StrCat("truncated ", what, " (the file shrank)"));
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OutputFile>> OutputFile::Create(const std::string& path) {
  std::string tmp = absl::StrCat(path, ".tmp");
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  if (file == nullptr) return ErrnoError(tmp, "cannot open for writing", errno);
  return std::unique_ptr<OutputFile>(new OutputFile(path, std::move(tmp), file));
}

OutputFile::~OutputFile() {
  if (committed_) return;
  if (file_ != nullptr) std::fclose(file_);
  std::remove(tmp_.c_str());
}

void OutputFile::Write(const void* data, size_t n) {
  if (error_ == 0 && n > 0 && std::fwrite(data, 1, n, file_) != n) error_ = errno ? errno : EIO;
  position_ += n;
}

void OutputFile::WriteFloats(absl::Span<const float> values) {
  std::vector<unsigned char> buffer(4 * std::min(values.size(), kWriteChunkFloats));
  for (size_t done = 0; done < values.size();) {
    const size_t n = std::min(values.size() - done, kWriteChunkFloats);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t bits = absl::bit_cast<uint32_t>(values[done + i]);
      for (int b = 0; b < 4; ++b) buffer[4 * i + b] = static_cast<unsigned char>(bits >> (8 * b));
    }
    Write(buffer.data(), 4 * n);
    done += n;
  }
}

absl::Status OutputFile::Commit() {
  if (error_ == 0 && std::fflush(file_) != 0) error_ = errno;
  if (error_ == 0 && ::fsync(fileno(file_)) != 0) error_ = errno;
  if (std::fclose(file_) != 0 && error_ == 0) error_ = errno;
  file_ = nullptr;
  if (error_ != 0) return ErrnoError(tmp_, "write failed", error_);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) return ErrnoError(path_, "rename", errno);
  committed_ = true;
  return absl::OkStatus();
}

bool IsInteger(ElementType type) {
  return type != ElementType::kF16 && type != ElementType::kBF16 && type != ElementType::kF32 &&
         type != ElementType::kF64;
}

absl::Status DecodeElements(const ElementFormat& format, const unsigned char* bytes, size_t count,
                            uint64_t first, float* out) {
  const size_t size = format.size;
  const unsigned shift = static_cast<unsigned>(64 - 8 * size);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t bits = LoadBits(bytes + i * size, size, format.big_endian);
    float value = 0;
    int64_t integer = 0;
    switch (format.type) {
      case ElementType::kF16:
        value = HalfToFloat(static_cast<uint32_t>(bits));
        break;
      case ElementType::kBF16:
        value = absl::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
        break;
      case ElementType::kF32:
        value = absl::bit_cast<float>(static_cast<uint32_t>(bits));
        break;
      case ElementType::kF64: {
        const double wide = absl::bit_cast<double>(bits);
        value = static_cast<float>(wide);
        if (std::isfinite(wide) && !std::isfinite(value)) {
          return absl::InvalidArgumentError(
              absl::StrCat("element ", first + i, " (", wide, ") is beyond float32's range"));
        }
        break;
      }
      case ElementType::kI8:
      case ElementType::kI16:
      case ElementType::kI32:
      case ElementType::kI64:
        integer = static_cast<int64_t>(bits << shift) >> shift;  // Sign-extended.
        break;
      case ElementType::kU8:
      case ElementType::kU16:
      case ElementType::kU32:
      case ElementType::kU64:
        // Clamped: anything above 2^24 is refused below.
        integer = static_cast<int64_t>(std::min<uint64_t>(bits, kMaxExactInteger + 1));
        break;
      case ElementType::kBool:
        integer = bits != 0 ? 1 : 0;
        break;
    }
    if (IsInteger(format.type)) {
      if (integer > kMaxExactInteger || integer < -kMaxExactInteger) {
        const std::string shown =
            format.type >= ElementType::kU8 && format.type <= ElementType::kU64
                ? absl::StrCat(bits)
                : absl::StrCat(integer);
        return absl::InvalidArgumentError(absl::StrCat(
            "element ", first + i, " (", shown,
            ") is beyond +-2^24, not exact as float32 (drop the entry or rescale it)"));
      }
      value = static_cast<float>(integer);
    } else if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat("element ", first + i, " is ",
                                                     std::isnan(value) ? "NaN" : "infinite",
                                                     " (a model must be finite)"));
    }
    out[i] = value;
  }
  return absl::OkStatus();
}

absl::Status SizeTensor(absl::string_view path, FileTensor* tensor) {
  uint64_t count = 1;
  for (uint64_t dim : tensor->shape) {
    if (dim == 0) {
      return Invalid(
          path, absl::StrCat("tensor '", tensor->name, "' has shape ", ShapeText(tensor->shape),
                             ": tally's model tensors need every dimension >= 1"));
    }
    if (dim > kMaxParams || count > kMaxParams / dim) {
      return Invalid(path, absl::StrCat("tensor '", tensor->name, "' of shape ",
                                        ShapeText(tensor->shape), " has more than 2^34 elements"));
    }
    count *= dim;
  }
  tensor->count = count;
  tensor->bytes = count * tensor->format.size;
  return absl::OkStatus();
}

absl::Status SetLayout(absl::string_view path, const std::vector<FileTensor>& tensors,
                       ModelFile* model) {
  if (tensors.empty()) return Invalid(path, "holds no tensors");
  std::vector<ModelLayout::TensorDef> defs;
  absl::flat_hash_set<absl::string_view> names;
  for (const FileTensor& tensor : tensors) {
    TALLY_RETURN_IF_ERROR(CheckName(path, tensor.name));
    if (!names.insert(tensor.name).second) {
      return Invalid(path, absl::StrCat("tensor '", tensor.name, "' appears twice"));
    }
    defs.push_back({tensor.name, {tensor.shape.begin(), tensor.shape.end()}});
    model->dtypes.push_back(tensor.dtype);
    if (IsInteger(tensor.format.type)) model->integer_tensors.push_back(tensor.name);
  }
  absl::StatusOr<ModelLayout> layout = ModelLayout::Create(defs);
  if (!layout.ok()) return Invalid(path, layout.status().message());
  model->layout = *std::move(layout);
  return absl::OkStatus();
}

}  // namespace model_file_internal

namespace mfi = model_file_internal;

absl::StatusOr<ModelFileFormat> ModelFileFormatOf(const std::string& path) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".safetensors")) return ModelFileFormat::kSafetensors;
  if (absl::EndsWith(lower, ".npz")) return ModelFileFormat::kNpz;
  return mfi::Invalid(path, "unknown model file extension (want .safetensors or .npz)");
}

namespace {

absl::StatusOr<ModelFile> Read(const std::string& path, bool layout_only) {
  TALLY_ASSIGN_OR_RETURN(const ModelFileFormat format, ModelFileFormatOf(path));
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<mfi::InputFile> file, mfi::InputFile::Open(path));
  if (file->size() == 0) return mfi::Invalid(path, "empty file");
  return format == ModelFileFormat::kSafetensors ? mfi::ReadSafetensors(*file, layout_only)
                                                 : mfi::ReadNpz(*file, layout_only);
}

}  // namespace

absl::StatusOr<ModelFile> ReadModelFile(const std::string& path) { return Read(path, false); }

absl::StatusOr<ModelFile> ReadModelFileLayout(const std::string& path) { return Read(path, true); }

absl::Status WriteModelFile(const std::string& path, const ModelLayout& layout,
                            absl::Span<const float> params, const WriteModelFileOptions& options) {
  TALLY_ASSIGN_OR_RETURN(const ModelFileFormat format, ModelFileFormatOf(path));
  if (params.size() != layout.NumParams()) {
    return mfi::Invalid(path, absl::StrCat(params.size(), " values for a layout of ",
                                           layout.NumParams(), " parameters"));
  }
  if (layout.tensors().empty()) return mfi::Invalid(path, "no tensors to write");
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<mfi::OutputFile> out, mfi::OutputFile::Create(path));
  TALLY_RETURN_IF_ERROR(format == ModelFileFormat::kSafetensors
                            ? mfi::WriteSafetensors(*out, layout, params, options)
                            : mfi::WriteNpz(*out, layout, params, options));
  return out->Commit();
}

}  // namespace tally
