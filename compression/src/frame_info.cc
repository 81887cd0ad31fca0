#include "kvtier/compression/frame_info.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "chunk_codec.h"
#include "format.h"
#include "frame_header.h"

namespace kvtier {

absl::StatusOr<FrameInfo> InspectFrame(std::span<const std::byte> frame) {
  const auto* in = reinterpret_cast<const uint8_t*>(frame.data());
  absl::StatusOr<FrameHeader> h = kvz::ParseFrameHeader(in, frame.size());
  if (!h.ok()) return h.status();
  FrameInfo info;
  info.header = *h;
  const kvz::ChunkLayout layout{static_cast<uint8_t>(h->dtype), h->chunk_log2};
  const uint8_t* dir = in + kvz::kHeaderBytes;
  const uint8_t* payload = dir + kvz::kDirEntryBytes * h->num_chunks;
  const size_t payload_bytes = h->frame_bytes - static_cast<size_t>(payload - in);
  const uint64_t chunk_elements = uint64_t{1} << h->chunk_log2;
  size_t start = 0;
  for (uint64_t c = 0; c < h->num_chunks; ++c) {
    ChunkInfo ci;
    ci.elements =
        static_cast<uint32_t>(std::min(chunk_elements, h->element_count - c * chunk_elements));
    ci.original_bytes = uint64_t{ci.elements} * KvDtypeBytes(h->dtype);
    const size_t end = kvz::LoadLe32(dir + kvz::kDirEntryBytes * c);
    if (end < start || end > payload_bytes || end - start > kvz::RoundUp4(ci.original_bytes)) {
      return absl::DataLossError(
          absl::StrCat("kvz frame is damaged: directory entry ", c, " is impossible"));
    }
    ci.body_bytes = end - start;
    const kvz::ChunkSummary s =
        kvz::SummarizeChunk(layout, payload + start, ci.body_bytes, ci.elements);
    ci.mode = s.kind == kvz::kKindHuffman    ? "huffman"
              : s.kind == kvz::kKindConstant ? "constant"
                                             : "stored";
    ci.symbols = s.symbols;
    ci.max_code_length = s.max_length;
    info.chunks.push_back(ci);
    start = end;
  }
  return info;
}

}  // namespace kvtier
