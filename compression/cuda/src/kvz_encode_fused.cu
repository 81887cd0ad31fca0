// The kvz GPU encoder in one kernel, for chunks of kFusedMinChunkBytes to kFusedMaxChunkBytes
// (kvz_kernels.h): one block of kSegments warps per chunk copies the chunk into shared memory,
// plans it (kvz_encode_plan.cuh), places its body after its predecessors' by a decoupled
// look-back, and writes it (kvz_encode_write.cuh). The input is read from global memory once,
// against twice for the three-kernel path in kvz_encode.cu.
#include <cuda/atomic>

#include "header_bytes.h"
#include "kvz_encode_write.cuh"

namespace kvtier::kvz::gpu {
namespace {

// The fused encoder: one block of kSegments warps per chunk plans and writes it, reading the
// chunk from global memory once. Blocks take chunks in order from a counter, so a chunk's
// predecessors have all started; it finds its body's offset by a decoupled look-back over
// their published sizes (LookBackWarp) and writes its body, directory entry and, for a frame's
// last chunk, the header.
struct FusedShared {
  // Once the plan is done, its histogram holds the warps' words_out buffers and, after them,
  // the write's SegmentEdges (WriteSpace).
  PlanShared plan_sm;
  ChunkPlan plan;
  uint64_t unit;
  uint32_t item;
  uint32_t offset;
  // The chunk follows, 16-byte aligned: kFusedMaxChunkBytes at most.
};
constexpr size_t kWordsOutBytes = kSegments * 8 * kLanes * sizeof(uint32_t);
static_assert(sizeof(PlanShared::hist) >= kWordsOutBytes + sizeof(SegmentEdges));

// Five blocks per SM, which the 16-column histogram was made for. An H100 SM has 228 KiB of
// shared memory and reserves 1 KiB per block; the edges once had a field of their own here,
// which left room for four. Measured (docs/compression.md): five give 2-4% more than four, and
// each chunk takes 20% longer, so the SM is near its throughput, not waiting on latencies.
constexpr int kFusedBlocksPerSm = 5;
constexpr size_t kFusedSharedBytes = (sizeof(FusedShared) + 15) / 16 * 16 + kFusedMaxChunkBytes;
static_assert(kFusedBlocksPerSm * (kFusedSharedBytes + 1024) <= 228 * 1024,
              "the fused encoder's shared memory no longer fits five blocks per SM");

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

// The unit with ticket 0 writes the headers of empty frames (no chunks, so no other block).
__device__ void WriteEmptyFrames(const BatchView& b, int thread) {
  for (uint32_t i = thread; i < b.num_items; i += kPlanThreads) {
    const ItemDesc& it = b.items[i];
    if (it.num_chunks != 0) continue;
    WriteHeaderBytes<DeviceLoads>(b.dtype, b.chunk_log2, 0, kHeaderBytes, it.out);
    b.frame_sizes[i] = kHeaderBytes;
  }
}

// The end of every block: the one that finishes the batch last clears the look-back states,
// the chunk counter and the count of finished blocks, so that the next batch on the stream
// finds them zero without a step of its own. Every other block is done with them by then: a
// block counts itself only after its look-back, and no block reads another's state later.
// `last` is a word of the block's shared memory that nothing needs any more.
// With b.epoch_done, the last block then publishes b.epoch there, for the batch that uses
// these words next.
__device__ void ClearIfLast(const BatchView& b, uint32_t* last) {
  __syncthreads();
  uint64_t* const done = &b.lookback[b.num_units + 1];
  if (threadIdx.x == 0) {
    __threadfence();
    *last = atomicAdd(reinterpret_cast<unsigned long long*>(done), 1ull) == gridDim.x - 1 ? 1 : 0;
  }
  __syncthreads();
  if (*last == 0) return;
  __threadfence();
  for (uint64_t i = threadIdx.x; i < b.num_units + 2; i += blockDim.x) b.lookback[i] = 0;
  __threadfence();  // every thread's zeros, before thread 0 publishes the epoch
  __syncthreads();
  if (threadIdx.x == 0) PublishEpoch(b);
}

template <int kElementBytes>
__device__ __forceinline__ void EncodeChunkBlock(const BatchView& b) {
  static_assert(kPlanThreads == kWriteThreads);
  extern __shared__ uint4 fused_shared[];
  FusedShared& sm = *reinterpret_cast<FusedShared*>(fused_shared);
  uint4* chunk = fused_shared + (sizeof(FusedShared) + 15) / 16;
  const int warp = threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  const int thread = threadIdx.x;

  if (thread == 0) {
    WaitForEpoch(b);  // the batch before last on these words is done with them
    sm.unit = atomicAdd(reinterpret_cast<unsigned long long*>(&b.lookback[b.num_units]), 1ull);
  }
  __syncthreads();
  AllowNextKernel();
  const uint64_t unit = sm.unit;
  if (unit == 0) WriteEmptyFrames(b, thread);
  if (unit >= b.num_units) return;  // uniform in the block
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
  auto& edges = *reinterpret_cast<SegmentEdges*>(reinterpret_cast<uint8_t*>(sm.plan_sm.hist) +
                                                 kWordsOutBytes);
  ResidentTiles<kElementBytes> tiles{chunk, words_out, v, lane};
  WriteBody<kElementBytes>(v, sm.plan, edges, tiles, warp, lane);
}

template <int kElementBytes>
__device__ __forceinline__ void FusedEncodeBlock(const BatchView& b) {
  extern __shared__ uint4 fused_shared[];
  EncodeChunkBlock<kElementBytes>(b);
  // A block ends only once the kernel before it on the stream has (a no-op unless launched
  // programmatically): the stream's later steps, an event say, then still find every batch
  // before them done.
  WaitForPreviousKernel();
  // No static shared memory: five blocks per SM fit only just (kFusedSharedBytes).
  ClearIfLast(b, &reinterpret_cast<FusedShared*>(fused_shared)->item);
}

template <int kElementBytes>
__global__ void __launch_bounds__(kPlanThreads, kFusedBlocksPerSm) FusedEncodeKernel(BatchView b) {
  FusedEncodeBlock<kElementBytes>(b);
}

template <int kElementBytes, int kItems>
__global__ void __launch_bounds__(kPlanThreads, kFusedBlocksPerSm)
    FusedEncodeKernelWithItems(const __grid_constant__ BatchWithItems<kItems> p) {
  FusedEncodeBlock<kElementBytes>(p.View());
}

template <typename Param>
cudaError_t LaunchWithShared(void (*kernel)(Param), const Param& param, unsigned blocks,
                             size_t smem, cudaStream_t stream, bool programmatic) {
  if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem));
      e != cudaSuccess) {
    return e;
  }
  return LaunchKernel(kernel, param, blocks, kPlanThreads, smem, stream, programmatic);
}

