// The kvz encoder on the GPU, in three kernels (docs/format.md; the CPU encoder in
// compression/src/chunk_encoder.cc is the reference and writes the same bytes):
// 1. plan, one warp per chunk: histogram, chunk check, code lengths (the shared huffman.h), the
//    exact size of every lane, and the body's form;
// 2. scan, one block per frame: body offsets, directory and header;
// 3. write, one warp per chunk: the body at its final place (lane l writes lane l's words).
// A chunk's size depends on its lanes' bit counts, so bodies can only be placed after every
// chunk of the frame has been planned; planning twice (sizes, then bytes) reads the input twice
// but needs no scratch copy of the output.
#include <cub/block/block_scan.cuh>

#include "header_bytes.h"
#include "huffman.h"
#include "kvz_device.cuh"

namespace kvtier::kvz::gpu {
namespace {

constexpr int kScanThreads = 256;

struct PlanShared {
  union {
    // [symbol / 2][lane]: lane-private columns of two 16-bit counts (symbols 2p and 2p + 1 in
    // row p), so that the warp's increments never collide and hit 32 different banks.
    uint32_t hist[128 * kLanes];
    struct {
      uint32_t keys[256];
      uint32_t sorted[256];
      uint32_t work[256];
      uint8_t lengths[256];
    } t;
  };
  uint32_t segment_bits[kSegments][kLanes];
  uint64_t digests[kLanes];
};

// Counts `symbol` in the lane's histogram column. An atomic add whose result is unused issues
// without waiting: a plain load-add-store would have to wait for the previous increment's store
// (the next symbol may be the same), chaining every element's shared-memory latency.
__device__ __forceinline__ void CountSymbol(PlanShared& sm, uint32_t symbol, int lane) {
  atomicAdd(&sm.hist[(symbol >> 1) * kLanes + lane], 1u << (16 * (symbol & 1)));
}

template <int kElementBytes>
__device__ void PlanChunk(const BatchView& b, PlanShared& sm, int lane) {
  const uint64_t unit = blockIdx.x;
  const uint32_t item_index = FindItem(b.items, b.num_items, unit);
  const ItemDesc& it = b.items[item_index];
  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint64_t first = c * chunk_elements;
  const uint32_t n = static_cast<uint32_t>(Min64(chunk_elements, it.elements - first));
  const uint8_t* in = it.in + first * kElementBytes;
  const uint64_t bytes = uint64_t{n} * kElementBytes;
  ChunkPlan& plan = b.plans[unit];

  // One pass over the input: lane l reads its checksum slice (docs/format.md) with 16-byte
  // loads, hashes it and counts its symbols into its own histogram column, so the input is read
  // once here and its latency is overlapped eight loads deep.
  for (int i = lane; i < 128 * kLanes; i += kLanes) sm.hist[i] = 0;
  __syncwarp();
  const uint32_t vectors = static_cast<uint32_t>(bytes / 16);
  const uint4* in16 = reinterpret_cast<const uint4*>(in);
  uint64_t slice_begin, slice_end;
  SliceOf(bytes, (chunk_elements * kElementBytes) / kLanes, lane, &slice_begin, &slice_end);
  const uint32_t slice_len = static_cast<uint32_t>(slice_end - slice_begin);
  const uint64_t digest = Xxh64Vectors<true>(in + slice_begin, slice_len, 0, [&](uint4 q) {
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if constexpr (kElementBytes == 2) {
        CountSymbol(sm, CodedByte16(static_cast<uint16_t>(w[k])), lane);
        CountSymbol(sm, CodedByte16(static_cast<uint16_t>(w[k] >> 16)), lane);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) CountSymbol(sm, (w[k] >> (8 * j)) & 0xFF, lane);
      }
    }
  });
  // The slice's last len % 32 bytes (whole elements: slices start at multiples of 32 bytes).
  for (uint64_t i = (slice_begin + slice_len / 32 * 32) / kElementBytes;
       i < slice_end / kElementBytes; ++i) {
    CountSymbol(
        sm, CodedOf<kElementBytes>(LoadElement<kElementBytes>(in, static_cast<uint32_t>(i))), lane);
  }
  __syncwarp();
  // Lane l sums rows l, l + 32, l + 64, l + 96, i.e. symbols SymbolOf(j) below; the rotation
  // spreads the lanes over the banks.
  const auto symbol_of = [lane](int j) { return 2 * (lane + kLanes * (j / 2)) + (j % 2); };
  uint32_t count[8];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int row = lane + kLanes * r;
    uint32_t even = 0;
    uint32_t odd = 0;
    for (int w = 0; w < kLanes; ++w) {
      const uint32_t pair = sm.hist[row * kLanes + ((w + lane) & (kLanes - 1))];
      even += pair & 0xFFFF;
      odd += pair >> 16;
    }
    count[2 * r] = even;
    count[2 * r + 1] = odd;
  }
  __syncwarp();  // the histogram's memory is reused below

  const uint32_t check = CombineDigests(digest, c, sm.digests, lane);

  // Present symbols, their range, and their sort keys (order fixed by the sort below).
  int present = 0;
  int min_symbol = 256;
  int max_symbol = -1;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int s = symbol_of(j);
    const unsigned mask = __ballot_sync(kFullMask, count[j] > 0);
    if (count[j] > 0) {
      sm.t.keys[present + __popc(mask & ((1u << lane) - 1))] = SortKey(count[j], s);
      min_symbol = min(min_symbol, s);
      max_symbol = max(max_symbol, s);
    }
    present += __popc(mask);
  }
  min_symbol = __reduce_min_sync(kFullMask, min_symbol);
  max_symbol = __reduce_max_sync(kFullMask, max_symbol);
  for (int s = lane; s < 256; s += kLanes) sm.t.lengths[s] = 0;
  __syncwarp();

  const uint32_t raw_bytes = n * (kElementBytes - 1);
  const uint32_t stored_size = static_cast<uint32_t>(RoundUp4(bytes));
  uint8_t kind = 0;
  uint32_t size = stored_size;
  uint32_t words = 0;
  if (present == 1) {
    const uint32_t constant_size = static_cast<uint32_t>(RoundUp4(kConstantRawOffset + raw_bytes));
    if (constant_size < stored_size) {
      kind = kKindConstant;
      size = constant_size;
    }
  } else {
    // Rank sort (keys are distinct), then the shared length construction on one lane.
    for (int i = lane; i < present; i += kLanes) {
      const uint32_t key = sm.t.keys[i];
      int rank = 0;
      for (int j = 0; j < present; ++j) rank += sm.t.keys[j] < key;
      sm.t.sorted[rank] = key;
    }
    __syncwarp();
    if (lane == 0) LengthsFromSorted(sm.t.sorted, present, sm.t.work, sm.t.lengths);
    __syncwarp();
    // Exact bits of every lane in every segment. Lane l's symbols are elements l, l + 32, ...;
    // reading 16-byte vectors instead, vector v holds elements of lanes (v * kPerVector) % 32 + j,
    // j < kPerVector, and thread t only reads vectors v = t (mod 32), which all hold the same
    // lanes: it sums their bits in registers and adds them to sm.segment_bits whenever it moves
    // on to the next segment (a handful of atomics per thread).
    constexpr int kPerVector = 16 / kElementBytes;
    constexpr int kPerVectorLog2 = kElementBytes == 2 ? 3 : 4;
    const int segment_log2 = b.chunk_log2 - 2;  // elements per segment, log2 (kSegments = 4)
    static_assert(kSegments == 4);
    const int lane_base = (lane * kPerVector) % kLanes;
    for (int s = 0; s < kSegments; ++s) sm.segment_bits[s][lane] = 0;
    __syncwarp();
    uint32_t part[kPerVector] = {};
    uint32_t segment = 0;
    auto flush = [&] {
#pragma unroll
      for (int j = 0; j < kPerVector; ++j) {
        atomicAdd(&sm.segment_bits[segment][lane_base + j], part[j]);
        part[j] = 0;
      }
    };
    auto add_bits = [&](uint4 q) {
      const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if constexpr (kElementBytes == 2) {
          part[2 * k] += sm.t.lengths[CodedByte16(static_cast<uint16_t>(w[k]))];
          part[2 * k + 1] += sm.t.lengths[CodedByte16(static_cast<uint16_t>(w[k] >> 16))];
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j) part[4 * k + j] += sm.t.lengths[(w[k] >> (8 * j)) & 0xFF];
        }
      }
    };
    // Eight vectors per lane in flight, double-buffered: the chunk is read again here (from L2
    // when it is still there), and its latency would otherwise be paid once per batch.
    constexpr int kBatch = 8;
    uint4 q[kBatch];
    auto load_batch = [&](uint32_t v0, uint4* dst) {
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const uint32_t v = v0 + u * kLanes;
        dst[u] = v < vectors ? __ldg(in16 + v) : make_uint4(0, 0, 0, 0);
      }
    };
    load_batch(lane, q);
    for (uint32_t v0 = lane; v0 < vectors; v0 += kBatch * kLanes) {
      uint4 next[kBatch];
      const bool more = v0 + kBatch * kLanes < vectors;
      if (more) load_batch(v0 + kBatch * kLanes, next);
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const uint32_t v = v0 + u * kLanes;
        if (v < vectors) {
          const uint32_t s = v >> (segment_log2 - kPerVectorLog2);
          if (s != segment) {
            flush();
            segment = s;
          }
          add_bits(q[u]);
        }
      }
      if (more) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) q[u] = next[u];
      }
    }
    flush();
    // Elements after the last whole vector (the end of a frame only), by their own lane.
    const uint32_t tail = vectors * kPerVector;
    for (uint32_t i = tail + ((lane - tail) % kLanes); i < n; i += kLanes) {
      atomicAdd(&sm.segment_bits[i >> segment_log2][lane],
                sm.t.lengths[CodedOf<kElementBytes>(LoadElement<kElementBytes>(in, i))]);
    }
    __syncwarp();
    uint32_t bits = 0;
    for (int s = 0; s < kSegments; ++s) {
      bits += sm.segment_bits[s][lane];
      plan.segment_bits[s][lane] = static_cast<uint16_t>(sm.segment_bits[s][lane]);
    }
    words = (bits + 31) / 32;
    uint32_t total_words = words;
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) total_words += __shfl_xor_sync(kFullMask, total_words, d);
    const uint32_t huffman_size = static_cast<uint32_t>(kHuffmanRawOffset + RoundUp4(raw_bytes) +
                                                        NibbleBytes(min_symbol, max_symbol)) +
                                  4 * total_words;
    if (huffman_size < stored_size) {
      kind = kKindHuffman;
      size = huffman_size;
    }
  }
  plan.lane_words[lane] = static_cast<uint16_t>(words);
  for (int s = lane; s < 256; s += kLanes) plan.lengths[s] = sm.t.lengths[s];
  if (lane == 0) {
    plan.body_bytes = size;
    plan.check = check;
    plan.kind = kind;
    plan.min_symbol = static_cast<uint8_t>(min_symbol);
    plan.max_symbol = static_cast<uint8_t>(max_symbol);
  }
}

