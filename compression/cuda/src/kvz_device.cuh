// Internal device helpers shared by the kvz encode and decode kernels.
#pragma once

#include <cstdint>
#include <cuda/atomic>
#include <type_traits>

#include "format.h"
#include "huffman.h"
#include "kvz_kernels.h"
#include "xxh64.h"

namespace kvtier::kvz::gpu {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

// A batch with its descriptors, as one kernel parameter (kMaxParamItems, LaunchDecode and
// LaunchEncode with host_items). Kernels take it as `const __grid_constant__`, so the
// descriptors are read where the parameter lies (the constant bank), not copied per thread,
// and can be indexed like uploaded ones: View() is the batch pointing at them.
template <int kItems>
struct BatchWithItems {
  static constexpr int kSlots = kItems;
  BatchView b;
  ItemDesc items[kItems];

  __device__ BatchView View() const {
    BatchView v = b;
    v.items = items;
    return v;
  }
  // From the host: the batch and its `b.num_items` (<= kItems) descriptors.
  static BatchWithItems Make(const BatchView& batch, const ItemDesc* host_items) {
    BatchWithItems p;
    p.b = batch;
    for (uint32_t i = 0; i < batch.num_items; ++i) p.items[i] = host_items[i];
    return p;
  }
};

// Calls `launch(param)` with the smallest BatchWithItems (64 or kMaxParamItems slots) that
// holds the batch's descriptors, since a parameter's bytes go with every launch; `launch`
// reads the slot count as decltype(param)::kSlots. cudaErrorInvalidValue for a batch of more.
template <typename Launch>
cudaError_t LaunchWithItems(const BatchView& b, const ItemDesc* host_items, Launch&& launch) {
  if (b.num_items > kMaxParamItems) return cudaErrorInvalidValue;
  if (b.num_items <= 64) return launch(BatchWithItems<64>::Make(b, host_items));
  return launch(BatchWithItems<kMaxParamItems>::Make(b, host_items));
}

// Programmatic dependent launch (sm_90), for batches queued back to back
// (GpuBatchOptions::follows_previous_batch). AllowNextKernel lets the next kernel on the
// stream start once every block of this one has passed it; WaitForPreviousKernel waits until
// the previous kernel on the stream has completed, its memory visible. Both are no-ops in a
// kernel launched without programmatic stream serialization.
__device__ __forceinline__ void AllowNextKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void WaitForPreviousKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// A batch's per-batch words on the device (look-back states, error codes, counters) come in
// two sets used by batches in turns (BatchView::epoch_done): before touching its set, a batch
// waits until the batch before the one before it, the set's last user, has cleared it and
// published its epoch; once it has cleared the set in turn, it publishes its own. Without
// epoch_done (words uploaded per batch), both do nothing.
__device__ __forceinline__ void WaitForEpoch(const BatchView& b) {
  if (b.epoch_done == nullptr) return;
  cuda::atomic_ref<uint64_t, cuda::thread_scope_device> ref(*b.epoch_done);
  while (ref.load(cuda::memory_order_acquire) != b.wait_epoch) {
  }
}
// REQUIRES: every thread's clearing stores fenced (__threadfence) and ordered before this.
__device__ __forceinline__ void PublishEpoch(const BatchView& b) {
  if (b.epoch_done == nullptr) return;
  cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*b.epoch_done)
      .store(b.epoch, cuda::memory_order_release);
}

// Launches kernel(param) on `stream`, with programmatic stream serialization when
// `programmatic` (the kernel may then start before the previous kernel on the stream ends).
template <typename Param>
cudaError_t LaunchKernel(void (*kernel)(Param), const Param& param, unsigned blocks,
                         unsigned threads, size_t smem, cudaStream_t stream, bool programmatic) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = programmatic ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, param);
}

