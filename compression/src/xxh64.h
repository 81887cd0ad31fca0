// XXH64 (xxHash 64-bit, identical to libxxhash's XXH64()) for the CPU and the GPU. The
// checksums of docs/format.md must come out the same on both, so both use these steps; the
// loads are a template parameter because the GPU reads aligned 8-byte words where the CPU reads
// unaligned memory with memcpy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "format.h"

namespace kvtier::kvz {

inline constexpr uint64_t kXxPrime1 = 0x9E3779B185EBCA87ULL;
inline constexpr uint64_t kXxPrime2 = 0xC2B2AE3D27D4EB4FULL;
inline constexpr uint64_t kXxPrime3 = 0x165667B19E3779F9ULL;
inline constexpr uint64_t kXxPrime4 = 0x85EBCA77C2B2AE63ULL;
inline constexpr uint64_t kXxPrime5 = 0x27D4EB2F165667C5ULL;

KVTIER_HD uint64_t XxRotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
KVTIER_HD uint64_t XxRound(uint64_t acc, uint64_t input) {
  acc += input * kXxPrime2;
  return XxRotl(acc, 31) * kXxPrime1;
}
KVTIER_HD uint64_t XxMerge(uint64_t acc, uint64_t val) {
  acc ^= XxRound(0, val);
  return acc * kXxPrime1 + kXxPrime4;
}

// The hash of the four stripe accumulators, once every whole 32-byte stripe is in.
KVTIER_HD uint64_t XxConverge(uint64_t v1, uint64_t v2, uint64_t v3, uint64_t v4) {
  uint64_t h = XxRotl(v1, 1) + XxRotl(v2, 7) + XxRotl(v3, 12) + XxRotl(v4, 18);
  h = XxMerge(h, v1);
  h = XxMerge(h, v2);
  h = XxMerge(h, v3);
  return XxMerge(h, v4);
}

// The end of XXH64: `h` already holds the stripes' hash (or seed + prime 5) plus the total
// length; folds in the bytes [p, end) that follow the last whole stripe, then avalanches.
template <typename Loads>
KVTIER_HD uint64_t XxFinish(uint64_t h, const uint8_t* p, const uint8_t* end) {
  while (p + 8 <= end) {
    h ^= XxRound(0, Loads::Load64(p));
    h = XxRotl(h, 27) * kXxPrime1 + kXxPrime4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(Loads::Load32(p)) * kXxPrime1;
    h = XxRotl(h, 23) * kXxPrime2 + kXxPrime3;
    p += 4;
  }
  while (p < end) {
    h ^= static_cast<uint64_t>(Loads::Load8(p)) * kXxPrime5;
    h = XxRotl(h, 11) * kXxPrime1;
    ++p;
  }
  h ^= h >> 33;
  h *= kXxPrime2;
  h ^= h >> 29;
  h *= kXxPrime3;
  h ^= h >> 32;
  return h;
}

// XXH64 of `len` bytes at `p`. Load64(p) / Load32(p) / Load8(p) read little-endian values at
// byte pointer p (a const uint8_t*).
template <typename Loads>
KVTIER_HD uint64_t Xxh64With(const uint8_t* p, size_t len, uint64_t seed) {
  const uint8_t* const end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + kXxPrime1 + kXxPrime2;
    uint64_t v2 = seed + kXxPrime2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kXxPrime1;
    const uint8_t* const limit = end - 32;
    KVTIER_UNROLL4
    do {
      v1 = XxRound(v1, Loads::Load64(p));
      v2 = XxRound(v2, Loads::Load64(p + 8));
      v3 = XxRound(v3, Loads::Load64(p + 16));
      v4 = XxRound(v4, Loads::Load64(p + 24));
      p += 32;
    } while (p <= limit);
    h = XxConverge(v1, v2, v3, v4);
  } else {
    h = seed + kXxPrime5;
  }
  return XxFinish<Loads>(h + static_cast<uint64_t>(len), p, end);
}

#if !defined(__CUDACC__)  // CPU only: nvcc sees the device loads of the CUDA codec instead
// Unaligned little-endian loads for the CPU (kvtier builds only for little-endian hosts).
struct HostLoads {
  static uint64_t Load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  static uint32_t Load32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  static uint8_t Load8(const uint8_t* p) { return *p; }
};

inline uint64_t Xxh64(const void* data, size_t len, uint64_t seed) {
  return Xxh64With<HostLoads>(static_cast<const uint8_t*>(data), len, seed);
}
#endif

}  // namespace kvtier::kvz
