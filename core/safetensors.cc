// safetensors (https://huggingface.co/docs/safetensors) for core/model_file.h.
//
// The header is parsed by a small strict parser of the subset the format
// uses, not a general JSON library: the structure is fixed (an object of
// tensor objects and one string-to-string "__metadata__" object), so the
// parser knows every key it accepts, refuses duplicates (a general parser
// silently keeps one of them), reads integers exactly with overflow checks
// (no detour through double), and never recurses beyond the format's three
// levels.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/json.h"
#include "core/model_file_io.h"
#include "core/json_cursor.h"
#include "core/status_macros.h"

namespace tally::model_file_internal {
namespace {

// The reference implementation's limit on the header.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kMaxRank = 64;
constexpr size_t kReadChunkBytes = 1 << 20;  // A multiple of every element size.

struct Dtype {
  absl::string_view name;
  ElementType type;
  size_t size;
};
constexpr Dtype kDtypes[] = {
    {"F16", ElementType::kF16, 2},  {"BF16", ElementType::kBF16, 2}, {"F32", ElementType::kF32, 4},
    {"F64", ElementType::kF64, 8},  {"I8", ElementType::kI8, 1},     {"I16", ElementType::kI16, 2},
    {"I32", ElementType::kI32, 4},  {"I64", ElementType::kI64, 8},   {"U8", ElementType::kU8, 1},
    {"U16", ElementType::kU16, 2},  {"U32", ElementType::kU32, 4},   {"U64", ElementType::kU64, 8},
    {"BOOL", ElementType::kBool, 1}};

// A tensor entry with its data offsets (relative to the data section).
struct Entry {
  FileTensor tensor;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// The header: {"name": {"dtype": ..., "shape": [...], "data_offsets": [b, e]},
// ..., "__metadata__": {"k": "v", ...}} followed by optional whitespace.
// Errors carry no path; the caller adds it.
class HeaderParser : private JsonCursor {
 public:
  explicit HeaderParser(absl::string_view text) : JsonCursor(text) {}

  absl::Status Parse(std::vector<Entry>* entries,
                     std::vector<std::pair<std::string, std::string>>* metadata) {
    absl::flat_hash_set<std::string> keys;
    TALLY_RETURN_IF_ERROR(Expect('{'));
    if (!Consume('}')) {
      do {
        TALLY_ASSIGN_OR_RETURN(std::string key, ParseString());
        if (!keys.insert(key).second) return Error(absl::StrCat("key '", key, "' repeats"));
        TALLY_RETURN_IF_ERROR(Expect(':'));
        if (key == "__metadata__") {
          TALLY_RETURN_IF_ERROR(ParseMetadata(metadata));
        } else {
          Entry& entry = entries->emplace_back();
          entry.tensor.name = std::move(key);
          TALLY_RETURN_IF_ERROR(ParseTensor(&entry));
        }
      } while (Consume(','));
      TALLY_RETURN_IF_ERROR(Expect('}'));
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the header object");
    return absl::OkStatus();
  }

 private:
  absl::Status ParseMetadata(std::vector<std::pair<std::string, std::string>>* metadata) {
    absl::flat_hash_set<std::string> keys;
    TALLY_RETURN_IF_ERROR(Expect('{'));
    if (Consume('}')) return absl::OkStatus();
    do {
      TALLY_ASSIGN_OR_RETURN(std::string key, ParseString());
      if (!keys.insert(key).second) return Error(absl::StrCat("metadata key '", key, "' repeats"));
      TALLY_RETURN_IF_ERROR(Expect(':'));
      TALLY_ASSIGN_OR_RETURN(std::string value, ParseString());
      metadata->emplace_back(std::move(key), std::move(value));
    } while (Consume(','));
    return Expect('}');
  }

  absl::Status ParseTensor(Entry* entry) {
    bool has_dtype = false, has_shape = false, has_offsets = false;
    TALLY_RETURN_IF_ERROR(Expect('{'));
    if (!Consume('}')) {
      do {
        TALLY_ASSIGN_OR_RETURN(std::string key, ParseString());
        TALLY_RETURN_IF_ERROR(Expect(':'));
        bool* seen = nullptr;
        if (key == "dtype") {
          seen = &has_dtype;
          TALLY_ASSIGN_OR_RETURN(entry->tensor.dtype, ParseString());
        } else if (key == "shape") {
          seen = &has_shape;
          TALLY_RETURN_IF_ERROR(ParseIntegers(&entry->tensor.shape, kMaxRank));
        } else if (key == "data_offsets") {
          seen = &has_offsets;
          std::vector<uint64_t> offsets;
          TALLY_RETURN_IF_ERROR(ParseIntegers(&offsets, 2));
          if (offsets.size() != 2) return Error("data_offsets must hold 2 integers");
          entry->begin = offsets[0];
          entry->end = offsets[1];
        } else {
          return Error(
              absl::StrCat("tensor '", entry->tensor.name, "' has an unexpected key '", key, "'"));
        }
        if (*seen) {
          return Error(absl::StrCat("tensor '", entry->tensor.name, "' repeats '", key, "'"));
        }
        *seen = true;
      } while (Consume(','));
      TALLY_RETURN_IF_ERROR(Expect('}'));
    }
    if (!has_dtype || !has_shape || !has_offsets) {
      return Error(absl::StrCat("tensor '", entry->tensor.name,
                                "' needs 'dtype', 'shape' and 'data_offsets'"));
    }
    return absl::OkStatus();
  }

  // [n, n, ...] of non-negative integers, at most `max_count` of them.
  absl::Status ParseIntegers(std::vector<uint64_t>* values, size_t max_count) {
    TALLY_RETURN_IF_ERROR(Expect('['));
    if (Consume(']')) return absl::OkStatus();
    do {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
        return Error("expected a non-negative integer");
      }
      if (text_[pos_] == '0' && pos_ + 1 < text_.size() && text_[pos_ + 1] >= '0' &&
          text_[pos_ + 1] <= '9') {
        return Error("integer with a leading zero");
      }
      uint64_t value = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        const uint64_t digit = static_cast<uint64_t>(text_[pos_++] - '0');
        if (value > (UINT64_MAX - digit) / 10) return Error("integer overflows 64 bits");
        value = value * 10 + digit;
      }
      if (values->size() == max_count) return Error("too many integers in an array");
      values->push_back(value);
    } while (Consume(','));
    return Expect(']');
  }

