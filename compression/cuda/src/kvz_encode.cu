// The kvz encoder on the GPU, in three kernels (docs/format.md; the CPU encoder in
// compression/src/chunk_encoder.cc is the reference and writes the same bytes):
// 1. plan, four warps per chunk: histogram, chunk check, code lengths (the shared huffman.h) and
//    codes, the exact size of every lane in each quarter of the chunk, and the body's form;
// 2. scan, one block per frame: body offsets, directory and header;
// 3. write, four warps per chunk: the body at its final place (warp s writes quarter s of every
//    lane's stream).
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

// The plan kernel: one block of kSegments warps per chunk, for the same reason as the write
// kernel below (too few chunks per SM for one warp each to hide its latencies). Four threads
// hash each checksum slice (one XXH64 accumulator each) and count its symbols; warp 0 chooses
// the code; warp s counts the bits of every lane in segment s.
constexpr int kPlanThreads = kSegments * kLanes;
constexpr int kHashersPerSlice = 4;  // one per XXH64 stripe accumulator
static_assert(kPlanThreads == kLanes * kHashersPerSlice);

struct PlanShared {
  union {
    // [symbol / 2][column]: two 16-bit counts per word (symbols 2p and 2p + 1 in row p). Lane l
    // of every warp counts into column l with atomics, so a warp's increments never collide and
    // hit 32 different banks; a column counts at most 2^16 / 32 elements.
    uint32_t hist[128 * kLanes];
    struct {
      uint32_t keys[256];
      uint32_t sorted[256];
      uint32_t work[256];
      uint8_t lengths[256];
      uint16_t codes[256];
    } t;
  };
  uint32_t count[256];
  uint32_t segment_bits[kSegments][kLanes];
  uint64_t digests[kLanes];
  int present;  // symbols present, from warp 0
};

// What every thread of a plan block knows of its chunk.
struct PlanView {
  const uint8_t* in;  // the chunk's elements
  uint32_t n;         // elements
  uint64_t bytes;
  uint64_t chunk_elements;
  int chunk_log2;
};

// Counts `symbol` in histogram column `lane`. An atomic add whose result is unused issues
// without waiting: a plain load-add-store would have to wait for the previous increment's store
// (the next symbol may be the same), chaining every element's shared-memory latency.
__device__ __forceinline__ void CountSymbol(PlanShared& sm, uint32_t symbol, int lane) {
  atomicAdd(&sm.hist[(symbol >> 1) * kLanes + lane], 1u << (16 * (symbol & 1)));
}

// Counts the coded bytes of the elements in the 8 bytes `x`.
template <int kElementBytes>
__device__ __forceinline__ void CountWord(PlanShared& sm, uint64_t x, int lane) {
#pragma unroll
  for (int k = 0; k < 8 / kElementBytes; ++k) {
    const uint32_t e = static_cast<uint32_t>(x >> (8 * kElementBytes * k));
    CountSymbol(sm, CodedOf<kElementBytes>(e & (kElementBytes == 2 ? 0xFFFF : 0xFF)), lane);
  }
}

