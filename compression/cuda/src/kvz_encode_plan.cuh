// The kvz GPU encoder's plan of one chunk (internal to kvz_encode.cu and kvz_encode_fused.cu):
// histogram and chunk check in one pass, code lengths (the same as huffman.h's) and codes, each
// lane's bits per quarter of the chunk, and the body's form and size, by one block of
// kSegments warps. The chunk is read from global memory (GlobalInput) or shared memory
// (SharedInput).
#pragma once

#include "huffman.h"
#include "kvz_device.cuh"

namespace kvtier::kvz::gpu {
// Internal to the encoder's .cu files: each gets its own copy.
namespace {

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
  static constexpr bool kSkewed = false;
  __device__ static uint64_t Word(const uint64_t* p) {
    return __ldg(reinterpret_cast<const unsigned long long*>(p));
  }
  __device__ static uint4 Vector(const uint4* p) { return __ldg(p); }
};
struct SharedInput {
  using Loads = DeviceLoads;
  // Slices are a multiple of 128 bytes apart, so the threads hashing four slices at the same
  // stripe would hit the same banks (a 4-way conflict per 64-bit load); slice i's hashers run
  // i % 4 stripes behind, which spreads a half-warp's loads over all 32 banks.
  static constexpr bool kSkewed = true;
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
  uint64_t acc = XxQuadStart(a);
  // Double-buffered: the next eight words are in flight while these eight are hashed.
  constexpr int kBatch = 8;
  uint64_t x[kBatch];
  auto load = [&](uint32_t s0, uint64_t* dst) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) dst[u] = Input::Word(words + 4 * (s0 + u));
  };
  uint32_t s = 0;
  if constexpr (Input::kSkewed) {
    const uint32_t delay = slice % 4;
#pragma unroll 4
    for (uint32_t k = 0; k < stripes + 3; ++k) {
      const uint32_t t = k - delay;  // wraps below 0: skipped
      if (t < stripes) {
        const uint64_t w = Input::Word(words + 4 * t);
        acc = XxRound(acc, w);
        CountWord<kElementBytes>(sm, w, lane);
      }
    }
    s = stripes;
  }
  if (!Input::kSkewed && stripes >= kBatch) load(0, x);
  for (; !Input::kSkewed && s + kBatch <= stripes; s += kBatch) {
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
  static_assert(kHashersPerSlice == 4);
  const uint64_t digest = XxQuadDigest<typename Input::Loads>(acc, p, len, stripes, lane);
  if (a == 0) {
    sm.digests[slice] = digest;
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
// values, `per_depth` 32; all are the warp's shared memory (`depths` is the merge's scratch
// before it holds depths). The single-lane version kept the
// plan's other warps waiting at a barrier for a third of their time (docs/compression.md).
__device__ void LengthsFromSortedWarp(const uint32_t* sorted, int n, uint32_t* work,
                                      uint32_t* depths, uint32_t* per_depth, uint8_t* lengths,
                                      int lane) {
  if (lane == 0) HuffmanParents(sorted, n, work, depths);  // depths: scratch until below
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
    plan.check = ChunkCheckOf(sm.digests, c);
  }
  __syncthreads();
  const int present = sm.present;
  if (present >= 2) {
    CountSegmentBits<kElementBytes, Input>(v, sm, warp, lane, q);
    __syncthreads();
  }
  // Warp 0 chooses the form (and the fused path then places the body) while warp 1 builds the
  // codes, which only the write needs: the codes are off the critical path. The caller
  // synchronises before the write.
  if (warp == 0) {
    ChooseFormWarp<kElementBytes>(v, sm, plan, present, lane);
  } else if (warp == 1 && present >= 2) {
    StoreEntriesWarp(sm, plan, lane);
  }
}

}  // namespace
}  // namespace kvtier::kvz::gpu