  absl::StatusOr<std::string> ParseString() {
    SkipSpace();
    if (!Consume('"')) return Error("expected a string");
    std::string out;
    for (;;) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u':
          TALLY_RETURN_IF_ERROR(ParseUnicodeEscape(&out));
          break;
        default:
          return Error("invalid escape in a string");
      }
    }
  }

  // After "\u": four hex digits (a surrogate pair takes two escapes),
  // appended as UTF-8.
  absl::Status ParseUnicodeEscape(std::string* out) {
    TALLY_ASSIGN_OR_RETURN(uint32_t code, ParseHex4());
    if (code >= 0xdc00 && code <= 0xdfff) return Error("unpaired surrogate in a string");
    if (code >= 0xd800 && code <= 0xdbff) {
      if (text_.substr(pos_, 2) != "\\u") return Error("unpaired surrogate in a string");
      pos_ += 2;
      TALLY_ASSIGN_OR_RETURN(const uint32_t low, ParseHex4());
      if (low < 0xdc00 || low > 0xdfff) return Error("unpaired surrogate in a string");
      code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
    }
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xc0 | code >> 6));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | code >> 12));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | code >> 18));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> ParseHex4() {
    if (text_.size() - pos_ < 4) return Error("truncated \\u escape");
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      uint32_t digit;
      if (h >= '0' && h <= '9') {
        digit = static_cast<uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        digit = static_cast<uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        digit = static_cast<uint32_t>(h - 'A' + 10);
      } else {
        return Error("invalid \\u escape");
      }
      code = code << 4 | digit;
    }
    return code;
  }

  absl::Status Expect(char c) {
    if (Consume(c)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", std::string(1, c), "'"));
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed safetensors header at byte ", pos_, ": ", what));
  }
};

