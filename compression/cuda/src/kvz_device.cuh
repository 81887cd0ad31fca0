// Internal device helpers shared by the kvz encode and decode kernels.
#pragma once

#include <cstdint>

#include "format.h"
#include "huffman.h"
#include "kvz_kernels.h"
#include "xxh64.h"

namespace kvtier::kvz::gpu {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

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

// Asynchronous 4-byte copy from global to shared memory (sm_80+), zero-filled when !valid, so
// that a lane can keep several words of its stream in flight without holding registers.
__device__ __forceinline__ void CpAsync4(uint32_t* smem, const uint32_t* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}
__device__ __forceinline__ void CpAsyncWaitAll() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
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

// Each lane hashes its slice of the chunk's original bytes; lane 0 returns the chunk check.
// `digests` is 32 u64 of shared memory owned by the warp.
template <typename Loads>
__device__ __forceinline__ uint32_t ChunkCheckWarp(const uint8_t* data, uint64_t bytes,
                                                   uint64_t slice_bytes, uint64_t chunk_index,
                                                   uint64_t* digests, int lane) {
  const uint64_t begin = Min64(lane * slice_bytes, bytes);
  const uint64_t end = Min64((lane + 1) * slice_bytes, bytes);
  digests[lane] = Xxh64With<Loads>(data + begin, end - begin, 0);
  __syncwarp();
  uint32_t check = 0;
  if (lane == 0) {
    check = static_cast<uint32_t>(
        Xxh64With<DeviceLoads>(reinterpret_cast<const uint8_t*>(digests), 8 * kLanes, chunk_index));
  }
  __syncwarp();
  return __shfl_sync(kFullMask, check, 0);
}

// Canonical codes (bit-reversed, as CanonicalCodes in huffman.h computes them on one thread)
// with the whole warp: lane l takes symbols 8l..8l+7; a symbol's code is the first code of its
// length plus the number of symbols before it with that length.
__device__ __forceinline__ void CanonicalCodesWarp(const uint8_t* lengths, uint16_t* codes,
                                                   int lane) {
  uint32_t len[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) len[j] = lengths[8 * lane + j];
  uint32_t before[kMaxCodeLength + 1];  // symbols of each length in lanes below this one
  uint32_t first[kMaxCodeLength + 1];   // first canonical code of each length
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
    before[l] = inclusive - mine;
    code = (code + previous_total) << 1;
    first[l] = code;
    previous_total = __shfl_sync(kFullMask, inclusive, kLanes - 1);
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    uint32_t c = 0;
#pragma unroll
    for (int l = 1; l <= kMaxCodeLength; ++l) {
      if (len[j] == static_cast<uint32_t>(l)) c = ReverseBits(first[l] + before[l]++, l);
    }
    codes[8 * lane + j] = static_cast<uint16_t>(c);
  }
}

}  // namespace kvtier::kvz::gpu
