// The kvz decoder on the GPU: one warp per chunk, lane l decoding lane l of the chunk, so that
// at each step the warp writes 32 consecutive elements (docs/format.md). It checks what the CPU
// decoder (compression/src/chunk_decoder.cc) checks, and never reads outside the frame nor
// writes outside the chunk's elements, whatever the bytes.
#include "huffman.h"
#include "kvz_device.cuh"

namespace kvtier::kvz::gpu {
namespace {

constexpr int kDecodeWarps = 4;
// Steps per tile: the warp stages 16 x 32 elements' raw bytes and outputs in shared memory, so
// that global memory sees only wide coalesced accesses while each lane works on its own
// strided elements.
constexpr int kTileSteps = 16;
constexpr int kTileElements = kTileSteps * kLanes;

// Words of each lane's stream kept in flight (cp.async into a per-lane ring in shared memory).
constexpr int kRing = 8;

struct DecodeShared {
  uint16_t table[1 << kMaxCodeLength];  // symbol | length << 8, indexed by the next 11 bits
  uint32_t ring[kRing][kLanes];
  uint16_t codes[256];
  uint8_t lengths[256];
  uint64_t digests[kLanes];
  uint32_t raw[kTileElements / 4];
  uint4 out[kTileElements * 2 / 16];
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
    for (int s = lane; s < 256; s += kLanes) sm.lengths[s] = 0;
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
        sm.lengths[min_symbol + k] = static_cast<uint8_t>(len);
      }
    }
    for (uint32_t i = raw_bytes + lane; i < RoundUp4(raw_bytes); i += kLanes) {
      bad |= body[kHuffmanRawOffset + i] != 0;
    }
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) kraft += __shfl_xor_sync(kFullMask, kraft, d);
    __syncwarp();
    bad |= kraft != (1u << kMaxCodeLength) || sm.lengths[min_symbol] == 0 ||
           sm.lengths[max_symbol] == 0;
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);

    // The lookup table: every 11-bit pattern is filled since the code is complete.
    CanonicalCodesWarp(sm.lengths, sm.codes, lane);
    __syncwarp();
    for (int s = min_symbol; s <= max_symbol; ++s) {
      const int len = sm.lengths[s];
      if (len == 0) continue;
      const uint16_t e = static_cast<uint16_t>(s | len << 8);
      const uint32_t code = sm.codes[s];
      for (uint32_t j = lane; j < (1u << (kMaxCodeLength - len)); j += kLanes) {
        sm.table[code | (j << len)] = e;
      }
    }
    __syncwarp();

    // Lane l decodes its symbols. Its stream arrives through a ring of kRing words filled by
    // cp.async: refill r consumes slot r % kRing after waiting for that word's copy, then
    // starts the copy of word r + kRing - 1 into the slot refill r - 1 emptied. Words past the
    // lane's own are zero-filled, and overrunning them is caught below.
    const uint32_t* lane_words =
        reinterpret_cast<const uint32_t*>(body + lanes_offset) + start_word;
    const uint32_t* raw32 = reinterpret_cast<const uint32_t*>(body + kHuffmanRawOffset);
    const uint32_t count = LaneSymbols(n, lane);
