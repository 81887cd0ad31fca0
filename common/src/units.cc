#include "kvtier/common/units.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kvtier/common/strings.h"

namespace kvtier {
namespace {

struct Unit {
  std::string_view name;  // lower case
  uint64_t factor;
};
constexpr Unit kUnits[] = {
    {"", 1},
    {"b", 1},
    {"k", 1024},
    {"kib", 1024},
    {"m", 1024ull << 10},
    {"mib", 1024ull << 10},
    {"g", 1024ull << 20},
    {"gib", 1024ull << 20},
    {"t", 1024ull << 30},
    {"tib", 1024ull << 30},
    {"kb", 1000},
    {"mb", 1000'000},
    {"gb", 1000'000'000},
    {"tb", 1000'000'000'000},
};

absl::Status BadSize(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("cannot read '", AbslView(text), "' as a size (", AbslView(why),
                   "); write a number with an optional unit, e.g. 4096, 256MiB, 8GiB, 1.5GB"));
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  std::string_view s = StdView(absl::StripAsciiWhitespace(AbslView(text)));
  size_t num_end = 0;
  while (num_end < s.size() &&
         (absl::ascii_isdigit(static_cast<unsigned char>(s[num_end])) || s[num_end] == '.')) {
    ++num_end;
  }
  if (num_end == 0) return BadSize(text, "no number");
  const std::string_view number = s.substr(0, num_end);
  const std::string unit =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(AbslView(s.substr(num_end))));
  const Unit* found = nullptr;
  for (const Unit& u : kUnits) {
    if (u.name == unit) found = &u;
  }
  if (found == nullptr) return BadSize(text, absl::StrCat("unknown unit '", unit, "'"));

  uint64_t whole = 0;
  if (absl::SimpleAtoi(AbslView(number), &whole)) {
    if (whole > std::numeric_limits<uint64_t>::max() / found->factor) {
      return BadSize(text, "larger than 16 EiB");
    }
    return whole * found->factor;
  }
  double value = 0;
  if (!absl::SimpleAtod(AbslView(number), &value) || !std::isfinite(value) || value < 0) {
    return BadSize(text, "not a number");
  }
  const double bytes = value * static_cast<double>(found->factor);
  if (bytes >= 18446744073709551616.0) return BadSize(text, "larger than 16 EiB");
  return static_cast<uint64_t>(bytes);
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr std::string_view kNames[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  size_t i = 0;
  while (v >= 1024.0 && i + 1 < std::size(kNames)) {
    v /= 1024.0;
    ++i;
  }
  if (i == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.2f %s", v, kNames[i]);
}

}  // namespace kvtier