// Loads for Xxh64With on the device. Every hashed range starts 8-byte aligned (chunk slices
// are multiples of 32 bytes from a 16-byte aligned buffer), so whole-word loads are safe.
struct DeviceLoads {
  __device__ static uint64_t Load64(const uint8_t* p) {
    return *reinterpret_cast<const uint64_t*>(p);
  }
  __device__ static uint32_t Load32(const uint8_t* p) {
    return *reinterpret_cast<const uint32_t*>(p);
  }
  __device__ static uint8_t Load8(const uint8_t* p) { return *p; }
};

// The same through the read-only data path, for buffers no thread of the kernel writes (the
// encoder's input, the decoder's frame): the compiler may then issue them early, past shared
// memory stores, instead of one latency at a time.
struct ReadOnlyLoads {
  __device__ static uint64_t Load64(const uint8_t* p) {
    return __ldg(reinterpret_cast<const unsigned long long*>(p));
  }
  __device__ static uint32_t Load32(const uint8_t* p) {
    return __ldg(reinterpret_cast<const unsigned int*>(p));
  }
  __device__ static uint8_t Load8(const uint8_t* p) { return __ldg(p); }
};

// Asynchronous 16-byte copy from global to shared memory (sm_80+), cached in L2 only: the
// encoder stages the tiles it will need next without holding registers.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem) : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ uint64_t Min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