#pragma unroll
    for (int r = 0; r < kRing - 1; ++r) {
      CpAsync4(&sm.ring[r][lane], lane_words + (r < static_cast<int>(words) ? r : 0),
               r < static_cast<int>(words));
      CpAsyncCommit();
    }
    uint32_t refills = 0;
    uint64_t buf = 0;
    uint32_t avail = 0;
    uint8_t* out_tile = reinterpret_cast<uint8_t*>(sm.out);
    // The raw bytes of the next tile are loaded into registers while this tile decodes.
    constexpr int kRawWordsPerLane = kTileElements / 4 / kLanes;
    uint32_t raw_next[kRawWordsPerLane];
    auto load_raw = [&](uint32_t tile_first) {
      const uint32_t tile_words =
          (min(static_cast<uint32_t>(kTileElements), n - tile_first) + 3) / 4;
#pragma unroll
      for (int u = 0; u < kRawWordsPerLane; ++u) {
        const uint32_t w = lane + u * kLanes;
        // The last word may run into the raw plane's zero padding, still inside the body.
        raw_next[u] = w < tile_words ? __ldg(raw32 + tile_first / 4 + w) : 0u;
      }
    };
    auto park_raw = [&]() {
#pragma unroll
      for (int u = 0; u < kRawWordsPerLane; ++u) sm.raw[lane + u * kLanes] = raw_next[u];
    };
    if constexpr (kElementBytes == 2) {
      load_raw(0);
      park_raw();
    }
    for (uint32_t k0 = 0; k0 * kLanes < n; k0 += kTileSteps) {
      const uint32_t tile_first = k0 * kLanes;
      const uint32_t tile_n = min(static_cast<uint32_t>(kTileElements), n - tile_first);
      const bool more = tile_first + kTileElements < n;
      if constexpr (kElementBytes == 2) {
        if (more) load_raw(tile_first + kTileElements);
      }
      __syncwarp();  // the raw tile is parked
#pragma unroll 4
      for (int j = 0; j < kTileSteps; ++j) {
        if (k0 + j >= count) break;
        if (avail < kMaxCodeLength) {
          CpAsyncWait<kRing - 2>();
          const uint32_t slot = refills % kRing;
          buf |= uint64_t{sm.ring[slot][lane]} << avail;
          avail += 32;
          const uint32_t ahead = refills + kRing - 1;
          CpAsync4(&sm.ring[(slot + kRing - 1) % kRing][lane],
                   lane_words + (ahead < words ? ahead : 0), ahead < words);
          CpAsyncCommit();
          ++refills;
        }
        const uint16_t e = sm.table[buf & ((1u << kMaxCodeLength) - 1)];
        const uint32_t len = e >> 8;
        buf >>= len;
        avail -= len;
        const int t = j * kLanes + lane;
        if constexpr (kElementBytes == 2) {
          const uint8_t r = reinterpret_cast<const uint8_t*>(sm.raw)[t];
          reinterpret_cast<uint16_t*>(out_tile)[t] = Join16(static_cast<uint8_t>(e), r);
        } else {
          out_tile[t] = static_cast<uint8_t>(e);
        }
      }
      __syncwarp();
      // The tile's elements to global memory: 16-byte stores, then the ragged end if any.
      const uint32_t tile_bytes = tile_n * kElementBytes;
      uint4* dst = reinterpret_cast<uint4*>(out + uint64_t{tile_first} * kElementBytes);
      for (uint32_t v = lane; v < tile_bytes / 16; v += kLanes) dst[v] = sm.out[v];
      for (uint32_t i = (tile_bytes & ~15u) + lane; i < tile_bytes; i += kLanes) {
        out[uint64_t{tile_first} * kElementBytes + i] = out_tile[i];
      }
      __syncwarp();  // sm.out and sm.raw are free again
      if constexpr (kElementBytes == 2) {
        if (more) park_raw();
      }
    }
    CpAsyncWaitAll();  // no copy may land after the warp has moved on
    const uint32_t consumed = 32 * refills - avail;
    bad = (consumed + 31) / 32 != words;
    if (!bad && consumed % 32 != 0) bad = (__ldg(lane_words + words - 1) >> (consumed % 32)) != 0;
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);
  } else {
    return Report(b, item, kErrorDataLoss, lane);
  }

  __syncwarp();  // the chunk's elements, written by all lanes, are read back for the check
  const uint32_t check = ChunkCheckWarp<DeviceLoads>(
      out, bytes, (chunk_elements * kElementBytes) / kLanes, c, sm.digests, lane);
  if (check != expected_check) Report(b, item, kErrorDataLoss, lane);
}

template <int kElementBytes>
__global__ void __launch_bounds__(kDecodeWarps* kLanes) DecodeKernel(BatchView b) {
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
