#include "core/run_history.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "core/json.h"
#include "core/status_macros.h"

namespace tally {
namespace {

constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53.

std::string MapJson(const std::map<std::string, double>& values) {
  std::string out = "{";
  for (const auto& [name, value] : values) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", JsonQuoted(name), ":", JsonNumber(value));
  }
  return out + "}";
}

std::string MapJson(const std::map<std::string, std::string>& values) {
  std::string out = "{";
  for (const auto& [name, value] : values) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", JsonQuoted(name), ":", JsonQuoted(value));
  }
  return out + "}";
}

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("history record field '", field, "': ", what));
}

// A non-negative integer field (absent = 0).
template <typename T>
absl::Status ReadInteger(const JsonValue& object, absl::string_view field, T* out) {
  const JsonValue* value = object.Find(field);
  if (value == nullptr) return absl::OkStatus();
  const double n = value->number;
  if (value->type != JsonValue::Type::kNumber || n != std::floor(n) || std::fabs(n) > kMaxExactInteger ||
      (std::is_unsigned<T>::value && n < 0)) {
    return FieldError(field, "expected an integer");
  }
  *out = static_cast<T>(n);
  return absl::OkStatus();
}

absl::Status ReadNumbers(const JsonValue& object, absl::string_view field,
                         std::map<std::string, double>* out) {
  const JsonValue* value = object.Find(field);
  if (value == nullptr) return absl::OkStatus();
  if (value->type != JsonValue::Type::kObject) return FieldError(field, "expected an object");
  for (const auto& [name, member] : value->object) {
    if (member.type != JsonValue::Type::kNumber) {
      return FieldError(field, absl::StrCat("'", name, "' is not a number"));
    }
    (*out)[name] = member.number;
  }
  return absl::OkStatus();
}

absl::Status ReadStrings(const JsonValue& object, absl::string_view field,
                         std::map<std::string, std::string>* out) {
  const JsonValue* value = object.Find(field);
  if (value == nullptr) return absl::OkStatus();
  if (value->type != JsonValue::Type::kObject) return FieldError(field, "expected an object");
  for (const auto& [name, member] : value->object) {
    if (member.type != JsonValue::Type::kString) {
      return FieldError(field, absl::StrCat("'", name, "' is not a string"));
    }
    (*out)[name] = member.string;
  }
  return absl::OkStatus();
}

}  // namespace

bool HistoryRecord::operator==(const HistoryRecord& o) const {
  return kind == o.kind && unix_ms == o.unix_ms && round == o.round &&
         model_version == o.model_version && participants == o.participants &&
         bytes_received == o.bytes_received && num_examples == o.num_examples &&
         metrics == o.metrics && decisions == o.decisions && evaluation_id == o.evaluation_id;
}

absl::string_view HistoryKindName(HistoryRecord::Kind kind) {
  return kind == HistoryRecord::Kind::kFit ? "fit" : "evaluate";
}

std::string HistoryRecordToJson(const HistoryRecord& r) {
  const std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(r.unix_ms),
                                            absl::UTCTimeZone());
  std::string out = absl::StrCat(
      "{\"kind\":\"", HistoryKindName(r.kind), "\",\"time\":\"", time, "\",\"unix_ms\":", r.unix_ms,
      ",\"round\":", r.round, ",\"model_version\":", r.model_version,
      ",\"participants\":", r.participants);
  if (r.kind == HistoryRecord::Kind::kFit) {
    absl::StrAppend(&out, ",\"bytes_received\":", r.bytes_received);
  } else {
    absl::StrAppend(&out, ",\"evaluation_id\":", r.evaluation_id);
  }
  absl::StrAppend(&out, ",\"num_examples\":", r.num_examples, ",\"metrics\":", MapJson(r.metrics));
  if (r.kind == HistoryRecord::Kind::kFit) absl::StrAppend(&out, ",\"decisions\":", MapJson(r.decisions));
  return out + "}";
}