template <int kElementBytes>
__global__ void __launch_bounds__(kLanes) PlanKernel(BatchView b) {
  __shared__ PlanShared sm;
  PlanChunk<kElementBytes>(b, sm, threadIdx.x);
}

// One block per frame: body offsets (exclusive scan of body sizes), directory, header.
__global__ void __launch_bounds__(kScanThreads) ScanKernel(BatchView b) {
  using Scan = cub::BlockScan<uint32_t, kScanThreads>;
  __shared__ typename Scan::TempStorage temp;
  const ItemDesc& it = b.items[blockIdx.x];
  uint8_t* dir = it.out + kHeaderBytes;
  uint32_t running = 0;
  for (uint64_t base = 0; base < it.num_chunks; base += kScanThreads) {
    const uint64_t c = base + threadIdx.x;
    ChunkPlan* plan = c < it.num_chunks ? &b.plans[it.first_unit + c] : nullptr;
    const uint32_t size = plan != nullptr ? plan->body_bytes : 0;
    uint32_t offset = 0;
    uint32_t tile_total = 0;
    Scan(temp).ExclusiveSum(size, offset, tile_total);
    __syncthreads();  // temp is reused by the next tile
    if (plan != nullptr) {
      plan->offset = running + offset;
      StoreLe32(dir + kDirEntryBytes * c, running + offset + size);
      StoreLe32(dir + kDirEntryBytes * c + 4, plan->check);
    }
    running += tile_total;
  }
  if (threadIdx.x == 0) {
    const uint64_t frame_bytes = kHeaderBytes + kDirEntryBytes * it.num_chunks + running;
    WriteHeaderBytes<DeviceLoads>(b.dtype, b.chunk_log2, it.elements, frame_bytes, it.out);
    b.frame_sizes[blockIdx.x] = frame_bytes;
  }
}

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

