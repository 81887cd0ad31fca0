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
#include <cuda/atomic>

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

// Columns of the plan's histogram: 16 rather than one per lane, so that the fused kernel fits five
// blocks per SM (lanes l and l + 16 then share a column).
constexpr int kHistColumns = 16;

struct PlanShared {
  union {
    // [symbol / 2][column]: two 16-bit counts per word (symbols 2p and 2p + 1 in row p). Lane l
    // of every warp counts into column l % kHistColumns with atomics, so that few of a warp's
    // increments collide; a column counts at most 2^16 / kHistColumns elements.
    uint32_t hist[128 * kHistColumns];
    struct {
      uint32_t keys[256];  // then LengthsFromSortedWarp's depths
      uint32_t sorted[256];
      uint32_t work[256];
      uint32_t per_depth[32];
      uint8_t lengths[256];
      uint16_t codes[256];
    } t;
  };
  uint32_t count[256];
  uint32_t segment_bits[kSegments][kLanes];
  uint64_t digests[kLanes];
  int present;  // symbols present, from warp 0
};

// Where the plan reads a chunk from: global memory (three-kernel path: the read-only path,
// loads batched ahead of use) or shared memory (fused path: the chunk staged once).
struct GlobalInput {
  using Loads = ReadOnlyLoads;
  __device__ static uint64_t Word(const uint64_t* p) {
    return __ldg(reinterpret_cast<const unsigned long long*>(p));
  }
  __device__ static uint4 Vector(const uint4* p) { return __ldg(p); }
};
struct SharedInput {
  using Loads = DeviceLoads;
  __device__ static uint64_t Word(const uint64_t* p) { return *p; }
  __device__ static uint4 Vector(const uint4* p) { return *p; }
};

// What every thread of a plan block knows of its chunk.
struct PlanView {
  const uint8_t* in;  // the chunk's elements (global or shared memory, see the Input policy)
  uint32_t n;         // elements
  uint64_t bytes;
  uint64_t chunk_elements;
  int chunk_log2;
};

// Counts `symbol` in histogram column `lane`. An atomic add whose result is unused issues
// without waiting: a plain load-add-store would have to wait for the previous increment's store
// (the next symbol may be the same), chaining every element's shared-memory latency.
__device__ __forceinline__ void CountSymbol(PlanShared& sm, uint32_t symbol, int lane) {
  atomicAdd(&sm.hist[(symbol >> 1) * kHistColumns + lane % kHistColumns],
            1u << (16 * (symbol & 1)));
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
template <int kElementBytes, typename Input>
__device__ void HashAndCount(const PlanView& v, PlanShared& sm, int thread) {
  const int slice = thread / kHashersPerSlice;
  const int a = thread % kHashersPerSlice;
  const int lane = thread % kLanes;
  uint64_t begin, end;
  SliceOf(v.bytes, (v.chunk_elements * kElementBytes) / kLanes, slice, &begin, &end);
  const uint8_t* p = v.in + begin;
  const uint32_t len = static_cast<uint32_t>(end - begin);
  const uint32_t stripes = len / 32;
  const auto* words = reinterpret_cast<const uint64_t*>(p) + a;
  // XXH64's accumulators start at seed + prime 1 + prime 2, seed + prime 2, seed, seed - prime 1.
  uint64_t acc = a == 0 ? kXxPrime1 + kXxPrime2 : a == 1 ? kXxPrime2 : a == 2 ? 0 : 0 - kXxPrime1;
  // Double-buffered: the next eight words are in flight while these eight are hashed.
  constexpr int kBatch = 8;
  uint64_t x[kBatch];
  auto load = [&](uint32_t s0, uint64_t* dst) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) dst[u] = Input::Word(words + 4 * (s0 + u));
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
    const uint64_t x = Input::Word(words + 4 * s);
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
    sm.digests[slice] = XxFinish<typename Input::Loads>(h + len, p + 32 * stripes, p + len);
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
  for (int w = 0; w < kHistColumns; ++w) {
    const uint32_t pair = sm.hist[thread * kHistColumns + ((w + thread) & (kHistColumns - 1))];
    even += pair & 0xFFFF;
    odd += pair >> 16;
  }
  sm.count[2 * thread] = even;
  sm.count[2 * thread + 1] = odd;
}

