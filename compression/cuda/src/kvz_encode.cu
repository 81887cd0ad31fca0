// The kvz encoder on the GPU, in three kernels (docs/format.md; the CPU encoder in
// compression/src/chunk_encoder.cc is the reference and writes the same bytes):
// 1. plan, one warp per chunk: histogram, chunk check, code lengths (the shared huffman.h), the
//    exact size of every lane, and the body's form;
// 2. scan, one block per frame: body offsets, directory and header;
// 3. write, one warp per chunk: the body at its final place (lane l writes lane l's words).
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
constexpr int kWriteWarps = 4;

struct PlanShared {
  union {
    uint16_t hist[256 * kLanes];  // [symbol][lane] private columns: no atomics, no conflicts
    struct {
      uint32_t keys[256];
      uint32_t sorted[256];
      uint32_t work[256];
      uint8_t lengths[256];
    } t;
  };
  uint64_t digests[kLanes];
};

template <int kElementBytes>
__device__ void PlanChunk(const BatchView& b, PlanShared& sm, int lane) {
  const uint64_t unit = blockIdx.x;
  const uint32_t item_index = FindItem(b.items, b.num_items, unit);
  const ItemDesc& it = b.items[item_index];
  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint64_t first = c * chunk_elements;
  const uint32_t n = static_cast<uint32_t>(Min64(chunk_elements, it.elements - first));
  const uint8_t* in = it.in + first * kElementBytes;
  const uint64_t bytes = uint64_t{n} * kElementBytes;
  ChunkPlan& plan = b.plans[unit];

  // One pass over the input: lane l reads its checksum slice (docs/format.md) with 16-byte
  // loads, hashes it and counts its symbols into its own histogram column (no atomics, no bank
  // conflicts), so the input is read once here and its latency is overlapped eight loads deep.
  uint32_t* hist32 = reinterpret_cast<uint32_t*>(sm.hist);
  for (int i = lane; i < 256 * kLanes / 2; i += kLanes) hist32[i] = 0;
  __syncwarp();
  const uint32_t vectors = static_cast<uint32_t>(bytes / 16);
  const uint4* in16 = reinterpret_cast<const uint4*>(in);
  uint64_t slice_begin, slice_end;
  SliceOf(bytes, (chunk_elements * kElementBytes) / kLanes, lane, &slice_begin, &slice_end);
  const uint32_t slice_len = static_cast<uint32_t>(slice_end - slice_begin);
  const uint64_t digest = Xxh64Vectors<true>(in + slice_begin, slice_len, 0, [&](uint4 q) {
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if constexpr (kElementBytes == 2) {
        ++sm.hist[CodedByte16(static_cast<uint16_t>(w[k])) * kLanes + lane];
        ++sm.hist[CodedByte16(static_cast<uint16_t>(w[k] >> 16)) * kLanes + lane];
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) ++sm.hist[((w[k] >> (8 * j)) & 0xFF) * kLanes + lane];
      }
    }
  });
  // The slice's last len % 32 bytes (whole elements: slices start at multiples of 32 bytes).
  for (uint64_t i = (slice_begin + slice_len / 32 * 32) / kElementBytes;
       i < slice_end / kElementBytes; ++i) {
    ++sm.hist[CodedOf<kElementBytes>(LoadElement<kElementBytes>(in, static_cast<uint32_t>(i))) *
                  kLanes +
              lane];
  }
  __syncwarp();
  // Lane l sums symbols l, l + 32, ...; the rotation spreads the lanes over the banks.
  uint32_t count[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int s = lane + kLanes * j;
    uint32_t sum = 0;
    for (int w = 0; w < kLanes / 2; ++w) {
      const uint32_t pair = hist32[s * (kLanes / 2) + ((w + lane) & (kLanes / 2 - 1))];
      sum += (pair & 0xFFFF) + (pair >> 16);
    }
    count[j] = sum;
  }
  __syncwarp();  // the histogram's memory is reused below

  const uint32_t check = CombineDigests(digest, c, sm.digests, lane);

  // Present symbols, their range, and their sort keys (order fixed by the sort below).
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

  const uint32_t raw_bytes = n * (kElementBytes - 1);
  const uint32_t stored_size = static_cast<uint32_t>(RoundUp4(bytes));
  uint8_t kind = 0;
  uint32_t size = stored_size;
  uint32_t words = 0;
  if (present == 1) {
    const uint32_t constant_size = static_cast<uint32_t>(RoundUp4(kConstantRawOffset + raw_bytes));
    if (constant_size < stored_size) {
      kind = kKindConstant;
      size = constant_size;
    }
  } else {
    // Rank sort (keys are distinct), then the shared length construction on one lane.
    for (int i = lane; i < present; i += kLanes) {
      const uint32_t key = sm.t.keys[i];
      int rank = 0;
      for (int j = 0; j < present; ++j) rank += sm.t.keys[j] < key;
      sm.t.sorted[rank] = key;
    }
    __syncwarp();
    if (lane == 0) LengthsFromSorted(sm.t.sorted, present, sm.t.work, sm.t.lengths);
    __syncwarp();
    // Exact lane sizes. Lane l's symbols are elements l, l + 32, ...; reading 16-byte vectors
    // instead, vector v holds elements of lanes 8 (v % 4) + j, j < 8 (for 2-byte elements; 16
    // (v % 2) + j, j < 16, for 1-byte), and thread t only reads vectors v = t (mod 32), so it
    // sums those lanes' bits in registers and the warp then regroups them.
    constexpr int kPerVector = 16 / kElementBytes;
    uint32_t part[kPerVector] = {};
    auto add_bits = [&](uint4 q) {
      const uint32_t w[4] = {q.x, q.y, q.z, q.w};
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
    };
    // Eight vectors per lane in flight, double-buffered: the chunk is read again here (from L2
    // when it is still there), and its latency would otherwise be paid once per batch.
    constexpr int kBatch = 8;
    uint4 q[kBatch];
    auto load_batch = [&](uint32_t v0, uint4* dst) {
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const uint32_t v = v0 + u * kLanes;
        dst[u] = v < vectors ? __ldg(in16 + v) : make_uint4(0, 0, 0, 0);
      }
    };
    load_batch(lane, q);
    for (uint32_t v0 = lane; v0 < vectors; v0 += kBatch * kLanes) {
      uint4 next[kBatch];
      const bool more = v0 + kBatch * kLanes < vectors;
      if (more) load_batch(v0 + kBatch * kLanes, next);
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        if (v0 + u * kLanes < vectors) add_bits(q[u]);
      }
      if (more) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) q[u] = next[u];
      }
    }
    // Threads t and t' read vectors of the same lanes when t = t' (mod 32 / kPerVector).
    constexpr int kGroups = kLanes / kPerVector;
