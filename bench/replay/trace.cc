#include "kvtier/replay/trace.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "nlohmann/json.hpp"

namespace kvtier::replay {
namespace {

absl::Status LineError(size_t line, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("trace line ", line, ": ", AbslView(what)));
}

// A non-negative integer field, or 0 when absent.
absl::StatusOr<uint64_t> Unsigned(const nlohmann::json& obj, const char* key, size_t line) {
  auto it = obj.find(key);
  if (it == obj.end()) return uint64_t{0};
  if (!it->is_number_unsigned()) {
    return LineError(line, absl::StrCat("\"", key, "\" is not a non-negative integer"));
  }
  return it->get<uint64_t>();
}

}  // namespace

uint64_t Trace::TotalBlocks() const {
  uint64_t total = 0;
  for (const TraceRequest& r : requests) total += r.hash_ids.size();
  return total;
}

absl::StatusOr<Trace> ParseMooncakeTrace(std::string_view jsonl) {
  Trace trace;
  size_t line_no = 0;
  while (!jsonl.empty()) {
    ++line_no;
    const size_t end = jsonl.find('\n');
    std::string_view line = jsonl.substr(0, end);
    jsonl.remove_prefix(end == std::string_view::npos ? jsonl.size() : end + 1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;

    nlohmann::json obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded() || !obj.is_object()) return LineError(line_no, "not a JSON object");
    auto ids = obj.find("hash_ids");
    if (ids == obj.end() || !ids->is_array()) {
      return LineError(line_no, "\"hash_ids\" missing or not an array");
    }
    TraceRequest r;
    r.hash_ids.reserve(ids->size());
    for (const nlohmann::json& id : *ids) {
      if (!id.is_number_unsigned()) {
        return LineError(line_no, "a hash id is not a non-negative integer");
      }
      r.hash_ids.push_back(id.get<uint64_t>());
    }
    absl::StatusOr<uint64_t> ts = Unsigned(obj, "timestamp", line_no);
    if (!ts.ok()) return ts.status();
    r.timestamp_ms = static_cast<int64_t>(*ts);
    absl::StatusOr<uint64_t> in = Unsigned(obj, "input_length", line_no);
    if (!in.ok()) return in.status();
    r.input_length = *in;
    absl::StatusOr<uint64_t> out = Unsigned(obj, "output_length", line_no);
    if (!out.ok()) return out.status();
    r.output_length = *out;
    trace.requests.push_back(std::move(r));
  }
  return trace;
}

absl::StatusOr<Trace> LoadMooncakeTrace(std::string_view path) {
  std::ifstream in{std::string(path), std::ios::binary};
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace ", AbslView(path)));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseMooncakeTrace(text.str());
}

}  // namespace kvtier::replay