// One pass over the input: threads 4i..4i+3 hash slice i (docs/format.md), thread 4i+a running
// XXH64's accumulator a over word a of every 32-byte stripe, and count the symbols they read.
// Thread 4i joins the accumulators, hashes and counts the bytes after the last whole stripe and
// leaves the slice digest in sm.digests[i].
template <int kElementBytes>
__device__ void HashAndCount(const PlanView& v, PlanShared& sm, int thread) {
  const int slice = thread / kHashersPerSlice;
  const int a = thread % kHashersPerSlice;
  const int lane = thread % kLanes;
  uint64_t begin, end;
  SliceOf(v.bytes, (v.chunk_elements * kElementBytes) / kLanes, slice, &begin, &end);
  const uint8_t* p = v.in + begin;
  const uint32_t len = static_cast<uint32_t>(end - begin);
  const uint32_t stripes = len / 32;
  const auto* words = reinterpret_cast<const unsigned long long*>(p) + a;
  // XXH64's accumulators start at seed + prime 1 + prime 2, seed + prime 2, seed, seed - prime 1.
  uint64_t acc = a == 0 ? kXxPrime1 + kXxPrime2 : a == 1 ? kXxPrime2 : a == 2 ? 0 : 0 - kXxPrime1;
  // Double-buffered: the next eight words are in flight while these eight are hashed.
  constexpr int kBatch = 8;
  uint64_t x[kBatch];
  auto load = [&](uint32_t s0, uint64_t* dst) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) dst[u] = __ldg(words + 4 * (s0 + u));
  };
  if (stripes >= kBatch) load(0, x);
  uint32_t s = 0;
  for (; s + kBatch <= stripes; s += kBatch) {
    uint64_t next[kBatch];
    const bool more = s + 2 * kBatch <= stripes;
    if (more) load(s + kBatch, next);
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      acc = XxRound(acc, x[u]);
      CountWord<kElementBytes>(sm, x[u], lane);
    }
    if (more) {
#pragma unroll
      for (int u = 0; u < kBatch; ++u) x[u] = next[u];
    }
  }
  for (; s < stripes; ++s) {
    const uint64_t x = __ldg(words + 4 * s);
    acc = XxRound(acc, x);
    CountWord<kElementBytes>(sm, x, lane);
  }
  const int first_lane = lane & ~(kHashersPerSlice - 1);
  const uint64_t v1 = __shfl_sync(kFullMask, acc, first_lane);
  const uint64_t v2 = __shfl_sync(kFullMask, acc, first_lane + 1);
  const uint64_t v3 = __shfl_sync(kFullMask, acc, first_lane + 2);
  const uint64_t v4 = __shfl_sync(kFullMask, acc, first_lane + 3);
  if (a == 0) {
    const uint64_t h = stripes > 0 ? XxConverge(v1, v2, v3, v4) : kXxPrime5;
    sm.digests[slice] = XxFinish<ReadOnlyLoads>(h + len, p + 32 * stripes, p + len);
    // Whole elements: slices start at multiples of 32 bytes.
    for (uint64_t i = (begin + 32 * stripes) / kElementBytes; i < end / kElementBytes; ++i) {
      const uint32_t x = LoadElement<kElementBytes>(v.in, static_cast<uint32_t>(i));
      CountSymbol(sm, CodedOf<kElementBytes>(x), lane);
    }
  }
}

// Thread t sums histogram row t into sm.count (symbols 2t and 2t + 1); the rotation spreads a
// warp's reads over the banks.
__device__ void SumHistogram(PlanShared& sm, int thread) {
  uint32_t even = 0;
  uint32_t odd = 0;
  for (int w = 0; w < kLanes; ++w) {
    const uint32_t pair = sm.hist[thread * kLanes + ((w + thread) & (kLanes - 1))];
    even += pair & 0xFFFF;
    odd += pair >> 16;
  }
  sm.count[2 * thread] = even;
  sm.count[2 * thread + 1] = odd;
}

// Warp 0: the present symbols, their range and, for two or more, the code lengths
// (sm.t.lengths, 0 for absent symbols) by the shared huffman.h; sets sm.present.
__device__ void ChooseLengthsWarp(PlanShared& sm, ChunkPlan& plan, int lane) {
  uint32_t count[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) count[j] = sm.count[lane + kLanes * j];
  int present = 0;
  int min_symbol = 256;
  int max_symbol = -1;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int s = lane + kLanes * j;
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
  if (present >= 2) {
    // Rank sort (keys are distinct), then the shared length construction on one lane.
    for (int i = lane; i < present; i += kLanes) {
      const uint32_t key = sm.t.keys[i];
      int rank = 0;
      for (int j = 0; j < present; ++j) rank += sm.t.keys[j] < key;
      sm.t.sorted[rank] = key;
    }
    __syncwarp();
    if (lane == 0) LengthsFromSorted(sm.t.sorted, present, sm.t.work, sm.t.lengths);
  }
  if (lane == 0) {
    sm.present = present;
    plan.min_symbol = static_cast<uint8_t>(min_symbol);
    plan.max_symbol = static_cast<uint8_t>(max_symbol);
  }
}

// The 16-byte vectors [first, end) of segment `segment` of the chunk.
template <int kElementBytes>
__device__ void SegmentVectors(const PlanView& v, int segment, uint32_t* first, uint32_t* end) {
  constexpr int kPerVectorLog2 = kElementBytes == 2 ? 3 : 4;
  static_assert(kSegments == 4);
  const uint32_t segment_vectors = 1u << (v.chunk_log2 - 2 - kPerVectorLog2);
  *first = segment * segment_vectors;
  *end = min(static_cast<uint32_t>(v.bytes / 16), *first + segment_vectors);
}

constexpr int kCountBatch = 8;  // vectors in flight per thread while counting bits