#pragma unroll
    for (int j = 0; j < kPerVector; ++j) {
#pragma unroll
      for (int d = kGroups; d < kLanes; d *= 2) part[j] += __shfl_xor_sync(kFullMask, part[j], d);
    }
    uint32_t bits = 0;
#pragma unroll
    for (int j = 0; j < kPerVector; ++j) {
      const uint32_t v = __shfl_sync(kFullMask, part[j], lane / kPerVector);
      if (lane % kPerVector == j) bits = v;
    }
    // Elements after the last whole vector (the end of a frame only), by their own lane.
    const uint32_t tail = vectors * kPerVector;
    for (uint32_t i = tail + ((lane - tail) % kLanes); i < n; i += kLanes) {
      bits += sm.t.lengths[CodedOf<kElementBytes>(LoadElement<kElementBytes>(in, i))];
    }
    words = (bits + 31) / 32;
    uint32_t total_words = words;
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) total_words += __shfl_xor_sync(kFullMask, total_words, d);
    const uint32_t huffman_size = static_cast<uint32_t>(kHuffmanRawOffset + RoundUp4(raw_bytes) +
                                                        NibbleBytes(min_symbol, max_symbol)) +
                                  4 * total_words;
    if (huffman_size < stored_size) {
      kind = kKindHuffman;
      size = huffman_size;
    }
  }
  plan.lane_words[lane] = static_cast<uint16_t>(words);
  for (int s = lane; s < 256; s += kLanes) plan.lengths[s] = sm.t.lengths[s];
  if (lane == 0) {
    plan.body_bytes = size;
    plan.check = check;
    plan.kind = kind;
    plan.min_symbol = static_cast<uint8_t>(min_symbol);
    plan.max_symbol = static_cast<uint8_t>(max_symbol);
  }
}

