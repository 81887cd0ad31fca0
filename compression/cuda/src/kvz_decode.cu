// The kvz decoder on the GPU: one warp per chunk, lane l decoding lane l of the chunk, so that
// at each step the warp writes 32 consecutive elements (docs/format.md). It checks what the CPU
// decoder (compression/src/chunk_decoder.cc) checks, and never reads outside the frame nor
// writes outside the chunk's elements, whatever the bytes.
#include "huffman.h"
#include "kvz_device.cuh"

namespace kvtier::kvz::gpu {
namespace {

constexpr int kDecodeWarps = 4;
// Steps per tile: the warp decodes 16 x 32 symbols into shared memory, then joins them with their
// raw bytes and writes the 512 elements with wide coalesced stores while each lane works on its
// own strided symbols.
constexpr int kTileSteps = 16;
constexpr int kTileElements = kTileSteps * kLanes;

// Each lane's stream is staged in a ring of shared-memory words, refilled once per tile: a tile
// takes at most 16 lookups of at most 11 bits, i.e. at most 6 words, so keeping 14 words ahead
// and loading up to 7 per tile (issued at the tile's start, parked at its end) never runs dry.
constexpr int kRingSlots = 16;
constexpr uint32_t kRingTarget = 14;
constexpr int kFetch = 7;

// A lookup-table entry, indexed by the next 11 bits of a lane: bits 0-7 the first symbol, 8-11
// its code length, 12-15 the bits both codes take, 16-23 the second symbol, bit 24 set when the
// second code fits in the window too. Bf16 exponent codes are mostly 2-4 bits, so most lookups
// yield two symbols, halving the lane's dependency chain (lookup, shift), as on the CPU.
constexpr uint32_t kTwoSymbols = 1u << 24;

struct DecodeShared {
  uint32_t table[1 << kMaxCodeLength];
  union {
    uint32_t ring[kRingSlots][kLanes];  // while decoding: ring[slot][lane], conflict-free
    struct {
      uint16_t codes[256];
      uint8_t lengths[256];
    } build;                   // while building the table
    uint64_t digests[kLanes];  // for the chunk check, at the end
  } u;
  // The tile's symbols in chunk order (row = step), one spare row for a lane whose last lookup
  // of the tile yielded the first symbol of the next one.
  alignas(16) uint8_t sym[(kTileSteps + 1) * kLanes];
};

__device__ __forceinline__ void Report(const BatchView& b, uint32_t item, int32_t code, int lane) {
  if (lane == 0) atomicMax(&b.errors[item], code);
}

// True if any lane's `bad` is set.
__device__ __forceinline__ bool AnyBad(bool bad) { return __any_sync(kFullMask, bad); }

// The header checks, on one lane, from two 16-byte loads; returns 0 or an error code.
__device__ int32_t CheckHeader(const BatchView& b, const ItemDesc& it) {
  if (it.in_bytes < kHeaderBytes) return kErrorInvalidArgument;
  uint4 words[2];
  words[0] = __ldg(reinterpret_cast<const uint4*>(it.in));
  words[1] = __ldg(reinterpret_cast<const uint4*>(it.in) + 1);
  const uint8_t* h = reinterpret_cast<const uint8_t*>(words);
  if (h[0] != 0x89 || h[1] != 'K' || h[2] != 'V' || h[3] != 'Z') return kErrorInvalidArgument;
  if (static_cast<uint32_t>(Xxh64With<DeviceLoads>(h, 28, 0)) != LoadLe32(h + 28)) {
    return kErrorDataLoss;
  }
  if (h[4] != kVersion || h[5] != b.dtype || h[6] != b.chunk_log2 || h[7] != kLanesLog2 ||
      LoadLe32(h + 24) != 0 || LoadLe64(h + 8) != it.elements || LoadLe64(h + 16) != it.in_bytes) {
    return kErrorInvalidArgument;
  }
  if (it.in_bytes < kHeaderBytes + kDirEntryBytes * it.num_chunks) return kErrorDataLoss;
  return 0;
}

template <int kElementBytes>
__device__ void DecodeChunk(const BatchView& b, DecodeShared& sm, uint64_t unit, int lane) {
  const uint32_t item = FindItem(b.items, b.num_items, unit);
  const ItemDesc& it = b.items[item];
  int32_t header_error = 0;
  if (lane == 0) header_error = CheckHeader(b, it);
  header_error = __shfl_sync(kFullMask, header_error, 0);
  if (header_error != 0) return Report(b, item, header_error, lane);
  const uint64_t dir_end = kHeaderBytes + kDirEntryBytes * it.num_chunks;
  if (it.num_chunks == 0) {  // an empty frame's unit only checks the header and its size
    if (it.in_bytes != dir_end) Report(b, item, kErrorDataLoss, lane);
    return;
  }

  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint64_t first = c * chunk_elements;
  const uint32_t n = static_cast<uint32_t>(Min64(chunk_elements, it.elements - first));
  const uint32_t bytes = n * kElementBytes;
  const uint32_t raw_bytes = n * (kElementBytes - 1);
  const uint8_t* dir = it.in + kHeaderBytes;
  const uint64_t payload_bytes = it.in_bytes - dir_end;
  const uint32_t* dir32 = reinterpret_cast<const uint32_t*>(dir);  // 8-byte aligned entries
  const uint64_t start = c == 0 ? 0 : __ldg(dir32 + 2 * (c - 1));
  const uint64_t end = __ldg(dir32 + 2 * c);
  const uint32_t expected_check = __ldg(dir32 + 2 * c + 1);
  if (end < start || end > payload_bytes || end % 4 != 0 || end - start > RoundUp4(bytes) ||
      (c + 1 == it.num_chunks && end != payload_bytes)) {
    return Report(b, item, kErrorDataLoss, lane);
  }
  const uint8_t* body = it.in + dir_end + start;
  const uint32_t size = static_cast<uint32_t>(end - start);
  uint8_t* out = it.out + first * kElementBytes;

  if (size == RoundUp4(bytes)) {  // stored
    const uint32_t* body32 = reinterpret_cast<const uint32_t*>(body);
    uint32_t* out32 = reinterpret_cast<uint32_t*>(out);
    for (uint32_t w = lane; w < bytes / 4; w += kLanes) out32[w] = body32[w];
    bool bad = false;
    if (lane == 0) {
      for (uint32_t i = bytes & ~3u; i < bytes; ++i) out[i] = body[i];
      for (uint32_t i = bytes; i < size; ++i) bad |= body[i] != 0;
    }
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);
  } else if (size < kHuffmanPrefixBytes) {
    return Report(b, item, kErrorDataLoss, lane);
  } else if (body[0] == kKindConstant) {
    bool bad = size != RoundUp4(kConstantRawOffset + raw_bytes) || body[2] != 0 || body[3] != 0;
    for (uint32_t i = kConstantRawOffset + raw_bytes + lane; !bad && i < size; i += kLanes) {
      bad |= body[i] != 0;
    }
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);
    const uint8_t coded = body[1];
    for (uint32_t i = lane; i < n; i += kLanes) {
      if constexpr (kElementBytes == 2) {
        reinterpret_cast<uint16_t*>(out)[i] = Join16(coded, body[kConstantRawOffset + i]);
      } else {
        out[i] = coded;
      }
    }
  } else if (body[0] == kKindHuffman) {
    const int min_symbol = body[1];
    const int max_symbol = body[2];
    const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
    if (AnyBad(body[3] != 0 || max_symbol <= min_symbol || size < nibbles_offset)) {
      return Report(b, item, kErrorDataLoss, lane);
    }
    const uint32_t nibble_bytes = static_cast<uint32_t>(NibbleBytes(min_symbol, max_symbol));
    const size_t lanes_offset = nibbles_offset + nibble_bytes;
    const uint32_t words = LoadLe16(body + kHuffmanPrefixBytes + 2 * lane);
    uint32_t start_word = words;
#pragma unroll
    for (int d = 1; d < kLanes; d *= 2) {
      const uint32_t v = __shfl_up_sync(kFullMask, start_word, d);
      if (lane >= d) start_word += v;
    }
    const uint32_t total_words = __shfl_sync(kFullMask, start_word, kLanes - 1);
    start_word -= words;
    if (AnyBad(lanes_offset + 4 * size_t{total_words} != size)) {
      return Report(b, item, kErrorDataLoss, lane);
    }
    // Code lengths from the nibbles, with the checks of format.md.
    for (int s = lane; s < 256; s += kLanes) sm.u.build.lengths[s] = 0;
    __syncwarp();
    const int range = max_symbol - min_symbol + 1;
    const uint8_t* nibbles = body + nibbles_offset;
    uint32_t kraft = 0;
    bool bad = false;
    for (int k = lane; k < 2 * static_cast<int>(nibble_bytes); k += kLanes) {
      const int len = (nibbles[k / 2] >> (4 * (k & 1))) & 0xF;
      if (k >= range) {
        bad |= len != 0;  // padding nibbles and bytes
      } else {
        bad |= len > kMaxCodeLength;
        if (len != 0 && len <= kMaxCodeLength) kraft += 1u << (kMaxCodeLength - len);
        sm.u.build.lengths[min_symbol + k] = static_cast<uint8_t>(len);
      }
    }
    for (uint32_t i = raw_bytes + lane; i < RoundUp4(raw_bytes); i += kLanes) {
      bad |= body[kHuffmanRawOffset + i] != 0;
    }
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) kraft += __shfl_xor_sync(kFullMask, kraft, d);
    __syncwarp();
    bad |= kraft != (1u << kMaxCodeLength) || sm.u.build.lengths[min_symbol] == 0 ||
           sm.u.build.lengths[max_symbol] == 0;
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);

    // The lookup table: every 11-bit pattern is filled since the code is complete. First the
    // first symbol of every window (bits 0-11 of an entry)...
    CanonicalCodesWarp(sm.u.build.lengths, sm.u.build.codes, lane);
    __syncwarp();
    for (int s = min_symbol; s <= max_symbol; ++s) {
      const uint32_t len = sm.u.build.lengths[s];
      if (len == 0) continue;
      const uint32_t e = static_cast<uint32_t>(s) | len << 8 | len << 12;
      const uint32_t code = sm.u.build.codes[s];
      for (uint32_t j = lane; j < (1u << (kMaxCodeLength - len)); j += kLanes) {
        sm.table[code | (j << len)] = e;
      }
    }
    __syncwarp();
    // ...then the second, in place: an entry's bits 0-11 never change, so lanes reading other
    // entries while they are rewritten see the same first symbol and length.
    for (uint32_t i = lane; i < (1u << kMaxCodeLength); i += kLanes) {
      const uint32_t e0 = sm.table[i];
      const uint32_t l0 = (e0 >> 8) & 0xF;
      const uint32_t e1 = sm.table[i >> l0];  // the window's remaining bits, zeros above
      const uint32_t l1 = (e1 >> 8) & 0xF;
      if (l0 + l1 <= kMaxCodeLength) {
        sm.table[i] = (e0 & 0xFFF) | (l0 + l1) << 12 | (e1 & 0xFF) << 16 | kTwoSymbols;
      }
    }
    __syncwarp();  // the table is complete; build.* is dead, the ring may be written

    // Lane l decodes its `count` symbols from its words through the ring (see kRingSlots):
    // `fetched` words have been staged and `rd` shifted into the bit buffer hi:lo, which holds
    // `avail` valid bits and zeros above; `word` is staged word rd and `ahead` word rd + 1, both
    // read ahead so that a refill does not wait for shared memory. Words past the lane's own read
    // as zeros, and overrunning them is caught below.
    const uint32_t* lane_words =
        reinterpret_cast<const uint32_t*>(body + lanes_offset) + start_word;
    const uint32_t count = LaneSymbols(n, lane);
    uint32_t fetched = 0;
    uint32_t rd = 0;
    uint32_t lo = 0;
    uint32_t hi = 0;
    uint32_t avail = 0;
    {
      uint32_t first[kRingTarget];
#pragma unroll
      for (uint32_t u = 0; u < kRingTarget; ++u) {
        first[u] = u < words ? __ldg(lane_words + u) : 0u;
      }
#pragma unroll
      for (uint32_t u = 0; u < kRingTarget; ++u) sm.u.ring[u][lane] = first[u];
      fetched = min(kRingTarget, words);
    }
    uint32_t word = words > 0 ? sm.u.ring[0][lane] : 0u;
    uint32_t ahead = sm.u.ring[1][lane];
    // A lookup takes every symbol its entry holds; only a lane's last lookup can take one too
    // many (a second code read from the fill bits), whose bits are then given back here.
    uint32_t e = 0;
    uint32_t overshoot_bits = 0;
    // Raw bytes of this lane's 16 elements of the tile (16-bit dtypes), loaded at the tile's
    // start and joined with the symbols at its end.
    const uint32_t* raw32 = reinterpret_cast<const uint32_t*>(body + kHuffmanRawOffset);
    const uint32_t raw_words = static_cast<uint32_t>(RoundUp4(raw_bytes) / 4);
    uint32_t have = 0;  // symbols of the current tile already in sm.sym (a carried one)
    __syncwarp();
    for (uint32_t tile_first = 0; tile_first < n; tile_first += kTileElements) {
      const uint32_t tile_n = min(static_cast<uint32_t>(kTileElements), n - tile_first);
      const uint32_t k0 = tile_first / kLanes;
      const uint32_t steps = count > k0 ? min(static_cast<uint32_t>(kTileSteps), count - k0) : 0;
      // Stage the next words of the stream (parked in the ring once this tile is decoded).
      const uint32_t staged = fetched > rd ? fetched - rd : 0;
      const uint32_t want =
          min(min(kRingTarget > staged ? kRingTarget - staged : 0u, static_cast<uint32_t>(kFetch)),
              words - fetched);
      uint32_t next[kFetch];
#pragma unroll
      for (int u = 0; u < kFetch; ++u) {
        next[u] = u < static_cast<int>(want) ? __ldg(lane_words + fetched + u) : 0u;
      }
      uint32_t raw[4] = {0, 0, 0, 0};
      if constexpr (kElementBytes == 2) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t w = (tile_first + 16 * lane) / 4 + j;
          // The last word may run into the raw plane's zero padding, still inside the body.
          if (w < raw_words) raw[j] = __ldg(raw32 + w);
        }
      }

      while (have < steps) {
        // Refill, without a branch: lanes need it at different steps, so a branch would run
        // for almost every step anyway.
        const bool need = avail < kMaxCodeLength;
        lo |= need ? word << avail : 0u;
        hi |= need ? __funnelshift_l(word, 0u, avail) : 0u;
        avail += need ? 32u : 0u;
        rd += need ? 1u : 0u;
        word = need ? (rd < words ? ahead : 0u) : word;
        // Staged word rd + 1, loaded here and used at a later refill (at least two lookups
        // later), so that its latency is off the lane's dependency chain.
        ahead = sm.u.ring[(rd + 1) % kRingSlots][lane];
        e = sm.table[lo & ((1u << kMaxCodeLength) - 1)];
        const uint32_t bits = (e >> 12) & 0xF;
        // The second symbol is always stored; when there is none, the next lookup overwrites
        // it or it lies past the lane's symbols of this tile and is ignored.
        sm.sym[have * kLanes + lane] = static_cast<uint8_t>(e);
        sm.sym[(have + 1) * kLanes + lane] = static_cast<uint8_t>(e >> 16);
        lo = __funnelshift_r(lo, hi, bits);
        hi >>= bits;
        avail -= bits;
        have += 1 + (e >> 24);
      }
      const bool last_tile = steps > 0 && k0 + steps == count;
      if (last_tile && have > steps) overshoot_bits = ((e >> 12) & 0xF) - ((e >> 8) & 0xF);
