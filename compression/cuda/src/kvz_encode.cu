// The kvz encoder on the GPU (docs/format.md; the CPU encoder in compression/src/chunk_encoder.cc
// is the reference and writes the same bytes). LaunchEncode takes the fused kernel
// (kvz_encode_fused.cu) for chunks of 16 to 32 KiB, and otherwise the three kernels here:
// 1. plan, four warps per chunk (kvz_encode_plan.cuh): histogram, chunk check, code lengths and
//    codes, the exact size of every lane in each quarter of the chunk, and the body's form;
// 2. scan, one block per frame: body offsets, directory and header;
// 3. write, four warps per chunk (kvz_encode_write.cuh): the body at its final place (warp s
//    writes quarter s of every lane's stream), its input streamed through shared memory again.
// A chunk's size depends on its lanes' bit counts, so bodies can only be placed after every
// chunk of the frame has been planned; planning twice (sizes, then bytes) reads the input twice
// but needs no scratch copy of the output.
#include <cub/block/block_scan.cuh>

#include "header_bytes.h"
#include "kvz_encode_write.cuh"

namespace kvtier::kvz::gpu {
namespace {

constexpr int kScanThreads = 256;

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

cudaError_t LaunchEncode(const BatchView& batch, cudaStream_t stream, const ItemDesc* host_items) {
  if (UsesFusedEncoder(batch.chunk_log2, ElementBytes(batch.dtype))) {
    return LaunchFusedEncode(batch, stream, host_items);
  }
  if (host_items != nullptr) return cudaErrorInvalidValue;  // the three kernels read b.items
  return ElementBytes(batch.dtype) == 2 ? LaunchEncodeFor<2>(batch, stream)
                                        : LaunchEncodeFor<1>(batch, stream);
}

}  // namespace kvtier::kvz::gpu
