#include "frame_header.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "format.h"
#include "header_bytes.h"
#include "xxh64.h"

namespace kvtier::kvz {

void WriteFrameHeader(uint8_t dtype, int chunk_log2, uint64_t element_count, uint64_t frame_bytes,
                      uint8_t* out) {
  WriteHeaderBytes<HostLoads>(dtype, chunk_log2, element_count, frame_bytes, out);
}

absl::StatusOr<FrameHeader> ParseFrameHeader(const uint8_t* p, size_t available) {
  if (available < kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a kvz frame: ", available, " bytes, a header alone is 32"));
  }
  if (std::memcmp(p, kMagic, 4) != 0) {
    return absl::InvalidArgumentError("not a kvz frame: bad magic (expected \\x89KVZ)");
  }
  if (static_cast<uint32_t>(Xxh64(p, 28, 0)) != LoadLe32(p + 28)) {
    return absl::DataLossError("kvz frame is damaged: header check mismatch");
  }
  if (p[4] != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kvz frame version ", p[4], " is not supported by this build (it reads version 1)"));
  }
  if (p[5] >= kNumDtypes) {
    return absl::InvalidArgumentError(absl::StrCat("kvz frame has unknown dtype ", p[5]));
  }
  if (p[6] < kMinChunkLog2 || p[6] > kMaxChunkLog2 || p[7] != kLanesLog2 || LoadLe32(p + 24) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kvz frame has an unsupported layout: chunk_log2 ", p[6], ", lanes_log2 ",
                     p[7], ", flags ", LoadLe32(p + 24)));
  }
  FrameHeader h;
  h.dtype = static_cast<KvDtype>(p[5]);
  h.chunk_log2 = p[6];
  h.element_count = LoadLe64(p + 8);
  h.frame_bytes = LoadLe64(p + 16);
  if (h.element_count > kMaxFrameInputBytes) {
    return absl::DataLossError("kvz frame is damaged: element count above 2^31");
  }
  h.decompressed_bytes = h.element_count * ElementBytes(p[5]);
  if (h.decompressed_bytes > kMaxFrameInputBytes) {
    return absl::DataLossError("kvz frame is damaged: original size above 2^31 bytes");
  }
  h.num_chunks = NumChunks(h.element_count, h.chunk_log2);
  const uint64_t min_bytes = kHeaderBytes + kDirEntryBytes * h.num_chunks;
  if (h.frame_bytes < min_bytes ||
      h.frame_bytes > min_bytes + RoundUp4(h.decompressed_bytes) + 4 * h.num_chunks) {
    return absl::DataLossError(absl::StrCat("kvz frame is damaged: frame_bytes ", h.frame_bytes,
                                            " impossible for ", h.element_count, " elements"));
  }
  if (h.frame_bytes > available) {
    return absl::DataLossError(absl::StrCat("kvz frame is truncated: header says ", h.frame_bytes,
                                            " bytes, ", available, " available"));
  }
  return h;
}

}  // namespace kvtier::kvz