template <int kElementBytes>
__global__ void __launch_bounds__(kLanes) PlanKernel(BatchView b) {
  __shared__ PlanShared sm;
  PlanChunk<kElementBytes>(b, sm, threadIdx.x);
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

// Steps per tile of the write kernel: the warp stages 16 x 32 elements in shared memory with
// 16-byte asynchronous copies, two tiles ahead, writes their raw bytes straight out (coalesced
// 4-byte stores) and parks each element's code in shared memory, from where each lane takes its
// strided elements' codes.
constexpr int kTileSteps = 16;
constexpr int kTileElements = kTileSteps * kLanes;
constexpr int kStages = 3;

struct WriteShared {
  uint32_t entries[256];  // code | length << 16
  uint16_t codes[256];
  uint8_t lengths[256];
  uint32_t tile[kTileElements];                  // the entry of each element of the tile
  uint4 stage[kStages][kTileElements * 2 / 16];  // input tiles t, t+1, t+2 (16-bit elements)
  // Words each lane completes in a tile (at most 6: 16 codes of at most 11 bits after fewer
  // than 32 pending bits), written to global memory after the tile: a store straight from the
  // bit accumulator would stall its next update until the store has read the register.
  uint32_t words_out[8][kLanes];
};

// One warp per chunk: writes the body the plan chose.
template <int kElementBytes>
__device__ void WriteChunk(const BatchView& b, WriteShared& sm, uint64_t unit, int lane) {
  const ItemDesc& it = b.items[FindItem(b.items, b.num_items, unit)];
  const uint64_t c = unit - it.first_unit;
  const uint64_t chunk_elements = uint64_t{1} << b.chunk_log2;
  const uint64_t first = c * chunk_elements;
  const uint32_t n = static_cast<uint32_t>(Min64(chunk_elements, it.elements - first));
  const uint8_t* in = it.in + first * kElementBytes;
  const uint32_t bytes = n * kElementBytes;
  const ChunkPlan& plan = b.plans[unit];
  uint8_t* body = it.out + kHeaderBytes + kDirEntryBytes * it.num_chunks + plan.offset;
  const uint32_t raw_bytes = n * (kElementBytes - 1);

  if (plan.kind == 0) {  // stored: the bytes, then zeros to a multiple of 4
    const uint4* in16 = reinterpret_cast<const uint4*>(in);
    uint32_t* body32 = reinterpret_cast<uint32_t*>(body);
    for (uint32_t v = lane; v < bytes / 16; v += kLanes) {
      const uint4 q = in16[v];
      body32[4 * v] = q.x;
      body32[4 * v + 1] = q.y;
      body32[4 * v + 2] = q.z;
      body32[4 * v + 3] = q.w;
    }
    const uint32_t* in32 = reinterpret_cast<const uint32_t*>(in);
    for (uint32_t w = (bytes / 16) * 4 + lane; w < bytes / 4; w += kLanes) body32[w] = in32[w];
    if (lane == 0 && bytes % 4 != 0) {
      uint32_t last = 0;
      for (uint32_t i = bytes & ~3u; i < bytes; ++i) last |= uint32_t{in[i]} << (8 * (i % 4));
      body32[bytes / 4] = last;
    }
    return;
  }

  const size_t raw_offset = plan.kind == kKindConstant ? kConstantRawOffset : kHuffmanRawOffset;
  uint8_t* raw = body + raw_offset;
  if (lane == 0) {
    body[0] = plan.kind;
    body[1] = plan.min_symbol;
    body[2] = plan.kind == kKindConstant ? 0 : plan.max_symbol;
    body[3] = 0;
    for (uint32_t i = raw_bytes; i < RoundUp4(raw_bytes); ++i) raw[i] = 0;
  }
  if (plan.kind == kKindConstant) {
    if constexpr (kElementBytes == 2) {
      for (uint32_t i = lane; i < n; i += kLanes) raw[i] = RawByte16(LoadElement<2>(in, i));
    }
    return;
  }

  // Huffman: lane table, nibbles, codes, then every lane encodes its symbols.
  StoreLe16(body + kHuffmanPrefixBytes + 2 * lane, plan.lane_words[lane]);
  const int min_symbol = plan.min_symbol;
  const int range = plan.max_symbol - min_symbol + 1;
  const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
  const uint32_t nibble_bytes = static_cast<uint32_t>(NibbleBytes(min_symbol, plan.max_symbol));
  for (uint32_t k = lane; k < nibble_bytes; k += kLanes) {
    const int lo = 2 * static_cast<int>(k);
    const uint32_t a = lo < range ? plan.lengths[min_symbol + lo] : 0;
    const uint32_t h = lo + 1 < range ? plan.lengths[min_symbol + lo + 1] : 0;
    body[nibbles_offset + k] = static_cast<uint8_t>(a | h << 4);
  }
  for (int s = lane; s < 256; s += kLanes) sm.lengths[s] = plan.lengths[s];
  __syncwarp();
  CanonicalCodesWarp(sm.lengths, sm.codes, lane);
  __syncwarp();
  for (int s = lane; s < 256; s += kLanes) {
    sm.entries[s] = sm.codes[s] | uint32_t{sm.lengths[s]} << 16;
  }

  const uint32_t words = plan.lane_words[lane];
  uint32_t start = words;
#pragma unroll
  for (int d = 1; d < kLanes; d *= 2) {
    const uint32_t v = __shfl_up_sync(kFullMask, start, d);
    if (lane >= d) start += v;
  }
  start -= words;  // exclusive
  uint32_t* out = reinterpret_cast<uint32_t*>(body + nibbles_offset + nibble_bytes) + start;
  uint64_t acc = 0;
  uint32_t pending = 0;
  uint32_t w = 0;
  // Software pipelining: tile t+2's input is copied into shared memory while tile t is encoded;
  // parking a tile writes its raw bytes out and its entries into sm.tile.
  constexpr int kVectorsPerLane = kTileElements * kElementBytes / 16 / kLanes;
  constexpr int kPerVector = 16 / kElementBytes;
  auto stage_tile = [&](uint32_t tile_first) {
    if (tile_first < n) {
      const uint32_t whole = min(static_cast<uint32_t>(kTileElements), n - tile_first) / kPerVector;
      const uint4* src = reinterpret_cast<const uint4*>(in + uint64_t{tile_first} * kElementBytes);
      uint4* dst = sm.stage[(tile_first / kTileElements) % kStages];
#pragma unroll
      for (int u = 0; u < kVectorsPerLane; ++u) {
        const uint32_t v = lane + u * kLanes;
        if (v < whole) CpAsync16(dst + v, src + v);
      }
    }
    CpAsyncCommit();  // one group per tile, empty past the end, so that waits count tiles
  };
  auto park_tile = [&](uint32_t tile_first) {
    const uint32_t tile_n = min(static_cast<uint32_t>(kTileElements), n - tile_first);
    const uint32_t whole = tile_n / kPerVector;  // vectors of the tile staged by stage_tile
    const uint4* staged = sm.stage[(tile_first / kTileElements) % kStages];
#pragma unroll
    for (int u = 0; u < kVectorsPerLane; ++u) {
      const uint32_t v = lane + u * kLanes;
      if (v >= whole) continue;
      const uint4 q = staged[v];
      const uint32_t x[4] = {q.x, q.y, q.z, q.w};
      if constexpr (kElementBytes == 2) {
        uint32_t r[2];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t lo = x[k] & 0xFFFF;
          const uint32_t hi = x[k] >> 16;
          sm.tile[kPerVector * v + 2 * k] = sm.entries[CodedByte16(static_cast<uint16_t>(lo))];
          sm.tile[kPerVector * v + 2 * k + 1] = sm.entries[CodedByte16(static_cast<uint16_t>(hi))];
          // Raw bytes of the two elements: sign | low 7 mantissa bits, i.e. bytes 0 and 2 of
          // the word with bit 7 replaced by the element's bit 15.
          const uint32_t two = (x[k] & 0x007F007Fu) | ((x[k] >> 8) & 0x00800080u);
          const uint32_t packed = __byte_perm(two, 0, 0x4420);  // bytes 0, 2 -> low half
          if (k % 2 == 0) {
            r[k / 2] = packed;
          } else {
            r[k / 2] |= packed << 16;
          }
        }
        uint32_t* raw32 = reinterpret_cast<uint32_t*>(raw + tile_first + kPerVector * v);
        raw32[0] = r[0];
        raw32[1] = r[1];
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            sm.tile[kPerVector * v + 4 * k + j] = sm.entries[(x[k] >> (8 * j)) & 0xFF];
          }
        }
      }
    }
    // Elements after the last whole vector (the end of a frame only).
    const uint8_t* src = in + uint64_t{tile_first} * kElementBytes;
    for (uint32_t i = whole * kPerVector + lane; i < tile_n; i += kLanes) {
      const uint32_t x = LoadElement<kElementBytes>(src, i);
      sm.tile[i] = sm.entries[CodedOf<kElementBytes>(x)];
      if constexpr (kElementBytes == 2) raw[tile_first + i] = RawByte16(static_cast<uint16_t>(x));
    }
  };
  stage_tile(0);
  stage_tile(kTileElements);
  for (uint32_t tile_first = 0; tile_first < n; tile_first += kTileElements) {
    const uint32_t tile_n = min(static_cast<uint32_t>(kTileElements), n - tile_first);
    stage_tile(tile_first + 2 * kTileElements);
    CpAsyncWait<2>();  // this lane's copies of this tile have landed...
    __syncwarp();      // ...and everyone's; entries and the previous tile's codes are done
    park_tile(tile_first);
    __syncwarp();       // the tile is parked
    uint32_t done = 0;  // words completed in this tile
    for (uint32_t t0 = 0; t0 < tile_n; t0 += 4 * kLanes) {
      // Four steps' entries loaded at once (an entry of 0 past the tile adds nothing).
      uint32_t entry[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const uint32_t t = t0 + u * kLanes + lane;
        entry[u] = t < tile_n ? sm.tile[t] : 0u;
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        acc |= uint64_t{entry[u] & 0xFFFF} << pending;
        pending += entry[u] >> 16;
        if (pending >= 32) {
          sm.words_out[done++][lane] = static_cast<uint32_t>(acc);
          acc >>= 32;
          pending -= 32;
        }
      }
    }
#pragma unroll
    for (uint32_t u = 0; u < 8; ++u) {
      if (u < done) out[w + u] = sm.words_out[u][lane];
    }
    w += done;
    __syncwarp();  // the tile's codes and staged input are consumed
  }
  if (pending > 0) out[w] = static_cast<uint32_t>(acc);
}