// Loads this thread's vectors v0, v0 + 32, ... below `end` (zeros past it).
__device__ __forceinline__ void LoadCountBatch(const PlanView& v, uint32_t v0, uint32_t end,
                                               uint4* q) {
  const uint4* in16 = reinterpret_cast<const uint4*>(v.in);
#pragma unroll
  for (int u = 0; u < kCountBatch; ++u) {
    const uint32_t i = v0 + u * kLanes;
    q[u] = i < end ? __ldg(in16 + i) : make_uint4(0, 0, 0, 0);
  }
}

// Warp `segment` adds the bits of every lane in its segment to sm.segment_bits. Lane l's symbols
// are elements l, l + 32, ...; reading 16-byte vectors instead, vector v holds elements of lanes
// (v * kPerVector) % 32 + j, j < kPerVector, and thread t reads vectors v = t (mod 32) from the
// segment's start (a multiple of 32 elements), which all hold the same lanes: it sums their bits
// in registers. The input is read again here, from L2 where it is still there; `q` holds the
// thread's first batch, loaded before the code lengths were known.
template <int kElementBytes>
__device__ void CountSegmentBits(const PlanView& v, PlanShared& sm, int segment, int lane,
                                 uint4* q) {
  constexpr int kPerVector = 16 / kElementBytes;
  uint32_t first, end;
  SegmentVectors<kElementBytes>(v, segment, &first, &end);
  uint32_t part[kPerVector] = {};
  for (uint32_t v0 = first + lane; v0 < end; v0 += kCountBatch * kLanes) {
    if (v0 != first + lane) LoadCountBatch(v, v0, end, q);
#pragma unroll
    for (int u = 0; u < kCountBatch; ++u) {
      if (v0 + u * kLanes >= end) continue;
      const uint32_t w[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
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
    }
  }
  const int lane_base = (lane * kPerVector) % kLanes;
#pragma unroll
  for (int j = 0; j < kPerVector; ++j) {
    atomicAdd(&sm.segment_bits[segment][lane_base + j], part[j]);
  }
  // Elements after the last whole vector (the end of a frame only), by their own lane.
  if (segment == 0) {
    const uint32_t tail = static_cast<uint32_t>(v.bytes / 16) * kPerVector;
    const int segment_log2 = v.chunk_log2 - 2;
    for (uint32_t i = tail + ((lane - tail) % kLanes); i < v.n; i += kLanes) {
      atomicAdd(&sm.segment_bits[i >> segment_log2][lane],
                sm.t.lengths[CodedOf<kElementBytes>(LoadElement<kElementBytes>(v.in, i))]);
    }
  }
}

// Warp 0: the code table the write kernel encodes with, code | length << 16 per symbol.
__device__ void StoreEntriesWarp(PlanShared& sm, ChunkPlan& plan, int lane) {
  CanonicalCodesWarp(sm.t.lengths, sm.t.codes, lane);
  __syncwarp();
  for (int s = lane; s < 256; s += kLanes) {
    plan.entries[s] = sm.t.codes[s] | uint32_t{sm.t.lengths[s]} << 16;
  }
}

template <int kElementBytes>
__device__ void PlanChunk(const BatchView& b, PlanShared& sm, int warp, int lane) {
  const uint64_t unit = blockIdx.x;
  const ItemDesc& it = b.items[FindItem(b.items, b.num_items, unit)];
  const uint64_t c = unit - it.first_unit;
  const int thread = warp * kLanes + lane;
  PlanView v;
  v.chunk_log2 = b.chunk_log2;
  v.chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint64_t first = c * v.chunk_elements;
  v.n = static_cast<uint32_t>(Min64(v.chunk_elements, it.elements - first));
  v.in = it.in + first * kElementBytes;
  v.bytes = uint64_t{v.n} * kElementBytes;
  ChunkPlan& plan = b.plans[unit];

  for (int i = thread; i < 128 * kLanes; i += kPlanThreads) sm.hist[i] = 0;
  if (thread < kSegments * kLanes) (&sm.segment_bits[0][0])[thread] = 0;
  __syncthreads();
  HashAndCount<kElementBytes>(v, sm, thread);
  __syncthreads();  // the histogram and the digests are complete
  SumHistogram(sm, thread);
  __syncthreads();
  // This warp's first vectors for counting bits, in flight while warp 0 chooses the lengths.
  uint4 q[kCountBatch];
  uint32_t segment_first, segment_end;
  SegmentVectors<kElementBytes>(v, warp, &segment_first, &segment_end);
  LoadCountBatch(v, segment_first + lane, segment_end, q);
  if (warp == 0) ChooseLengthsWarp(sm, plan, lane);
  __syncthreads();
  const int present = sm.present;
  if (present >= 2) {
    CountSegmentBits<kElementBytes>(v, sm, warp, lane, q);
    if (warp == 0) StoreEntriesWarp(sm, plan, lane);
    __syncthreads();
  }
  if (warp != 0) return;

  // Warp 0 chooses the form from the exact sizes.
  const uint32_t raw_bytes = v.n * (kElementBytes - 1);
  const uint32_t stored_size = static_cast<uint32_t>(RoundUp4(v.bytes));
  uint8_t kind = 0;
  uint32_t size = stored_size;
  uint32_t words = 0;
  if (present == 1) {
    const uint32_t constant_size = static_cast<uint32_t>(RoundUp4(kConstantRawOffset + raw_bytes));
    if (constant_size < stored_size) {
      kind = kKindConstant;
      size = constant_size;
    }
  } else if (present >= 2) {
    uint32_t bits = 0;
    for (int s = 0; s < kSegments; ++s) {
      bits += sm.segment_bits[s][lane];
      plan.segment_bits[s][lane] = static_cast<uint16_t>(sm.segment_bits[s][lane]);
    }
    words = (bits + 31) / 32;
    uint32_t total_words = words;
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) total_words += __shfl_xor_sync(kFullMask, total_words, d);
    const uint32_t huffman_size =
        static_cast<uint32_t>(kHuffmanRawOffset + RoundUp4(raw_bytes) +
                              NibbleBytes(plan.min_symbol, plan.max_symbol)) +
        4 * total_words;
    if (huffman_size < stored_size) {
      kind = kKindHuffman;
      size = huffman_size;
    }
  }
  plan.lane_words[lane] = static_cast<uint16_t>(words);
  if (lane == 0) {
    plan.body_bytes = size;
    plan.check = static_cast<uint32_t>(
        Xxh64With<DeviceLoads>(reinterpret_cast<const uint8_t*>(sm.digests), 8 * kLanes, c));
    plan.kind = kind;
  }
}