// The item that work unit `unit` belongs to: the last item whose first_unit <= unit (items
// without units share first_unit with the next item and are skipped that way).
__device__ __forceinline__ uint32_t FindItem(const ItemDesc* items, uint32_t n, uint64_t unit) {
  uint32_t lo = 0;
  uint32_t hi = n - 1;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (items[mid].first_unit <= unit) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// FindItem by a warp: a 32-way search, three dependent loads for 2^15 items instead of 15.
__device__ __forceinline__ uint32_t FindItemWarp(const ItemDesc* items, uint32_t n, uint64_t unit,
                                                 int lane) {
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

// The 16-bit element i (little-endian) or the byte i of a chunk.
template <int kElementBytes>
__device__ __forceinline__ uint32_t LoadElement(const uint8_t* chunk, uint32_t i) {
  if constexpr (kElementBytes == 2) {
    return reinterpret_cast<const uint16_t*>(chunk)[i];
  } else {
    return chunk[i];
  }
}

template <int kElementBytes>
__device__ __forceinline__ uint8_t CodedOf(uint32_t x) {
  if constexpr (kElementBytes == 2) {
    return CodedByte16(static_cast<uint16_t>(x));
  } else {
    return static_cast<uint8_t>(x);
  }
}

template <bool kReadOnly>
__device__ __forceinline__ uint4 Load16(const uint4* p) {
  if constexpr (kReadOnly) {
    return __ldg(p);
  } else {
    return *p;
  }
}

__device__ __forceinline__ uint64_t Lo64(uint4 v) { return v.x | uint64_t{v.y} << 32; }
__device__ __forceinline__ uint64_t Hi64(uint4 v) { return v.z | uint64_t{v.w} << 32; }

// XXH64 (the same function as Xxh64With in xxh64.h) of `len` bytes at `p`, which is 16-byte
// aligned. The whole 32-byte stripes are read as 16-byte vectors, double-buffered eight at a
// time, so that a lane hashing its own slice rarely waits for memory (one load per stripe in
// order would wait once per 32 bytes); on_vector(v) sees each of those vectors in order, so that a
// caller can count symbols in the same pass. The last len % 32 bytes are the caller's to count.
template <bool kReadOnly, typename OnVector>
__device__ __forceinline__ uint64_t Xxh64Vectors(const uint8_t* p, uint32_t len, uint64_t seed,
                                                 OnVector&& on_vector) {
  using Loads = std::conditional_t<kReadOnly, ReadOnlyLoads, DeviceLoads>;
  const uint4* q = reinterpret_cast<const uint4*>(p);
  const uint32_t stripes = len / 32;
  uint64_t h;
  if (stripes > 0) {
    uint64_t v1 = seed + kXxPrime1 + kXxPrime2;
    uint64_t v2 = seed + kXxPrime2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kXxPrime1;
    uint32_t s = 0;
    // Double-buffered: the next four stripes are in flight while these four are hashed.
    uint4 a[8];
    if (stripes >= 4) {
#pragma unroll
      for (int u = 0; u < 8; ++u) a[u] = Load16<kReadOnly>(q + u);
    }
    for (; s + 4 <= stripes; s += 4) {
      uint4 b[8];
      const bool more = s + 8 <= stripes;
      if (more) {
#pragma unroll
        for (int u = 0; u < 8; ++u) b[u] = Load16<kReadOnly>(q + 2 * (s + 4) + u);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        v1 = XxRound(v1, Lo64(a[2 * u]));
        v2 = XxRound(v2, Hi64(a[2 * u]));
        v3 = XxRound(v3, Lo64(a[2 * u + 1]));
        v4 = XxRound(v4, Hi64(a[2 * u + 1]));
        on_vector(a[2 * u]);
        on_vector(a[2 * u + 1]);
      }
      if (more) {
#pragma unroll
        for (int u = 0; u < 8; ++u) a[u] = b[u];
      }
    }
    for (; s < stripes; ++s) {
      const uint4 a0 = Load16<kReadOnly>(q + 2 * s);
      const uint4 a1 = Load16<kReadOnly>(q + 2 * s + 1);
      v1 = XxRound(v1, Lo64(a0));
      v2 = XxRound(v2, Hi64(a0));
      v3 = XxRound(v3, Lo64(a1));
      v4 = XxRound(v4, Hi64(a1));
      on_vector(a0);
      on_vector(a1);
    }
    h = XxConverge(v1, v2, v3, v4);
  } else {
    h = seed + kXxPrime5;
  }
  return XxFinish<Loads>(h + static_cast<uint64_t>(len), p + 32 * stripes, p + len);
}

// XXH64 of one checksum slice by four lanes 4g..4g+3 (the encoder's plan, the decoder's check):
// lane 4g + a runs accumulator a over word a of every 32-byte stripe. Its starting value, at
// seed 0 (XXH64's: seed + prime 1 + prime 2, seed + prime 2, seed, seed - prime 1):
__device__ __forceinline__ uint64_t XxQuadStart(int a) {
  return a == 0 ? kXxPrime1 + kXxPrime2 : a == 1 ? kXxPrime2 : a == 2 ? 0 : 0 - kXxPrime1;
}
// ...and the slice's digest from the four accumulators after `stripes` rounds, the slice being
// `len` bytes at `p`; every lane calls it (shuffles), the group's first lane gets the digest.
template <typename Loads>
__device__ __forceinline__ uint64_t XxQuadDigest(uint64_t acc, const uint8_t* p, uint32_t len,
                                                 uint32_t stripes, int lane) {
  const int first_lane = lane & ~3;
  const uint64_t v1 = __shfl_sync(kFullMask, acc, first_lane);
  const uint64_t v2 = __shfl_sync(kFullMask, acc, first_lane + 1);
  const uint64_t v3 = __shfl_sync(kFullMask, acc, first_lane + 2);
  const uint64_t v4 = __shfl_sync(kFullMask, acc, first_lane + 3);
  if (lane != first_lane) return 0;
  const uint64_t h = stripes > 0 ? XxConverge(v1, v2, v3, v4) : kXxPrime5;
  return XxFinish<Loads>(h + len, p + 32 * stripes, p + len);
}

// The chunk check from its 32 slice digests (docs/format.md).
__device__ __forceinline__ uint32_t ChunkCheckOf(const uint64_t* digests, uint64_t chunk_index) {
  return static_cast<uint32_t>(
      Xxh64With<DeviceLoads>(reinterpret_cast<const uint8_t*>(digests), 8 * kLanes, chunk_index));
}

// The chunk check from each lane's slice digest; every lane returns it. `digests` is 32 u64 of
// shared memory owned by the warp.
__device__ __forceinline__ uint32_t CombineDigests(uint64_t digest, uint64_t chunk_index,
                                                   uint64_t* digests, int lane) {
  digests[lane] = digest;
  __syncwarp();
  uint32_t check = 0;
  if (lane == 0) check = ChunkCheckOf(digests, chunk_index);
  __syncwarp();
  return __shfl_sync(kFullMask, check, 0);
}

// The byte range [begin, end) of lane `lane`'s checksum slice in a chunk of `bytes` bytes.
__device__ __forceinline__ void SliceOf(uint64_t bytes, uint64_t slice_bytes, int lane,
                                        uint64_t* begin, uint64_t* end) {
  *begin = Min64(lane * slice_bytes, bytes);
  *end = Min64((lane + 1) * slice_bytes, bytes);
}

// Each lane hashes its slice of the chunk's original bytes (16-byte aligned: slices are
// multiples of 32 bytes from a 16-byte aligned chunk); every lane returns the chunk check.
template <bool kReadOnly>
__device__ __forceinline__ uint32_t ChunkCheckWarp(const uint8_t* data, uint64_t bytes,
                                                   uint64_t slice_bytes, uint64_t chunk_index,
                                                   uint64_t* digests, int lane) {
  uint64_t begin, end;
  SliceOf(bytes, slice_bytes, lane, &begin, &end);
  const uint64_t digest =
      Xxh64Vectors<kReadOnly>(data + begin, static_cast<uint32_t>(end - begin), 0, [](uint4) {});
  return CombineDigests(digest, chunk_index, digests, lane);
}

// Canonical codes (bit-reversed, as CanonicalCodes in huffman.h computes them on one thread)
// with the whole warp: lane l takes symbols 8l..8l+7; a symbol's code is the first code of its
// length plus the number of symbols before it with that length (in lanes below, then in this
// lane). Every array is indexed by unrolled loop counters only, so it stays in registers (an
// earlier form, which counted `before[len]++` per symbol, was compiled to local memory: 3% of
// the decoder's samples).
__device__ __forceinline__ void CanonicalCodesWarp(const uint8_t* lengths, uint16_t* codes,
                                                   int lane) {
  uint32_t len[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) len[j] = lengths[8 * lane + j];
  // start[l]: the code of this lane's first symbol of length l (first code of the length plus
  // the symbols of that length in lanes below this one).
  uint32_t start[kMaxCodeLength + 1];
  uint32_t code = 0;
  uint32_t previous_total = 0;
#pragma unroll
  for (int l = 1; l <= kMaxCodeLength; ++l) {
    uint32_t mine = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) mine += len[j] == static_cast<uint32_t>(l);
    uint32_t inclusive = mine;
#pragma unroll
    for (int d = 1; d < kLanes; d *= 2) {
      const uint32_t v = __shfl_up_sync(kFullMask, inclusive, d);
      if (lane >= d) inclusive += v;
    }
    code = (code + previous_total) << 1;
    start[l] = code + inclusive - mine;
    previous_total = __shfl_sync(kFullMask, inclusive, kLanes - 1);
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    uint32_t base = 0;
#pragma unroll
    for (int l = 1; l <= kMaxCodeLength; ++l)
      base = len[j] == static_cast<uint32_t>(l) ? start[l] : base;
    uint32_t rank = 0;  // symbols of the same length before it in this lane
#pragma unroll
    for (int k = 0; k < j; ++k) rank += len[k] == len[j];
    codes[8 * lane + j] = static_cast<uint16_t>(
        len[j] == 0 ? 0u : ReverseBits(base + rank, static_cast<int>(len[j])));
  }
}

}  // namespace kvtier::kvz::gpu
