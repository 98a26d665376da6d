// NumPy .npz archives for core/model_file.h: one .npy member per tensor
// (core/npy.h parses their headers), in a ZIP container (core/zip.h).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/model_file_io.h"
#include "core/npy.h"
#include "core/status_macros.h"
#include "core/zip.h"

namespace tally::model_file_internal {
namespace {

constexpr size_t kReadChunkBytes = 1 << 20;  // A multiple of every element size.

// A member's tensor and where its data starts within the member.
struct NpyMember {
  FileTensor tensor;
  bool fortran_order = false;
  size_t data_start = 0;
};

// '<f4', '>i8', '|b1', ...: byte order, kind and size of the elements.
absl::StatusOr<ElementFormat> FormatOf(const std::string& descr) {
  static constexpr struct {
    char kind;
    size_t size;
    ElementType type;
  } kKinds[] = {
      {'f', 2, ElementType::kF16}, {'f', 4, ElementType::kF32}, {'f', 8, ElementType::kF64},
      {'i', 1, ElementType::kI8},  {'i', 2, ElementType::kI16}, {'i', 4, ElementType::kI32},
      {'i', 8, ElementType::kI64}, {'u', 1, ElementType::kU8},  {'u', 2, ElementType::kU16},
      {'u', 4, ElementType::kU32}, {'u', 8, ElementType::kU64}, {'b', 1, ElementType::kBool}};
  size_t size = 0;
  if (descr.size() >= 3 && (descr[0] == '<' || descr[0] == '>' || descr[0] == '|') &&
      absl::SimpleAtoi(absl::string_view(descr).substr(2), &size)) {
    for (const auto& kind : kKinds) {
      if (kind.kind == descr[1] && kind.size == size && (descr[0] != '|' || size == 1)) {
        return ElementFormat{kind.type, size, descr[0] == '>'};
      }
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", descr,
                   "' (tally reads float16/32/64, signed and unsigned integers and bool)"));
}

// The member's .npy header: its tensor, checked against the member's size.
absl::StatusOr<NpyMember> ReadMemberHeader(const InputFile& file, const ZipMember& member) {
  NpyMember npy;
  npy.tensor.name = member.name.substr(0, member.name.size() - 4);  // Without ".npy".
  auto invalid = [&](absl::string_view problem) {
    return Invalid(file.path(), absl::StrCat("member '", member.name, "': ", problem));
  };
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<ZipMemberReader> reader,
                         ZipMemberReader::Open(file, member));
  char start[kNpyMaxPreambleSize];
  const size_t got =
      static_cast<size_t>(std::min<uint64_t>(sizeof(start), member.uncompressed_size));
  if (got == 0) return invalid("empty, not a .npy array");
  TALLY_RETURN_IF_ERROR(reader->Read(start, got, ".npy header"));
  absl::StatusOr<NpyPreamble> preamble = ParseNpyPreamble(absl::string_view(start, got));
  if (!preamble.ok()) return invalid(preamble.status().message());
  std::string text(start + preamble->size, got - preamble->size);
  if (text.size() > preamble->header_size) return invalid("malformed .npy header (too short)");
  const size_t have = text.size();
  text.resize(preamble->header_size);
  TALLY_RETURN_IF_ERROR(reader->Read(text.data() + have, text.size() - have, ".npy header"));
  absl::StatusOr<NpyHeaderDict> dict = ParseNpyHeaderDict(text);
  if (!dict.ok()) return invalid(dict.status().message());
  absl::StatusOr<ElementFormat> format = FormatOf(dict->descr);
  if (!format.ok()) return invalid(format.status().message());
  npy.tensor.dtype = dict->descr;
  npy.tensor.format = *format;
  npy.tensor.shape = dict->shape;
  npy.fortran_order = dict->fortran_order;
  npy.data_start = preamble->size + preamble->header_size;
  TALLY_RETURN_IF_ERROR(SizeTensor(file.path(), &npy.tensor));
  if (member.uncompressed_size - npy.data_start != npy.tensor.bytes) {
    return invalid(absl::StrCat("the shape and dtype need ", npy.tensor.bytes,
                                " bytes of data, the member holds ",
                                member.uncompressed_size - npy.data_start));
  }
  return npy;
}

// Column-major (Fortran) `in` to row-major `out`, both of the shape's size.
void FortranToC(const std::vector<uint64_t>& shape, const float* in, float* out) {
  const size_t rank = shape.size();
  std::vector<uint64_t> stride(rank), index(rank, 0);
  uint64_t count = 1;
  for (size_t k = 0; k < rank; ++k) {
    stride[k] = count;
    count *= shape[k];
  }
  uint64_t from = 0;
  for (uint64_t i = 0; i < count; ++i) {
    out[i] = in[from];
    for (size_t k = rank; k-- > 0;) {  // The last index moves fastest in C order.
      if (++index[k] < shape[k]) {
        from += stride[k];
        break;
      }
      from -= stride[k] * (shape[k] - 1);
      index[k] = 0;
    }
  }
}

// The member's values into `out` (tensor.count floats).
absl::Status ReadMemberData(const InputFile& file, const ZipMember& member, const NpyMember& npy,
                            float* out) {
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<ZipMemberReader> reader,
                         ZipMemberReader::Open(file, member));
  std::vector<unsigned char> buffer(std::max<size_t>(
      npy.data_start, static_cast<size_t>(std::min<uint64_t>(npy.tensor.bytes, kReadChunkBytes))));
  TALLY_RETURN_IF_ERROR(reader->Read(buffer.data(), npy.data_start, ".npy header"));
  const bool transpose = npy.fortran_order && npy.tensor.shape.size() > 1;
  std::vector<float> fortran(transpose ? npy.tensor.count : 0);
  float* values = transpose ? fortran.data() : out;
  const ElementFormat& format = npy.tensor.format;
  for (uint64_t done = 0; done < npy.tensor.bytes;) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(npy.tensor.bytes - done, kReadChunkBytes));
    TALLY_RETURN_IF_ERROR(reader->Read(buffer.data(), n, "array data"));
    const uint64_t first = done / format.size;
    if (absl::Status decoded =
            DecodeElements(format, buffer.data(), n / format.size, first, values + first);
        !decoded.ok()) {
      return Invalid(file.path(),
                     absl::StrCat("tensor '", npy.tensor.name, "' ", decoded.message()));
    }
    done += n;
  }
  TALLY_RETURN_IF_ERROR(reader->Finish());
  if (transpose) FortranToC(npy.tensor.shape, fortran.data(), out);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelFile> ReadNpz(const InputFile& file, bool layout_only) {
  TALLY_ASSIGN_OR_RETURN(const std::vector<ZipMember> members, ListZipMembers(file));
  std::vector<NpyMember> arrays;
  for (const ZipMember& member : members) {
    if (!absl::EndsWith(member.name, ".npy")) {
      return Invalid(file.path(), absl::StrCat("member '", member.name,
                                               "' is not a .npy array (np.savez writes "
                                               "<name>.npy members)"));
    }
    TALLY_ASSIGN_OR_RETURN(NpyMember npy, ReadMemberHeader(file, member));
    arrays.push_back(std::move(npy));
  }
  std::vector<FileTensor> tensors;
  for (const NpyMember& npy : arrays) tensors.push_back(npy.tensor);
  ModelFile model;
  TALLY_RETURN_IF_ERROR(SetLayout(file.path(), tensors, &model));
  if (layout_only) return model;
  model.params.resize(model.layout.NumParams());
  for (size_t i = 0; i < members.size(); ++i) {
    TALLY_RETURN_IF_ERROR(ReadMemberData(file, members[i], arrays[i],
                                         model.params.data() + model.layout.tensors()[i].offset));
  }
  return model;
}

absl::Status WriteNpz(OutputFile& out, const ModelLayout& layout, absl::Span<const float> params,
                      const WriteModelFileOptions& options) {
  // The CRC is taken over the floats as they are in memory, which is their
  // little-endian file encoding on the hosts tally runs on.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian hosts only");
  ZipWriter zip(&out, options.force_zip64);
  for (const TensorLayout& t : layout.tensors()) {
    const std::string prefix = NpyF4Prefix({t.shape.begin(), t.shape.end()});
    const absl::Span<const float> values = params.subspan(t.offset, t.size);
    const uint32_t crc =
        Crc32(Crc32(0, prefix.data(), prefix.size()), values.data(), 4 * values.size());
    TALLY_RETURN_IF_ERROR(zip.BeginMember(t.name + ".npy", prefix.size() + 4 * values.size(), crc));
    out.Write(prefix);
    out.WriteFloats(values);
  }
  return zip.Finish();
}

}  // namespace tally::model_file_internal