template <int kElementBytes>
__global__ void __launch_bounds__(kPlanThreads, 8) PlanKernel(BatchView b) {
  __shared__ PlanShared sm;
  PlanChunk<kElementBytes>(b, sm, threadIdx.x / kLanes, threadIdx.x % kLanes);
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
  uint32_t entries[256];  // ChunkPlan::entries
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
      for (int u = 0; u < kBatch; u += 2) {
        // Two codes joined first (at most 22 bits, so at most one word completes), off the
        // accumulator's chain of dependent instructions.
        const uint32_t first_length = entry[u] >> 16;
        const uint32_t code = (entry[u] & 0xFFFF) | (entry[u + 1] & 0xFFFF) << first_length;
        acc |= uint64_t{code} << pending;
        pending += first_length + (entry[u + 1] >> 16);
        if (pending >= 32) {
          ws.words_out[done++][lane] = static_cast<uint32_t>(acc);
          acc >>= 32;
          pending -= 32;
        }
      }
    }
#pragma unroll
    for (uint32_t u = 0; u < 8; ++u) {
      if (u < done && w + u != shared_first) out[w + u] = ws.words_out[u][lane];
    }
    if (shared_first - w < done) {  // unsigned: false for kNoWord and words before w
      sm.edge_index[segment][0][lane] = shared_first;
      sm.edge_bits[segment][0][lane] = ws.words_out[shared_first - w][lane];
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

  // Huffman: every warp starts staging its first two tiles before the code table is in.
  const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
  const uint32_t nibble_bytes =
      static_cast<uint32_t>(NibbleBytes(plan.min_symbol, plan.max_symbol));
  const uint32_t segment_first = warp * v.segment_elements;
  const uint32_t segment_end = min(v.n, segment_first + v.segment_elements);
  StageTile<kElementBytes>(v, sm.warp[warp], 0, segment_first, segment_end, lane);
  StageTile<kElementBytes>(v, sm.warp[warp], 1, segment_first + kTileElements, segment_end, lane);
  for (int s = thread; s < 256; s += kWriteThreads) sm.entries[s] = plan.entries[s];
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
    PlanKernel<kElementBytes><<<static_cast<unsigned>(b.num_units), kPlanThreads, 0, stream>>>(b);
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
