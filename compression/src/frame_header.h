// Internal: the 32-byte kvz header (docs/format.md, "Header"), written and checked.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier::kvz {

// Writes the header for the given fields (header_check included) to out[0, 32).
void WriteFrameHeader(uint8_t dtype, int chunk_log2, uint64_t element_count, uint64_t frame_bytes,
                      uint8_t* out);

// Parses and checks a header; `available` is how many bytes follow `p` (at least the 32 of the
// header for anything but InvalidArgument).
absl::StatusOr<FrameHeader> ParseFrameHeader(const uint8_t* p, size_t available);

// ceil(element_count / 2^chunk_log2).
inline uint64_t NumChunks(uint64_t element_count, int chunk_log2) {
  return (element_count + (uint64_t{1} << chunk_log2) - 1) >> chunk_log2;
}

}  // namespace kvtier::kvz