// The code lengths of LengthsFromSorted (huffman.h) for the n >= 2 sorted keys `sorted`, by a
// warp: only Moffat-Katajainen's merge (HuffmanParents) runs on one lane; the internal nodes'
// depths are found by pointer jumping, the code counts per length by a warp-wide count, and the
// lengths handed out to the sorted symbols by every lane at once. `work` and `depths` hold n
// values, `per_depth` 32; all are the warp's shared memory. The single-lane version kept the
// plan's other warps waiting at a barrier for a third of their time (docs/compression.md).
__device__ void LengthsFromSortedWarp(const uint32_t* sorted, int n, uint32_t* work,
                                      uint32_t* depths, uint32_t* per_depth, uint8_t* lengths,
                                      int lane) {
  if (lane == 0) HuffmanParents(sorted, n, work);
  per_depth[lane] = 0;
  __syncwarp();
  // Internal node i < m (root m - 1): its ancestor p (the root stays its own) and the depth d
  // from it. Five doublings reach 32 levels; a code of at most 2^16 symbols is at most 23 deep.
  const int m = n - 1;
  uint32_t p[8];
  uint32_t d[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int i = lane + kLanes * j;
    p[j] = i < m - 1 ? work[i] : static_cast<uint32_t>(m - 1);
    d[j] = i < m - 1 ? 1 : 0;
  }
  for (int round = 0; round < 5; ++round) {
    __syncwarp();  // everyone has read the previous round's values
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int i = lane + kLanes * j;
      if (i < m) {
        work[i] = p[j];
        depths[i] = d[j];
      }
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (lane + kLanes * j < m) {
        d[j] += depths[p[j]];
        p[j] = work[p[j]];
      }
    }
  }
  // Internal nodes per depth; a depth with `used` internal nodes below 2 * (internal nodes one
  // level up) places the rest as leaves (Moffat-Katajainen's phase 3 in counts).
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (lane + kLanes * j < m) atomicAdd(&per_depth[d[j]], 1u);
  }
  __syncwarp();
  const uint32_t used = per_depth[lane];
  const uint32_t above = __shfl_up_sync(kFullMask, used, 1);
  const uint32_t available = lane == 0 ? 1 : 2 * above;
  const uint32_t leaves = available - used;
  const int max_depth = 31 - __clz(__ballot_sync(kFullMask, leaves > 0));
  __syncwarp();
  per_depth[lane] = leaves;
  __syncwarp();
  if (lane == 0) LimitLengths(per_depth, max_depth);
  __syncwarp();
  // The longest codes go to the first (least frequent) keys.
  uint32_t first_of[kMaxCodeLength + 1];  // first sorted position of each length
  uint32_t position = 0;
#pragma unroll
  for (int len = kMaxCodeLength; len >= 1; --len) {
    first_of[len] = position;
    position += per_depth[len];
  }
  for (int i = lane; i < n; i += kLanes) {
    // The shortest length starting at or before i: longer ones start earlier, and an empty
    // length starts where the next shorter one does.
    uint32_t len = 0;
#pragma unroll
    for (int l = kMaxCodeLength; l >= 1; --l) {
      if (static_cast<uint32_t>(i) >= first_of[l]) len = l;
    }
    lengths[sorted[i] & 0xFF] = static_cast<uint8_t>(len);
  }
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
    LengthsFromSortedWarp(sm.t.sorted, present, sm.t.work, sm.t.keys, sm.t.per_depth, sm.t.lengths,
                          lane);
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
template <typename Input>
__device__ __forceinline__ void LoadCountBatch(const PlanView& v, uint32_t v0, uint32_t end,
                                               uint4* q) {
  const uint4* in16 = reinterpret_cast<const uint4*>(v.in);
#pragma unroll
  for (int u = 0; u < kCountBatch; ++u) {
    const uint32_t i = v0 + u * kLanes;
    q[u] = i < end ? Input::Vector(in16 + i) : make_uint4(0, 0, 0, 0);
  }
}

