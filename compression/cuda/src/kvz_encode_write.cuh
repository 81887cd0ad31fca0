// The kvz GPU encoder's writing of one chunk's body (internal to kvz_encode.cu and
// kvz_encode_fused.cu), by one block of kSegments warps, from the chunk's plan: stored,
// constant or Huffman bodies, warp s encoding segment s of every lane's stream.
#pragma once

#include "kvz_encode_plan.cuh"

namespace kvtier::kvz::gpu {
// Internal to the encoder's .cu files: each gets its own copy.
namespace {

// The write kernel: one block of kSegments warps per chunk. Warp s encodes the s-th quarter of
// the chunk's elements, which is segment s of every lane's bitstream, from the bit where the
// plan's counts say it starts; the words that two segments share are merged at the end. A 64
// MiB batch has only ~15 chunks per SM, and one warp per chunk left too few warps to hide each
// warp's chain of shared-memory lookups (docs/compression.md, "GPU notes").
//
// Per tile, a warp stages 16 x 32 elements in shared memory with 16-byte asynchronous copies,
// two tiles ahead, writes their raw bytes straight out (coalesced 4-byte stores), and each lane
// encodes its strided elements from the staged copy.
constexpr int kTileSteps = 16;
constexpr int kTileElements = kTileSteps * kLanes;
constexpr int kStages = 3;
constexpr int kWriteThreads = kSegments * kLanes;
constexpr uint32_t kNoWord = 0xFFFFFFFFu;

struct WriteWarpShared {
  uint4 stage[kStages][kTileElements * 2 / 16];  // input tiles t, t+1, t+2 (16-bit elements)
  // Words each lane completes in a tile (at most 6: 16 codes of at most 11 bits after fewer
  // than 32 pending bits), written to global memory after the tile: a store straight from the
  // bit accumulator would stall its next update until the store has read the register.
  uint32_t words_out[8][kLanes];
};

// The words at the two ends of each segment of each lane that other segments share:
// [segment][0 first, 1 last][lane], the word's index in the lane's stream (kNoWord: none) and
// the segment's bits in it.
struct SegmentEdges {
  uint32_t index[kSegments][2][kLanes];
  uint32_t bits[kSegments][2][kLanes];
};

struct WriteShared {
  uint32_t entries[256];  // ChunkPlan::entries
  SegmentEdges edges;
  WriteWarpShared warp[kSegments];
};

// What every thread of a write block knows of its chunk.
struct WriteView {
  const uint8_t* in;  // the chunk's elements
  uint32_t n;         // elements
  uint8_t* body;      // where the body goes
  const ChunkPlan* plan;
  uint32_t segment_elements;  // elements per segment
};

// Stored body: the bytes, then zeros to a multiple of 4.
__device__ void WriteStored(const WriteView& v, uint32_t bytes, int thread) {
  const uint4* in16 = reinterpret_cast<const uint4*>(v.in);
  uint32_t* body32 = reinterpret_cast<uint32_t*>(v.body);
  for (uint32_t i = thread; i < bytes / 16; i += kWriteThreads) {
    const uint4 q = in16[i];
    body32[4 * i] = q.x;
    body32[4 * i + 1] = q.y;
    body32[4 * i + 2] = q.z;
    body32[4 * i + 3] = q.w;
  }
  const uint32_t* in32 = reinterpret_cast<const uint32_t*>(v.in);
  for (uint32_t w = (bytes / 16) * 4 + thread; w < bytes / 4; w += kWriteThreads) {
    body32[w] = in32[w];
  }
  if (thread == 0 && bytes % 4 != 0) {
    uint32_t last = 0;
    for (uint32_t i = bytes & ~3u; i < bytes; ++i) last |= uint32_t{v.in[i]} << (8 * (i % 4));
    body32[bytes / 4] = last;
  }
}

// The Huffman body's fixed parts: lane table and code-length nibbles.
__device__ void WriteHuffmanTables(const WriteView& v, size_t nibbles_offset, uint32_t nibble_bytes,
                                   int thread) {
  const ChunkPlan& plan = *v.plan;
  if (thread < kLanes)
    StoreLe16(v.body + kHuffmanPrefixBytes + 2 * thread, plan.lane_words[thread]);
  const int min_symbol = plan.min_symbol;
  const int range = plan.max_symbol - min_symbol + 1;
  for (uint32_t k = thread; k < nibble_bytes; k += kWriteThreads) {
    const int lo = 2 * static_cast<int>(k);
    const uint32_t a = lo < range ? plan.entries[min_symbol + lo] >> 16 : 0;
    const uint32_t h = lo + 1 < range ? plan.entries[min_symbol + lo + 1] >> 16 : 0;
    v.body[nibbles_offset + k] = static_cast<uint8_t>(a | h << 4);
  }
}

// Copies the whole 16-byte vectors of the tile at `tile_first` (relative to the chunk; none past
// `end`) into the warp's stage buffer for it, asynchronously; one commit group per tile, empty
// past the end, so that waits count tiles.
template <int kElementBytes>
__device__ void StageTile(const WriteView& v, WriteWarpShared& ws, uint32_t tile_index,
                          uint32_t tile_first, uint32_t end, int lane) {
  constexpr int kVectorsPerLane = kTileElements * kElementBytes / 16 / kLanes;
  constexpr int kPerVector = 16 / kElementBytes;
  if (tile_first < end) {
    const uint32_t whole = min(static_cast<uint32_t>(kTileElements), end - tile_first) / kPerVector;
    const uint4* src = reinterpret_cast<const uint4*>(v.in + uint64_t{tile_first} * kElementBytes);
    uint4* dst = ws.stage[tile_index % kStages];
#pragma unroll
    for (int u = 0; u < kVectorsPerLane; ++u) {
      const uint32_t i = lane + u * kLanes;
      if (i < whole) CpAsync16(dst + i, src + i);
    }
  }
  CpAsyncCommit();
}

// Once the tile's stage has landed: writes its raw bytes (16-bit dtypes) and, unless the whole
// chunk is `kResident` in shared memory already, completes the stage with the elements after
// its last whole vector (the end of a frame only).
template <int kElementBytes, bool kResident>
__device__ void FinishTile(const WriteView& v, uint8_t* raw, uint4* staged, uint32_t tile_first,
                           uint32_t tile_n, int lane) {
  constexpr int kVectorsPerLane = kTileElements * kElementBytes / 16 / kLanes;
  constexpr int kPerVector = 16 / kElementBytes;
  const uint32_t whole = tile_n / kPerVector;
  if constexpr (kElementBytes == 2) {
#pragma unroll
    for (int u = 0; u < kVectorsPerLane; ++u) {
      const uint32_t i = lane + u * kLanes;
      if (i >= whole) continue;
      const uint4 q = staged[i];
      const uint32_t x[4] = {q.x, q.y, q.z, q.w};
      uint32_t r[2];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        // Raw bytes of two elements: sign | low 7 mantissa bits, i.e. bytes 0 and 2 of the
        // word with bit 7 replaced by the element's bit 15.
        const uint32_t two = (x[k] & 0x007F007Fu) | ((x[k] >> 8) & 0x00800080u);
        const uint32_t packed = __byte_perm(two, 0, 0x4420);  // bytes 0, 2 -> low half
        r[k / 2] = k % 2 == 0 ? packed : r[k / 2] | packed << 16;
      }
      uint32_t* raw32 = reinterpret_cast<uint32_t*>(raw + tile_first + kPerVector * i);
      raw32[0] = r[0];
      raw32[1] = r[1];
    }
  }
  if (kResident && kElementBytes == 1) return;
  const uint8_t* src = kResident ? reinterpret_cast<const uint8_t*>(staged)
                                 : v.in + uint64_t{tile_first} * kElementBytes;
  for (uint32_t i = whole * kPerVector + lane; i < tile_n; i += kLanes) {
    const uint32_t x = LoadElement<kElementBytes>(src, i);
    if constexpr (kElementBytes == 2) {
      if (!kResident) reinterpret_cast<uint16_t*>(staged)[i] = static_cast<uint16_t>(x);
      raw[tile_first + i] = RawByte16(static_cast<uint16_t>(x));
    } else {
      reinterpret_cast<uint8_t*>(staged)[i] = static_cast<uint8_t>(x);
    }
  }
}

// Warp `segment` encodes its quarter of the chunk into the lanes' streams at `out` (lane l's
// words) and writes its raw bytes. Words wholly inside the segment go straight out; the first
// (if the segment starts inside a word) and the last (if it ends inside one) go to `edges` for
// MergeEdges. `tile_ready(tile, tile_first, tile_n)` makes the tile's elements readable in
// shared memory, writes their raw bytes and returns where they are; `words_out` is the warp's
// buffer for the words its lanes complete in a tile.
template <int kElementBytes, typename TileReady>
__device__ void EncodeSegment(const WriteView& v, const uint32_t* entries, SegmentEdges& edges,
                              uint32_t (*words_out)[kLanes], uint32_t* out, int segment, int lane,
                              TileReady&& tile_ready) {
  const uint32_t first = segment * v.segment_elements;
  const uint32_t end = min(v.n, first + v.segment_elements);
  uint32_t start_bit = 0;
  for (int s = 0; s < segment; ++s) start_bit += v.plan->segment_bits[s][lane];
  uint32_t w = start_bit / 32;  // the word the accumulator fills
  uint32_t pending = start_bit % 32;
  uint64_t acc = 0;
  const uint32_t shared_first = pending != 0 ? w : kNoWord;
  edges.index[segment][0][lane] = kNoWord;
  edges.index[segment][1][lane] = kNoWord;
  constexpr int kBatch = 8;  // steps whose entries are loaded at once
  uint32_t tile = 0;
  for (uint32_t tile_first = first; tile_first < end; tile_first += kTileElements, ++tile) {
    const uint32_t tile_n = min(static_cast<uint32_t>(kTileElements), end - tile_first);
    const uint4* staged = tile_ready(tile, tile_first, tile_n);
    uint32_t done = 0;  // words completed in this tile
    for (uint32_t t0 = 0; t0 < tile_n; t0 += kBatch * kLanes) {
      uint32_t entry[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const uint32_t t = t0 + u * kLanes + lane;
        uint32_t x = 0;
        if constexpr (kElementBytes == 2) {
          x = reinterpret_cast<const uint16_t*>(staged)[t];
        } else {
          x = reinterpret_cast<const uint8_t*>(staged)[t];
        }
        // An entry of 0 past the tile adds nothing.
        entry[u] = t < tile_n ? entries[CodedOf<kElementBytes>(x)] : 0u;
      }
#pragma unroll
      for (int u = 0; u < kBatch; u += 2) {
        // Two codes joined first (at most 22 bits, so at most one word completes), off the
        // accumulator's chain of dependent instructions.
        const uint32_t first_length = entry[u] >> 16;
        const uint32_t code = (entry[u] & 0xFFFF) | (entry[u + 1] & 0xFFFF) << first_length;
        acc |= uint64_t{code} << pending;
        pending += first_length + (entry[u + 1] >> 16);
        if (pending >= 32) {
          words_out[done++][lane] = static_cast<uint32_t>(acc);
          acc >>= 32;
          pending -= 32;
        }
      }
    }
#pragma unroll
    for (uint32_t u = 0; u < 8; ++u) {
      if (u < done && w + u != shared_first) out[w + u] = words_out[u][lane];
    }
    if (shared_first - w < done) {  // unsigned: false for kNoWord and words before w
      edges.index[segment][0][lane] = shared_first;
      edges.bits[segment][0][lane] = words_out[shared_first - w][lane];
    }
    w += done;
    __syncwarp();  // the stage is consumed before the next tile's copy may overwrite it
  }
  if (pending > 0) {  // also the first word when the segment completed none
    edges.index[segment][1][lane] = w;
    edges.bits[segment][1][lane] = static_cast<uint32_t>(acc);
  }
}

// Lane l writes the words its segments share, each the OR of every segment's bits in it. Edge
// indices are non-decreasing in (segment, end) order, so equal ones are adjacent.
__device__ void MergeEdges(const SegmentEdges& edges, uint32_t* out, int lane) {
  uint32_t index = kNoWord;
  uint32_t word = 0;
#pragma unroll
  for (int s = 0; s < kSegments; ++s) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const uint32_t i = edges.index[s][e][lane];
      if (i == kNoWord) continue;
      if (i != index) {
        if (index != kNoWord) out[index] = word;
        index = i;
        word = 0;
      }
      word |= edges.bits[s][e][lane];
    }
  }
  if (index != kNoWord) out[index] = word;
}