struct WriteShared {
  uint32_t entries[256];  // code | length << 16
  uint16_t codes[256];
  uint8_t lengths[256];
  // The words at the two ends of each segment of each lane that other segments share:
  // [segment][0 first, 1 last][lane], the word's index in the lane's stream (kNoWord: none) and
  // the segment's bits in it.
  uint32_t edge_index[kSegments][2][kLanes];
  uint32_t edge_bits[kSegments][2][kLanes];
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

// The Huffman body's fixed parts, lane table and code-length nibbles, by `threads` threads.
__device__ void WriteHuffmanTables(const WriteView& v, size_t nibbles_offset, uint32_t nibble_bytes,
                                   int thread, int threads) {
  const ChunkPlan& plan = *v.plan;
  if (thread < kLanes)
    StoreLe16(v.body + kHuffmanPrefixBytes + 2 * thread, plan.lane_words[thread]);
  const int min_symbol = plan.min_symbol;
  const int range = plan.max_symbol - min_symbol + 1;
  for (uint32_t k = thread; k < nibble_bytes; k += threads) {
    const int lo = 2 * static_cast<int>(k);
    const uint32_t a = lo < range ? plan.lengths[min_symbol + lo] : 0;
    const uint32_t h = lo + 1 < range ? plan.lengths[min_symbol + lo + 1] : 0;
    v.body[nibbles_offset + k] = static_cast<uint8_t>(a | h << 4);
  }
}

// sm.entries from the plan's lengths, by one warp.
__device__ void BuildEntriesWarp(const ChunkPlan& plan, WriteShared& sm, int lane) {
  for (int s = lane; s < 256; s += kLanes) sm.lengths[s] = plan.lengths[s];
  __syncwarp();
  CanonicalCodesWarp(sm.lengths, sm.codes, lane);
  __syncwarp();
  for (int s = lane; s < 256; s += kLanes) {
    sm.entries[s] = sm.codes[s] | uint32_t{sm.lengths[s]} << 16;
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

// Once the tile's stage has landed: writes its raw bytes (16-bit dtypes) and completes the stage
// with the elements after its last whole vector (the end of a frame only).
template <int kElementBytes>
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
  const uint8_t* src = v.in + uint64_t{tile_first} * kElementBytes;
  for (uint32_t i = whole * kPerVector + lane; i < tile_n; i += kLanes) {
    const uint32_t x = LoadElement<kElementBytes>(src, i);
    if constexpr (kElementBytes == 2) {
      reinterpret_cast<uint16_t*>(staged)[i] = static_cast<uint16_t>(x);
      raw[tile_first + i] = RawByte16(static_cast<uint16_t>(x));
    } else {
      reinterpret_cast<uint8_t*>(staged)[i] = static_cast<uint8_t>(x);
    }
  }
}

// Warp `segment` encodes its quarter of the chunk into the lanes' streams at `out` (lane l's
// words) and writes its raw bytes. Words wholly inside the segment go straight out; the first
// (if the segment starts inside a word) and the last (if it ends inside one) go to sm.edge_* for
// MergeEdges.
template <int kElementBytes>
__device__ void EncodeSegment(const WriteView& v, WriteShared& sm, uint8_t* raw, uint32_t* out,
                              int segment, int lane) {
  WriteWarpShared& ws = sm.warp[segment];
  const uint32_t first = segment * v.segment_elements;
  const uint32_t end = min(v.n, first + v.segment_elements);
  uint32_t start_bit = 0;
  for (int s = 0; s < segment; ++s) start_bit += v.plan->segment_bits[s][lane];
  uint32_t w = start_bit / 32;  // the word the accumulator fills
  uint32_t pending = start_bit % 32;
  uint64_t acc = 0;
  const uint32_t shared_first = pending != 0 ? w : kNoWord;
  sm.edge_index[segment][0][lane] = kNoWord;
  sm.edge_index[segment][1][lane] = kNoWord;
  constexpr int kBatch = 8;  // steps whose entries are loaded at once
  uint32_t tile = 0;
  for (uint32_t tile_first = first; tile_first < end; tile_first += kTileElements, ++tile) {
    const uint32_t tile_n = min(static_cast<uint32_t>(kTileElements), end - tile_first);
    StageTile<kElementBytes>(v, ws, tile + 2, tile_first + 2 * kTileElements, end, lane);
    CpAsyncWait<2>();  // this lane's copies of this tile have landed...
    __syncwarp();      // ...and everyone's; the previous tile's words are out
    uint4* staged = ws.stage[tile % kStages];
    FinishTile<kElementBytes>(v, raw, staged, tile_first, tile_n, lane);
    __syncwarp();       // the stage is complete
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
        entry[u] = t < tile_n ? sm.entries[CodedOf<kElementBytes>(x)] : 0u;
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        acc |= uint64_t{entry[u] & 0xFFFF} << pending;
        pending += entry[u] >> 16;
        if (pending >= 32) {
          ws.words_out[done++][lane] = static_cast<uint32_t>(acc);
          acc >>= 32;
          pending -= 32;
        }
      }
    }
#pragma unroll
    for (uint32_t u = 0; u < 8; ++u) {
      if (u >= done) continue;
      const uint32_t word = ws.words_out[u][lane];
      if (w + u == shared_first) {
        sm.edge_index[segment][0][lane] = w + u;
        sm.edge_bits[segment][0][lane] = word;
      } else {
        out[w + u] = word;
      }
    }
    w += done;
    __syncwarp();  // the stage is consumed before the next tile's copy may overwrite it
  }
  if (pending > 0) {  // also the first word when the segment completed none
    sm.edge_index[segment][1][lane] = w;
    sm.edge_bits[segment][1][lane] = static_cast<uint32_t>(acc);
  }
}

