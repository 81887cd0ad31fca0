// Internal: one chunk of a kvz frame (docs/format.md, "Chunk bodies"), encoded and decoded on
// the CPU. The frame layer (kv_codec.cc) places chunks and checks the directory; these
// functions trust their arguments' sizes but never the bytes of a body they decode.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace kvtier::kvz {

// What the encoder and decoder need to know about a frame's geometry.
struct ChunkLayout {
  uint8_t dtype = 0;
  int chunk_log2 = 0;
  int element_bytes() const;
  // Slice size of the checksum: a full chunk's bytes / 32.
  size_t slice_bytes() const;
};

// The check of a chunk's original bytes (docs/format.md, "Checksums").
uint32_t ChunkCheck(const uint8_t* data, size_t bytes, size_t slice_bytes, uint64_t chunk_index);

// Per-thread buffers, reused across chunks so that encoding allocates nothing in steady state.
struct ChunkScratch {
  std::vector<uint8_t> symbols;  // coded bytes of the chunk (16-bit dtypes)
  std::vector<uint8_t> body;     // a coded body being built, with slack for 8-byte stores
};

// Largest coded body the encoder may build for n elements before deciding it does not pay
// (tables plus 11 bits per symbol), plus 8 bytes of slack for its word stores.
size_t MaxCodedAttemptBytes(const ChunkLayout& layout, uint32_t n);

// Encodes chunk `index` (n elements at `in`) into `out` following the encoder rules, and
// returns the body's size (a multiple of 4, at most RoundUp4(n * element bytes)). Writes the
// body at `out`; uses out[0, out_room) as working space when out_room >= MaxCodedAttemptBytes,
// else the scratch. *check receives the chunk check. REQUIRES: 1 <= n <= 2^chunk_log2.
size_t EncodeChunk(const ChunkLayout& layout, uint64_t index, const uint8_t* in, uint32_t n,
                   uint8_t* out, size_t out_room, uint32_t* check, ChunkScratch& scratch);

// Decodes the body [body, body + body_bytes) of chunk `index` with n elements into `out`
// (n * element bytes), reading nothing outside [body, readable_end) (readable_end >= body +
// body_bytes; bytes after the body let the fast path read ahead without copying). DataLoss
// naming the chunk for any malformed body, or for a check mismatch when verify is set.
absl::Status DecodeChunk(const ChunkLayout& layout, uint64_t index, const uint8_t* body,
                         size_t body_bytes, const uint8_t* readable_end, uint32_t n,
                         uint32_t expected_check, bool verify, uint8_t* out);

// What InspectFrame reports per chunk.
struct ChunkSummary {
  uint8_t kind = 0;  // 0 stored, kKindHuffman or kKindConstant
  int symbols = 0;   // symbols in the table (1 for constant, 0 for stored)
  int max_length = 0;
};
// Reads a body's kind and table without decoding it (for kvtier-codec info).
ChunkSummary SummarizeChunk(const ChunkLayout& layout, const uint8_t* body, size_t body_bytes,
                            uint32_t n);

}  // namespace kvtier::kvz