// Where the write kernel's warps find their tiles of elements (the TileSource of WriteBody):
// streamed from global memory into per-warp stage buffers, two tiles ahead, with the code table
// copied into shared memory first (three-kernel path)...
template <int kElementBytes>
struct StreamedTiles {
  WriteShared& sm;
  const WriteView& v;
  int warp;
  int lane;
  uint32_t segment_end = 0;

  __device__ void Start(uint32_t segment_first, uint32_t end) {
    segment_end = end;
    StageTile<kElementBytes>(v, sm.warp[warp], 0, segment_first, end, lane);
    StageTile<kElementBytes>(v, sm.warp[warp], 1, segment_first + kTileElements, end, lane);
  }
  // The code table, readable after the next __syncthreads.
  __device__ const uint32_t* Entries(const ChunkPlan& plan, int thread) {
    for (int s = thread; s < 256; s += kWriteThreads) sm.entries[s] = plan.entries[s];
    return sm.entries;
  }
  __device__ uint32_t (*WordsOut())[kLanes] { return sm.warp[warp].words_out; }
  __device__ const uint4* Ready(uint32_t tile, uint32_t tile_first, uint32_t tile_n, uint8_t* raw) {
    WriteWarpShared& ws = sm.warp[warp];
    StageTile<kElementBytes>(v, ws, tile + 2, tile_first + 2 * kTileElements, segment_end, lane);
    CpAsyncWait<2>();  // this lane's copies of this tile have landed...
    __syncwarp();      // ...and everyone's; the previous tile's words are out
    uint4* staged = ws.stage[tile % kStages];
    FinishTile<kElementBytes, false>(v, raw, staged, tile_first, tile_n, lane);
    __syncwarp();  // the stage is complete
    return staged;
  }
};