// Warp `segment` adds the bits of every lane in its segment to sm.segment_bits. Lane l's symbols
// are elements l, l + 32, ...; reading 16-byte vectors instead, vector v holds elements of lanes
// (v * kPerVector) % 32 + j, j < kPerVector, and thread t reads vectors v = t (mod 32) from the
// segment's start (a multiple of 32 elements), which all hold the same lanes: it sums their bits
// in registers. The input is read again here, from L2 where it is still there; `q` holds the
// thread's first batch, loaded before the code lengths were known.
template <int kElementBytes, typename Input>
__device__ void CountSegmentBits(const PlanView& v, PlanShared& sm, int segment, int lane,
                                 uint4* q) {
  constexpr int kPerVector = 16 / kElementBytes;
  uint32_t first, end;
  SegmentVectors<kElementBytes>(v, segment, &first, &end);
  uint32_t part[kPerVector] = {};
  for (uint32_t v0 = first + lane; v0 < end; v0 += kCountBatch * kLanes) {
    if (v0 != first + lane) LoadCountBatch<Input>(v, v0, end, q);
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

// Warp 0: the body's form from the exact sizes (stored, constant or Huffman), the lanes' word
// counts and segment bits, and the body's size.
template <int kElementBytes>
__device__ void ChooseFormWarp(const PlanView& v, const PlanShared& sm, ChunkPlan& plan,
                               int present, int lane) {
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
    plan.kind = kind;
  }
}

// Chunk `c` of item `it` as the plan sees it, its elements at `in` (global or shared memory).
template <int kElementBytes>
__device__ PlanView ChunkView(const ItemDesc& it, uint64_t c, int chunk_log2, const uint8_t* in) {
  PlanView v;
  v.chunk_log2 = chunk_log2;
  v.chunk_elements = uint64_t{1} << chunk_log2;
  v.n = static_cast<uint32_t>(Min64(v.chunk_elements, it.elements - c * v.chunk_elements));
  v.in = in;
  v.bytes = uint64_t{v.n} * kElementBytes;
  return v;
}

// The whole plan of one chunk, by a block of kPlanThreads threads: `plan` gets the chunk's
// form, codes, lane sizes and check. Each warp reads only its quarter of the chunk until the
// histogram is complete; `input_ready` runs before it does (the fused path waits there for
// its copy into shared memory).
template <int kElementBytes, typename Input, typename InputReady>
__device__ void PlanPhases(const PlanView& v, PlanShared& sm, ChunkPlan& plan, uint64_t c, int warp,
                           int lane, InputReady&& input_ready) {
  const int thread = warp * kLanes + lane;
  for (int i = thread; i < 128 * kHistColumns; i += kPlanThreads) sm.hist[i] = 0;
  if (thread < kSegments * kLanes) (&sm.segment_bits[0][0])[thread] = 0;
  __syncthreads();
  input_ready();
  HashAndCount<kElementBytes, Input>(v, sm, thread);
  __syncthreads();  // the histogram and the digests are complete
  SumHistogram(sm, thread);
  __syncthreads();
  // This warp's first vectors for counting bits, in flight while warp 0 chooses the lengths.
  uint4 q[kCountBatch];
  uint32_t segment_first, segment_end;
  SegmentVectors<kElementBytes>(v, warp, &segment_first, &segment_end);
  LoadCountBatch<Input>(v, segment_first + lane, segment_end, q);
  if (warp == 0) {
    ChooseLengthsWarp(sm, plan, lane);
  } else if (warp == 1 && lane == 0) {  // the chunk check, while warp 0 is busy
    plan.check = static_cast<uint32_t>(
        Xxh64With<DeviceLoads>(reinterpret_cast<const uint8_t*>(sm.digests), 8 * kLanes, c));
  }
  __syncthreads();
  const int present = sm.present;
  if (present >= 2) {
    CountSegmentBits<kElementBytes, Input>(v, sm, warp, lane, q);
    if (warp == 0) StoreEntriesWarp(sm, plan, lane);
    __syncthreads();
  }
  if (warp == 0) ChooseFormWarp<kElementBytes>(v, sm, plan, present, lane);
}

template <int kElementBytes>
__device__ void PlanChunk(const BatchView& b, PlanShared& sm, int warp, int lane) {
  const uint64_t unit = blockIdx.x;
  const ItemDesc& it = b.items[FindItem(b.items, b.num_items, unit)];
  const uint64_t c = unit - it.first_unit;
  const uint64_t first = c << b.chunk_log2;
  const PlanView v = ChunkView<kElementBytes>(it, c, b.chunk_log2, it.in + first * kElementBytes);
  PlanPhases<kElementBytes, GlobalInput>(v, sm, b.plans[unit], c, warp, lane, [] {});
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

template <int kElementBytes>
__global__ void __launch_bounds__(kWriteThreads, 8) WriteKernel(BatchView b) {
  __shared__ WriteShared sm;
  const int warp = threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  const uint64_t unit = blockIdx.x;
  const ItemDesc& it = b.items[FindItem(b.items, b.num_items, unit)];
  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  WriteView v;
  v.n = static_cast<uint32_t>(Min64(chunk_elements, it.elements - c * chunk_elements));
  v.in = it.in + c * chunk_elements * kElementBytes;
  v.plan = &b.plans[unit];
  v.body = it.out + kHeaderBytes + kDirEntryBytes * it.num_chunks + v.plan->offset;
  v.segment_elements = static_cast<uint32_t>(chunk_elements / kSegments);
  StreamedTiles<kElementBytes> tiles{sm, v, warp, lane};
  WriteBody<kElementBytes>(v, *v.plan, sm.edges, tiles, warp, lane);
}

// The fused encoder: one block of kSegments warps per chunk plans and writes it, reading the
// chunk from global memory once. Blocks take chunks in order from a counter, so a chunk's
// predecessors have all started; it finds its body's offset by a decoupled look-back over
// their published sizes (LookBackWarp) and writes its body, directory entry and, for a frame's
// last chunk, the header.
struct FusedShared {
  PlanShared plan_sm;  // its histogram is the warps' words_out buffers once the plan is done
  ChunkPlan plan;
  SegmentEdges edges;
  uint64_t unit;
  uint32_t item;
  uint32_t offset;
  // The chunk follows, 16-byte aligned: kFusedMaxChunkBytes at most.
};
static_assert(sizeof(PlanShared::hist) >= kSegments * 8 * kLanes * sizeof(uint32_t));

// Look-back states, one word per chunk: the flag in the high half, a byte count in the low.
constexpr uint64_t kLookBackAggregate = uint64_t{1} << 32;  // the chunk's own body size
constexpr uint64_t kLookBackPrefix = uint64_t{2} << 32;     // bodies up to and with the chunk

__device__ __forceinline__ void StoreState(uint64_t* state, uint64_t value) {
  cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*state).store(value,
                                                                      cuda::memory_order_relaxed);
}

// Warp 0: the offset of chunk `unit`'s body in its frame (whose first chunk is `first_unit`),
// after publishing its own `size`. Lane l reads the state of the chunk l + 1 back, waits until
// it has one and stops the window at the nearest prefix; 32 predecessors are read at once.
// The states carry their whole meaning, so relaxed atomics suffice.
__device__ uint32_t LookBackWarp(uint64_t* states, uint64_t unit, uint64_t first_unit,
                                 uint32_t size, int lane) {
  if (lane == 0) {
    StoreState(&states[unit], (unit == first_unit ? kLookBackPrefix : kLookBackAggregate) | size);
  }
  uint32_t exclusive = 0;
  for (uint64_t window_end = unit; window_end > first_unit; window_end -= kLanes) {
    uint64_t state = kLookBackPrefix;  // before the frame: a prefix of 0
    if (window_end >= first_unit + 1 + lane) {
      cuda::atomic_ref<uint64_t, cuda::thread_scope_device> ref(states[window_end - 1 - lane]);
      while ((state = ref.load(cuda::memory_order_relaxed)) >> 32 == 0) {
      }
    }
    const unsigned prefixes = __ballot_sync(kFullMask, state >> 32 == kLookBackPrefix >> 32);
    const int stop = prefixes != 0 ? __ffs(prefixes) - 1 : kLanes - 1;
    exclusive += __reduce_add_sync(kFullMask, lane <= stop ? static_cast<uint32_t>(state) : 0u);
    if (prefixes != 0) break;
  }
  if (lane == 0 && unit != first_unit) {
    StoreState(&states[unit], kLookBackPrefix | (exclusive + size));
  }
  return exclusive;
}

// FindItem by a warp: a 32-way search, three dependent loads for 2^15 items instead of 15.
__device__ uint32_t FindItemWarp(const ItemDesc* items, uint32_t n, uint64_t unit, int lane) {
  uint32_t lo = 0;  // the answer is in [lo, hi]
  uint32_t hi = n - 1;
  while (lo < hi) {
    const uint32_t step = (hi - lo) / kLanes + 1;
    const uint32_t i = lo + lane * step;
    const bool at_or_before = i <= hi && items[i].first_unit <= unit;
    // first_unit never decreases, so the lanes at or before the unit come first; lane 0's
    // item (lo) always is.
    const int last = 31 - __clz(__ballot_sync(kFullMask, at_or_before));
    lo += last * step;
    hi = min(hi, lo + step - 1);
  }
  return lo;
}

// The unit with ticket 0 writes the headers of empty frames (no chunks, so no other block).
__device__ void WriteEmptyFrames(const BatchView& b, int thread) {
  for (uint32_t i = thread; i < b.num_items; i += kPlanThreads) {
    const ItemDesc& it = b.items[i];
    if (it.num_chunks != 0) continue;
    WriteHeaderBytes<DeviceLoads>(b.dtype, b.chunk_log2, 0, kHeaderBytes, it.out);
    b.frame_sizes[i] = kHeaderBytes;
  }
}

template <int kElementBytes>
__global__ void __launch_bounds__(kPlanThreads, 5) FusedEncodeKernel(BatchView b) {
  static_assert(kPlanThreads == kWriteThreads);
  extern __shared__ uint4 fused_shared[];
  FusedShared& sm = *reinterpret_cast<FusedShared*>(fused_shared);
  uint4* chunk = fused_shared + (sizeof(FusedShared) + 15) / 16;
  const int warp = threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  const int thread = threadIdx.x;

  if (thread == 0) {
    sm.unit = atomicAdd(reinterpret_cast<unsigned long long*>(&b.lookback[b.num_units]), 1ull);
  }
  __syncthreads();
  const uint64_t unit = sm.unit;
  if (unit == 0) WriteEmptyFrames(b, thread);
  if (unit >= b.num_units) return;
  if (warp == 0) {
    const uint32_t found = FindItemWarp(b.items, b.num_items, unit, lane);
    if (lane == 0) sm.item = found;
  }
  __syncthreads();
  const uint32_t item = sm.item;
  const ItemDesc& it = b.items[item];
  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint8_t* src = it.in + c * chunk_elements * kElementBytes;
  const PlanView pv =
      ChunkView<kElementBytes>(it, c, b.chunk_log2, reinterpret_cast<const uint8_t*>(chunk));

  // Warp s copies quarter s of the chunk, the part it plans alone until the histogram is done.
  const uint32_t quarter = static_cast<uint32_t>(chunk_elements * kElementBytes / kSegments);
  const uint32_t whole = static_cast<uint32_t>(pv.bytes / 16);
  const uint32_t quarter_end = min(whole, (warp + 1) * quarter / 16);
  const uint4* src16 = reinterpret_cast<const uint4*>(src);
  for (uint32_t i = warp * quarter / 16 + lane; i < quarter_end; i += kLanes) {
    CpAsync16(chunk + i, src16 + i);
  }
  CpAsyncCommit();
  const uint32_t tail = static_cast<uint32_t>(pv.bytes % 16);  // the end of a frame only
  if (tail != 0 && whole * 16 / quarter == static_cast<uint32_t>(warp) && lane < tail) {
    reinterpret_cast<uint8_t*>(chunk)[whole * 16 + lane] = src[whole * 16 + lane];
  }
  PlanPhases<kElementBytes, SharedInput>(pv, sm.plan_sm, sm.plan, c, warp, lane, [] {
    CpAsyncWait<0>();
    __syncwarp();
  });

  // Warp 0 places the body; then everyone writes it.
  if (warp == 0) {
    __syncwarp();  // the plan's body size and check are in
    const uint32_t size = sm.plan.body_bytes;
    const uint32_t offset = LookBackWarp(b.lookback, unit, it.first_unit, size, lane);
    if (lane == 0) {
      sm.offset = offset;
      uint8_t* dir = it.out + kHeaderBytes + kDirEntryBytes * c;
      StoreLe32(dir, offset + size);
      StoreLe32(dir + 4, sm.plan.check);
      if (c + 1 == it.num_chunks) {
        const uint64_t frame_bytes = kHeaderBytes + kDirEntryBytes * it.num_chunks + offset + size;
        WriteHeaderBytes<DeviceLoads>(b.dtype, b.chunk_log2, it.elements, frame_bytes, it.out);
        b.frame_sizes[item] = frame_bytes;
      }
    }
  }
  __syncthreads();
  WriteView v;
  v.n = pv.n;
  v.in = reinterpret_cast<const uint8_t*>(chunk);
  v.plan = &sm.plan;
  v.body = it.out + kHeaderBytes + kDirEntryBytes * it.num_chunks + sm.offset;
  v.segment_elements = static_cast<uint32_t>(chunk_elements / kSegments);
  auto* words_out = reinterpret_cast<uint32_t(*)[kLanes]>(sm.plan_sm.hist) + 8 * warp;
  ResidentTiles<kElementBytes> tiles{chunk, words_out, v, lane};
  WriteBody<kElementBytes>(v, sm.plan, sm.edges, tiles, warp, lane);
}

template <int kElementBytes>
cudaError_t LaunchFusedEncode(const BatchView& b, cudaStream_t stream) {
  const size_t chunk_bytes = (size_t{1} << b.chunk_log2) * kElementBytes;
  const size_t smem = (sizeof(FusedShared) + 15) / 16 * 16 + chunk_bytes;
  if (cudaError_t e =
          cudaFuncSetAttribute(FusedEncodeKernel<kElementBytes>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      e != cudaSuccess) {
    return e;
  }
  if (cudaError_t e = cudaMemsetAsync(b.lookback, 0, (b.num_units + 1) * sizeof(uint64_t), stream);
      e != cudaSuccess) {
    return e;
  }
  const unsigned blocks = static_cast<unsigned>(b.num_units > 0 ? b.num_units : 1);
  FusedEncodeKernel<kElementBytes><<<blocks, kPlanThreads, smem, stream>>>(b);
  return cudaGetLastError();
}

template <int kElementBytes>
cudaError_t LaunchEncodeFor(const BatchView& b, cudaStream_t stream) {
  if (UsesFusedEncoder(b.chunk_log2, kElementBytes))
    return LaunchFusedEncode<kElementBytes>(b, stream);
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