// Lane l writes the words its segments share, each the OR of every segment's bits in it. Edge
// indices are non-decreasing in (segment, end) order, so equal ones are adjacent.
__device__ void MergeEdges(const WriteShared& sm, uint32_t* out, int lane) {
  uint32_t index = kNoWord;
  uint32_t word = 0;
#pragma unroll
  for (int s = 0; s < kSegments; ++s) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const uint32_t i = sm.edge_index[s][e][lane];
      if (i == kNoWord) continue;
      if (i != index) {
        if (index != kNoWord) out[index] = word;
        index = i;
        word = 0;
      }
      word |= sm.edge_bits[s][e][lane];
    }
  }
  if (index != kNoWord) out[index] = word;
}

// One block of kSegments warps per chunk: writes the body the plan chose.
template <int kElementBytes>
__device__ void WriteChunk(const BatchView& b, WriteShared& sm, uint64_t unit, int warp, int lane) {
  const ItemDesc& it = b.items[FindItem(b.items, b.num_items, unit)];
  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint64_t first = c * chunk_elements;
  const int thread = warp * kLanes + lane;
  WriteView v;
  v.n = static_cast<uint32_t>(Min64(chunk_elements, it.elements - first));
  v.in = it.in + first * kElementBytes;
  v.plan = &b.plans[unit];
  v.body = it.out + kHeaderBytes + kDirEntryBytes * it.num_chunks + v.plan->offset;
  v.segment_elements = static_cast<uint32_t>(chunk_elements / kSegments);
  const ChunkPlan& plan = *v.plan;
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

  // Huffman. Warp 0 builds the code table while the others write the fixed parts; every warp
  // starts staging its first two tiles before the barrier.
  const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
  const uint32_t nibble_bytes =
      static_cast<uint32_t>(NibbleBytes(plan.min_symbol, plan.max_symbol));
  const uint32_t segment_first = warp * v.segment_elements;
  const uint32_t segment_end = min(v.n, segment_first + v.segment_elements);
  StageTile<kElementBytes>(v, sm.warp[warp], 0, segment_first, segment_end, lane);
  StageTile<kElementBytes>(v, sm.warp[warp], 1, segment_first + kTileElements, segment_end, lane);
  if (warp == 0) {
    BuildEntriesWarp(plan, sm, lane);
  } else {
    WriteHuffmanTables(v, nibbles_offset, nibble_bytes, thread - kLanes, kWriteThreads - kLanes);
  }
  const uint32_t words = plan.lane_words[lane];
  uint32_t start = words;
#pragma unroll
  for (int d = 1; d < kLanes; d *= 2) {
    const uint32_t x = __shfl_up_sync(kFullMask, start, d);
    if (lane >= d) start += x;
  }
  start -= words;  // exclusive
  uint32_t* out = reinterpret_cast<uint32_t*>(v.body + nibbles_offset + nibble_bytes) + start;
  __syncthreads();  // sm.entries is complete
  EncodeSegment<kElementBytes>(v, sm, raw, out, warp, lane);
  __syncthreads();  // every segment's edges are in
  if (warp == 0) MergeEdges(sm, out, lane);
}

template <int kElementBytes>
__global__ void __launch_bounds__(kWriteThreads, 8) WriteKernel(BatchView b) {
  __shared__ WriteShared sm;
  WriteChunk<kElementBytes>(b, sm, blockIdx.x, threadIdx.x / kLanes, threadIdx.x % kLanes);
}

template <int kElementBytes>
cudaError_t LaunchEncodeFor(const BatchView& b, cudaStream_t stream) {
  if (b.num_units > 0) {
    PlanKernel<kElementBytes><<<static_cast<unsigned>(b.num_units), kLanes, 0, stream>>>(b);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  ScanKernel<<<b.num_items, kScanThreads, 0, stream>>>(b);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  if (b.num_units > 0) {
    WriteKernel<kElementBytes><<<static_cast<unsigned>(b.num_units), kWriteThreads, 0, stream>>>(b);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchEncode(const BatchView& batch, cudaStream_t stream) {
  return ElementBytes(batch.dtype) == 2 ? LaunchEncodeFor<2>(batch, stream)
                                        : LaunchEncodeFor<1>(batch, stream);
}

}  // namespace kvtier::kvz::gpu