// ...or from the whole chunk, resident in shared memory since the plan (fused path; the plan's
// code table is in shared memory too).
template <int kElementBytes>
struct ResidentTiles {
  const uint4* chunk;
  uint32_t (*words_out)[kLanes];
  const WriteView& v;
  int lane;

  __device__ void Start(uint32_t, uint32_t) {}
  __device__ const uint32_t* Entries(const ChunkPlan& plan, int) { return plan.entries; }
  __device__ uint32_t (*WordsOut())[kLanes] { return words_out; }
  __device__ const uint4* Ready(uint32_t, uint32_t tile_first, uint32_t tile_n, uint8_t* raw) {
    uint4* staged = const_cast<uint4*>(chunk) + tile_first * kElementBytes / 16;
    FinishTile<kElementBytes, true>(v, raw, staged, tile_first, tile_n, lane);
    return staged;
  }
};

// One block of kSegments warps per chunk writes the body `plan` chose at v.body, reading the
// elements through `tiles` (StreamedTiles or ResidentTiles).
template <int kElementBytes, typename Tiles>
__device__ void WriteBody(const WriteView& v, const ChunkPlan& plan, SegmentEdges& edges,
                          Tiles& tiles, int warp, int lane) {
  const int thread = warp * kLanes + lane;
  const uint32_t raw_bytes = v.n * (kElementBytes - 1);
  if (plan.kind == 0) return WriteStored(v, v.n * kElementBytes, thread);

  const size_t raw_offset = plan.kind == kKindConstant ? kConstantRawOffset : kHuffmanRawOffset;
  uint8_t* raw = v.body + raw_offset;
  if (thread == 0) {
    v.body[0] = plan.kind;
    v.body[1] = plan.min_symbol;
    v.body[2] = plan.kind == kKindConstant ? 0 : plan.max_symbol;
    v.body[3] = 0;
    for (uint32_t i = raw_bytes; i < RoundUp4(raw_bytes); ++i) raw[i] = 0;
  }
  if (plan.kind == kKindConstant) {
    if constexpr (kElementBytes == 2) {
      for (uint32_t i = thread; i < v.n; i += kWriteThreads) {
        raw[i] = RawByte16(LoadElement<2>(v.in, i));
      }
    }
    return;
  }

  // Huffman: every warp starts staging its first two tiles before the code table is in.
  const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
  const uint32_t nibble_bytes =
      static_cast<uint32_t>(NibbleBytes(plan.min_symbol, plan.max_symbol));
  const uint32_t segment_first = warp * v.segment_elements;
  tiles.Start(segment_first, min(v.n, segment_first + v.segment_elements));
  const uint32_t* entries = tiles.Entries(plan, thread);
  WriteHuffmanTables(v, nibbles_offset, nibble_bytes, thread);
  const uint32_t words = plan.lane_words[lane];
  uint32_t start = words;
#pragma unroll
  for (int d = 1; d < kLanes; d *= 2) {
    const uint32_t x = __shfl_up_sync(kFullMask, start, d);
    if (lane >= d) start += x;
  }
  start -= words;  // exclusive
  uint32_t* out = reinterpret_cast<uint32_t*>(v.body + nibbles_offset + nibble_bytes) + start;
  __syncthreads();  // the code table is complete
  EncodeSegment<kElementBytes>(v, entries, edges, tiles.WordsOut(), out, warp, lane,
                               [&](uint32_t tile, uint32_t tile_first, uint32_t tile_n) {
                                 return tiles.Ready(tile, tile_first, tile_n, raw);
                               });
  __syncthreads();  // every segment's edges are in
  if (warp == 0) MergeEdges(edges, out, lane);
}

}  // namespace
}  // namespace kvtier::kvz::gpu
