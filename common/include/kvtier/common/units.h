// Human-friendly byte sizes for flags and config files: "256MiB", "8GiB", "4096", "1.5GiB".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier {

// Accepts a non-negative number with an optional unit: B, KiB, MiB, GiB, TiB (powers of 1024)
// or KB, MB, GB, TB (powers of 1000); the unit is case-insensitive ("256mib" works) and may be
// separated by spaces. Returns InvalidArgument naming the accepted forms otherwise, or on
// overflow of 64 bits.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);

// Formats with the largest binary unit that keeps the value >= 1, e.g. "1.50 GiB", "512 B".
std::string FormatByteSize(uint64_t bytes);

}  // namespace kvtier