#pragma unroll
      for (int u = 0; u < kFetch; ++u) {
        if (u < static_cast<int>(want)) sm.u.ring[(fetched + u) % kRingSlots][lane] = next[u];
      }
      fetched += want;
      // `ahead` may have been read before its word was parked just now (a tile takes at most
      // six words, so it was not needed in this tile); read it again.
      ahead = sm.u.ring[(rd + 1) % kRingSlots][lane];
      __syncwarp();  // the tile's symbols are complete

      // Lane l joins elements 16l..16l+15 of the tile and stores them.
      const uint32_t base = 16 * lane;
      if (base < tile_n) {
        const uint4 sv = *reinterpret_cast<const uint4*>(sm.sym + base);
        const uint32_t sw[4] = {sv.x, sv.y, sv.z, sv.w};
        if constexpr (kElementBytes == 2) {
          uint32_t o[8];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              // Two elements: symbols and raw bytes spread to the low byte of each half.
              const uint32_t sel = h == 0 ? 0x4140 : 0x4342;
              const uint32_t s2 = __byte_perm(sw[j], 0, sel);
              const uint32_t r2 = __byte_perm(raw[j], 0, sel);
              o[2 * j + h] =
                  (r2 & 0x007F007Fu) | ((s2 << 7) & 0x7F807F80u) | ((r2 & 0x00800080u) << 8);
            }
          }
          uint8_t* dst = out + uint64_t{tile_first + base} * 2;
          if (base + 16 <= tile_n) {
            reinterpret_cast<uint4*>(dst)[0] = make_uint4(o[0], o[1], o[2], o[3]);
            reinterpret_cast<uint4*>(dst)[1] = make_uint4(o[4], o[5], o[6], o[7]);
          } else {
            uint16_t* dst16 = reinterpret_cast<uint16_t*>(dst);
#pragma unroll
            for (uint32_t j = 0; j < 16; ++j) {
              if (base + j < tile_n) dst16[j] = static_cast<uint16_t>(o[j / 2] >> (16 * (j % 2)));
            }
          }
        } else {
          uint8_t* dst = out + tile_first + base;
          if (base + 16 <= tile_n) {
            *reinterpret_cast<uint4*>(dst) = sv;
          } else {
#pragma unroll
            for (uint32_t j = 0; j < 16; ++j) {
              if (base + j < tile_n) dst[j] = static_cast<uint8_t>(sw[j / 4] >> (8 * (j % 4)));
            }
          }
        }
      }
      __syncwarp();  // sm.sym is read; a carried symbol moves to row 0
      if (have > steps && !last_tile) {
        sm.sym[lane] = sm.sym[kTileSteps * kLanes + lane];
        have = 1;
      } else {
        have = 0;
      }
    }
    const uint32_t consumed = 32 * rd - avail - overshoot_bits;
    bad = (consumed + 31) / 32 != words;
    if (!bad && consumed % 32 != 0) bad = (__ldg(lane_words + words - 1) >> (consumed % 32)) != 0;
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);
  } else {
    return Report(b, item, kErrorDataLoss, lane);
  }

  __syncwarp();  // the chunk's elements, written by all lanes, are read back for the check
  const uint32_t check = ChunkCheckWarp<false>(
      out, bytes, (chunk_elements * kElementBytes) / kLanes, c, sm.u.digests, lane);
  if (check != expected_check) Report(b, item, kErrorDataLoss, lane);
}

template <int kElementBytes>
__global__ void __launch_bounds__(kDecodeWarps* kLanes, 5) DecodeKernel(BatchView b) {
  __shared__ DecodeShared sm[kDecodeWarps];
  const int warp = threadIdx.x / kLanes;
  const uint64_t unit = uint64_t{blockIdx.x} * kDecodeWarps + warp;
  if (unit >= b.num_units) return;
  DecodeChunk<kElementBytes>(b, sm[warp], unit, threadIdx.x % kLanes);
}

}  // namespace

cudaError_t LaunchDecode(const BatchView& b, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((b.num_units + kDecodeWarps - 1) / kDecodeWarps);
  if (ElementBytes(b.dtype) == 2) {
    DecodeKernel<2><<<blocks, kDecodeWarps * kLanes, 0, stream>>>(b);
  } else {
    DecodeKernel<1><<<blocks, kDecodeWarps * kLanes, 0, stream>>>(b);
  }
  return cudaGetLastError();
}

}  // namespace kvtier::kvz::gpu
