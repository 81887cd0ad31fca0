// Debian 12's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so the two do not convert implicitly. kvtier's APIs take std::string_view;
// these two helpers cross to and from Abseil's functions (StrCat, SimpleAtoi, Status messages).
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace kvtier {

inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view StdView(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace kvtier