template <int kElementBytes>
cudaError_t LaunchFusedEncodeFor(const BatchView& b, cudaStream_t stream,
                                 const ItemDesc* host_items) {
  const size_t chunk_bytes = (size_t{1} << b.chunk_log2) * kElementBytes;
  const size_t smem = (sizeof(FusedShared) + 15) / 16 * 16 + chunk_bytes;
  const unsigned blocks = static_cast<unsigned>(b.num_units > 0 ? b.num_units : 1);
  if (host_items == nullptr) {
    return LaunchWithShared(FusedEncodeKernel<kElementBytes>, b, blocks, smem, stream,
                            b.programmatic);
  }
  return LaunchWithItems(b, host_items, [&](const auto& p) {
    constexpr int kSlots = std::decay_t<decltype(p)>::kSlots;
    return LaunchWithShared(FusedEncodeKernelWithItems<kElementBytes, kSlots>, p, blocks, smem,
                            stream, b.programmatic);
  });
}

}  // namespace

cudaError_t LaunchFusedEncode(const BatchView& batch, cudaStream_t stream,
                              const ItemDesc* host_items) {
  return ElementBytes(batch.dtype) == 2 ? LaunchFusedEncodeFor<2>(batch, stream, host_items)
                                        : LaunchFusedEncodeFor<1>(batch, stream, host_items);
}

}  // namespace kvtier::kvz::gpu
