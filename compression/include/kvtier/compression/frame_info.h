// What a kvz frame is made of, chunk by chunk, without decoding it: for `kvtier-codec info`,
// metrics and debugging. Thread-safe (a pure function of its input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {

struct ChunkInfo {
  uint32_t elements = 0;
  uint64_t original_bytes = 0;
  uint64_t body_bytes = 0;
  std::string_view mode;  // "stored", "huffman" or "constant"
  int symbols = 0;        // distinct coded bytes in the table (huffman), 1 (constant), 0 (stored)
  int max_code_length = 0;
};

struct FrameInfo {
  FrameHeader header;
  std::vector<ChunkInfo> chunks;
};

// Header and directory of the frame at the start of `frame` (which may be followed by other
// frames). Checks the header and the directory's structure, not the chunk bodies or checksums
// (Decompress does). Errors as ReadFrameHeader, plus DataLoss for an impossible directory.
absl::StatusOr<FrameInfo> InspectFrame(std::span<const std::byte> frame);

}  // namespace kvtier