absl::StatusOr<HistoryRecord> HistoryRecordFromJson(absl::string_view line) {
  TALLY_ASSIGN_OR_RETURN(JsonValue object, ParseJson(line));
  if (object.type != JsonValue::Type::kObject) {
    return absl::InvalidArgumentError("a history record must be a JSON object");
  }
  HistoryRecord r;
  const JsonValue* kind = object.Find("kind");
  if (kind == nullptr || kind->type != JsonValue::Type::kString ||
      (kind->string != "fit" && kind->string != "evaluate")) {
    return FieldError("kind", "expected \"fit\" or \"evaluate\"");
  }
  r.kind = kind->string == "fit" ? HistoryRecord::Kind::kFit : HistoryRecord::Kind::kEvaluate;
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "unix_ms", &r.unix_ms));
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "round", &r.round));
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "model_version", &r.model_version));
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "participants", &r.participants));
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "bytes_received", &r.bytes_received));
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "num_examples", &r.num_examples));
  TALLY_RETURN_IF_ERROR(ReadInteger(object, "evaluation_id", &r.evaluation_id));
  TALLY_RETURN_IF_ERROR(ReadNumbers(object, "metrics", &r.metrics));
  TALLY_RETURN_IF_ERROR(ReadStrings(object, "decisions", &r.decisions));
  return r;
}

namespace {

// The complete lines of `text` as records; `complete` = bytes up to and
// including the last newline.
absl::StatusOr<std::vector<HistoryRecord>> ParseLines(const std::string& path,
                                                      absl::string_view text, size_t* complete) {
  std::vector<HistoryRecord> records;
  const size_t end = text.rfind('\n');
  *complete = end == absl::string_view::npos ? 0 : end + 1;
  size_t number = 0;
  for (absl::string_view line : absl::StrSplit(text.substr(0, *complete), '\n')) {
    ++number;
    if (line.empty()) continue;
    absl::StatusOr<HistoryRecord> record = HistoryRecordFromJson(line);
    if (!record.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", number, ": ", record.status().message()));
    }
    records.push_back(*std::move(record));
  }
  return records;
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::vector<HistoryRecord>> ReadHistoryFile(const std::string& path) {
  TALLY_ASSIGN_OR_RETURN(std::string text, ReadWhole(path));
  size_t complete = 0;
  TALLY_ASSIGN_OR_RETURN(std::vector<HistoryRecord> records, ParseLines(path, text, &complete));
  if (complete != text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the last line is cut short (no newline after byte ", complete, ")"));
  }
  return records;
}

absl::StatusOr<std::unique_ptr<RunHistory>> RunHistory::Open(const std::string& path, size_t keep) {
  std::vector<HistoryRecord> existing;
  std::FILE* file = nullptr;
  if (!path.empty()) {
    if (access(path.c_str(), F_OK) == 0) {
      TALLY_ASSIGN_OR_RETURN(std::string text, ReadWhole(path));
      size_t complete = 0;
      TALLY_ASSIGN_OR_RETURN(existing, ParseLines(path, text, &complete));
      if (complete != text.size() && truncate(path.c_str(), static_cast<off_t>(complete)) != 0) {
        return absl::InternalError(absl::StrCat("history.path ", path,
                                                ": cannot remove a cut-short last line: ",
                                                std::strerror(errno)));
      }
    }
    file = std::fopen(path.c_str(), "a");
    if (file == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("history.path ", path, ": cannot open for appending: ", std::strerror(errno)));
    }
  }
  std::unique_ptr<RunHistory> history(new RunHistory(path, file, std::max<size_t>(keep, 1)));
  tally::MutexLock lock(&history->mu_);
  for (HistoryRecord& record : existing) {
    history->records_.push_back(std::move(record));
    if (history->records_.size() > history->keep_) history->records_.pop_front();
  }
  return history;
}

RunHistory::~RunHistory() {
  tally::MutexLock lock(&mu_);
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status RunHistory::Append(const HistoryRecord& record) {
  const std::string line = HistoryRecordToJson(record) + "\n";
  tally::MutexLock lock(&mu_);
  records_.push_back(record);
  if (records_.size() > keep_) records_.pop_front();
  if (file_ == nullptr) return absl::OkStatus();
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::InternalError(
        absl::StrCat("history.path ", path_, ": write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::vector<HistoryRecord> RunHistory::Records(uint64_t after_round, size_t max_records) const {
  tally::MutexLock lock(&mu_);
  std::vector<HistoryRecord> out;
  for (const HistoryRecord& record : records_) {
    if (record.round > after_round) out.push_back(record);
  }
  if (max_records != 0 && out.size() > max_records) {
    out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(max_records));
  }
  return out;
}

}  // namespace tally