std::string ShapeText(const std::vector<uint64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Resolves dtypes and sizes, and checks that the offsets tile the data
// section exactly: sorted by offset, each tensor starts where the previous
// ends, the first at 0 and the last at the end of the file (no gaps, no
// overlaps, no trailing bytes). Sorts `entries` into that order.
absl::Status CheckEntries(absl::string_view path, uint64_t data_size, std::vector<Entry>* entries) {
  for (Entry& entry : *entries) {
    FileTensor& t = entry.tensor;
    const Dtype* dtype = nullptr;
    for (const Dtype& candidate : kDtypes) {
      if (candidate.name == t.dtype) dtype = &candidate;
    }
    if (dtype == nullptr) {
      return Invalid(path, absl::StrCat("tensor '", t.name, "' has unsupported dtype '", t.dtype,
                                        "' (tally reads F16, BF16, F32, F64, I8..I64, U8..U64 "
                                        "and BOOL)"));
    }
    t.format = {dtype->type, dtype->size, false};
    TALLY_RETURN_IF_ERROR(SizeTensor(path, &t));
    const std::string offsets =
        absl::StrCat("tensor '", t.name, "' data_offsets [", entry.begin, ", ", entry.end, "]");
    if (entry.begin > entry.end)
      return Invalid(path, absl::StrCat(offsets, " end before they begin"));
    if (entry.end > data_size) {
      return Invalid(path, absl::StrCat(offsets, " run past the end of the data (", data_size,
                                        " bytes; a truncated file?)"));
    }
    if (entry.end - entry.begin != t.bytes) {
      return Invalid(
          path, absl::StrCat(offsets, " (", entry.end - entry.begin, " bytes), but shape ",
                             ShapeText(t.shape), " of ", t.dtype, " needs ", t.bytes, " bytes"));
    }
  }
  std::stable_sort(entries->begin(), entries->end(),
                   [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  uint64_t expected = 0;
  for (const Entry& entry : *entries) {
    if (entry.begin != expected) {
      return Invalid(path, absl::StrCat("tensor '", entry.tensor.name, "' starts at data offset ",
                                        entry.begin, ", expected ", expected,
                                        " (tensors must tile the data without gaps or overlaps)"));
    }
    expected = entry.end;
  }
  if (expected != data_size) {
    return Invalid(path, absl::StrCat(data_size - expected,
                                      " bytes after the last tensor's data (tensors must tile "
                                      "the data exactly)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelFile> ReadSafetensors(const InputFile& file, bool layout_only) {
  const std::string& path = file.path();
  if (file.size() < 8) {
    return Invalid(path, absl::StrCat("truncated: ", file.size(),
                                      " bytes, a safetensors file starts with an 8-byte length"));
  }
  unsigned char length_bytes[8];
  TALLY_RETURN_IF_ERROR(file.ReadAt(0, length_bytes, 8, "header length"));
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = header_size << 8 | length_bytes[i];
  if (header_size > kMaxHeaderBytes || header_size > file.size() - 8) {
    return Invalid(
        path, absl::StrCat("header length ", header_size, " exceeds ",
                           header_size > kMaxHeaderBytes ? "the limit of 100000000" : "the file",
                           " (", file.size(), " bytes; not a safetensors file?)"));
  }
  std::string header(static_cast<size_t>(header_size), '\0');
  TALLY_RETURN_IF_ERROR(file.ReadAt(8, header.data(), header.size(), "header"));
  ModelFile model;
  std::vector<Entry> entries;
  if (absl::Status parsed = HeaderParser(header).Parse(&entries, &model.metadata); !parsed.ok()) {
    return Invalid(path, parsed.message());
  }
  const uint64_t data_start = 8 + header_size;
  TALLY_RETURN_IF_ERROR(CheckEntries(path, file.size() - data_start, &entries));
  std::vector<FileTensor> tensors;
  for (const Entry& entry : entries) tensors.push_back(entry.tensor);
  TALLY_RETURN_IF_ERROR(SetLayout(path, tensors, &model));
  if (layout_only) return model;

  model.params.resize(model.layout.NumParams());
  std::vector<unsigned char> buffer(
      static_cast<size_t>(std::min<uint64_t>(kReadChunkBytes, file.size() - data_start)));
  for (size_t i = 0; i < entries.size(); ++i) {
    const FileTensor& t = entries[i].tensor;
    float* out = model.params.data() + model.layout.tensors()[i].offset;
    for (uint64_t done = 0; done < t.bytes;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(t.bytes - done, buffer.size()));
      TALLY_RETURN_IF_ERROR(
          file.ReadAt(data_start + entries[i].begin + done, buffer.data(), n, "data"));
      const uint64_t first = done / t.format.size;
      if (absl::Status decoded =
              DecodeElements(t.format, buffer.data(), n / t.format.size, first, out + first);
          !decoded.ok()) {
        return Invalid(path, absl::StrCat("tensor '", t.name, "' ", decoded.message()));
      }
      done += n;
    }
  }
  return model;
}

absl::Status WriteSafetensors(OutputFile& out, const ModelLayout& layout,
                              absl::Span<const float> params,
                              const WriteModelFileOptions& options) {
  std::vector<std::string> metadata = {"\"format\":\"pt\""};
  for (const auto& [key, value] : options.metadata) {
    if (key != "format") metadata.push_back(absl::StrCat(JsonQuoted(key), ":", JsonQuoted(value)));
  }
  std::string header = absl::StrCat("{\"__metadata__\":{", absl::StrJoin(metadata, ","), "}");
  for (const TensorLayout& t : layout.tensors()) {
    absl::StrAppend(&header, ",", JsonQuoted(t.name), ":{\"dtype\":\"F32\",\"shape\":[",
                    absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", 4 * t.offset, ",",
                    4 * (t.offset + t.size), "]}");
  }
  header.push_back('}');
  header.append((8 - header.size() % 8) % 8, ' ');  // The data starts 8-aligned.
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(header.size() >> (8 * i));
  out.Write(length, sizeof(length));
  out.Write(header);
  out.WriteFloats(params);
  return absl::OkStatus();
}

}  // namespace tally::model_file_internal