template <int kElementBytes>
__global__ void __launch_bounds__(kWriteWarps* kLanes, 4) WriteKernel(BatchView b) {
  __shared__ WriteShared sm[kWriteWarps];
  const int warp = threadIdx.x / kLanes;
  const uint64_t unit = uint64_t{blockIdx.x} * kWriteWarps + warp;
  if (unit >= b.num_units) return;
  WriteChunk<kElementBytes>(b, sm[warp], unit, threadIdx.x % kLanes);
}

template <int kElementBytes>
cudaError_t LaunchEncodeFor(const BatchView& b, cudaStream_t stream) {
  if (b.num_units > 0) {
    PlanKernel<kElementBytes><<<static_cast<unsigned>(b.num_units), kLanes, 0, stream>>>(b);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  ScanKernel<<<b.num_items, kScanThreads, 0, stream>>>(b);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  if (b.num_units > 0) {
    const unsigned blocks = static_cast<unsigned>((b.num_units + kWriteWarps - 1) / kWriteWarps);
    WriteKernel<kElementBytes><<<blocks, kWriteWarps * kLanes, 0, stream>>>(b);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchEncode(const BatchView& batch, cudaStream_t stream) {
  return ElementBytes(batch.dtype) == 2 ? LaunchEncodeFor<2>(batch, stream)
                                        : LaunchEncodeFor<1>(batch, stream);
}

}  // namespace kvtier::kvz::gpu
