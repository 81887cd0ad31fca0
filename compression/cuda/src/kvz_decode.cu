// The kvz decoder on the GPU: one warp per chunk, lane l decoding lane l of the chunk
// (docs/format.md). Each table lookup yields up to three symbols; a lane packs its symbols four
// to a word and stores them in shared memory, and every 512 elements (a tile) the warp joins
// them with their raw bytes and writes the tile with coalesced stores. It checks what the CPU
// decoder (compression/src/chunk_decoder.cc) checks, and never reads outside the frame nor
// writes outside the chunk's elements, whatever the bytes.
#include "huffman.h"
#include "kvz_device.cuh"

namespace kvtier::kvz::gpu {
namespace {

// Two warps per block keep the block's shared memory (2 x 12.25 KiB) under the 48 KiB static
// limit while 16 warps still fit on an SM: a 64 MiB batch of bf16 (2048 chunks) is one wave.
constexpr int kDecodeWarps = 2;
constexpr int kDecodeBlocksPerSm = 8;

// A tile is 16 symbols of every lane, i.e. 512 consecutive elements: its symbols are gathered in
// shared memory, then joined with their raw bytes and written with wide coalesced stores.
constexpr int kTileSteps = 16;
constexpr int kTileElements = kTileSteps * kLanes;
constexpr int kTileWords = kTileSteps / 4;  // a lane's symbols of a tile, four to a word
// Symbol words of two tiles: a lane may decode up to kRunAhead symbols into the next tile while
// the slowest lane finishes this one (lanes need different numbers of lookups per tile; letting
// the fast ones run on saves about a fifth of the warp's lookup steps).
constexpr int kSymRows = 2 * kTileWords;
constexpr uint32_t kRunAhead = 8;

// A lookup-table entry, indexed by the next 11 bits of a lane: up to three symbols (bits 0-7,
// 8-15, 16-23; zero where absent), the bits their codes take together (24-28) and their number
// (29-31). Every code whose bits fit in the window after the previous ones is taken, so a bf16
// chunk (mostly 2-4-bit codes) yields 2.8 symbols per lookup on the KV-like data. The two
// fields are wide enough to be summed over the two lookups between refills.
constexpr int kEntryMetaShift = 24;
constexpr int kEntryCountShift = 29;
constexpr uint32_t kEntrySymbolsMask = 0xFFFFFF;
constexpr uint32_t kMetaBitsMask = 31;
constexpr uint32_t kMetaCountShift = kEntryCountShift - kEntryMetaShift;
constexpr uint32_t kWindowMask = (1u << kMaxCodeLength) - 1;

// Lane l's bitstream is staged in a ring of shared-memory words (ring[slot][l]: conflict-free),
// loaded as aligned 16-byte blocks (one warp load touches 32 lines, so wide loads are 4x fewer).
constexpr int kRingSlots = 16;
// A round is two refills of 32 bits, each followed by two lookups (at most 22 bits): the 64-bit
// bit buffer then always holds the bits a lookup needs without a check per lookup.
constexpr int kRefillsPerRound = 2;
constexpr int kLookupsPerRefill = 2;
constexpr uint32_t kRoundSymbols = 3 * kRefillsPerRound * kLookupsPerRefill;
static_assert(kRunAhead + kRoundSymbols <= 4 * kTileWords + 4,
              "a lane's run-ahead must stay within the next tile's symbol rows");

constexpr int kSymRowBytes = 4 * kLanes;
constexpr int kSymBytes = kSymRows * kSymRowBytes;

// A warp's shared memory besides its table.
struct WarpShared {
  union {
    uint16_t first[1 << kMaxCodeLength];  // while building: first symbol | its length << 8
    struct {
      uint32_t sym[kSymRows][kLanes];  // sym[w % kSymRows][l]: lane l's word w of symbols
      uint32_t ring[kRingSlots][kLanes];
    } dec;
  } u;
  uint8_t lengths[256];  // code length per symbol: table build, and a lane's last lookup
  // Slice digests for the chunk check, filled while a Huffman body is decoded (DecodeLanes)
  // or after another body is written.
  uint64_t digests[kLanes];
};

// A warp's view of its shared memory.
struct DecodeShared {
  uint32_t* table;  // 1 << kMaxCodeLength entries; while building, its first 512 B: codes
  WarpShared& ws;
};

// Shared memory by 32-bit address, for the addresses formed in the decode loop (fewer
// instructions than generic pointers into a warp's part of the block's shared memory).
__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// A load of data written earlier in the kernel by ordinary stores (the ring): ordered after them.
__device__ __forceinline__ uint32_t LoadShared(uint32_t address) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(address) : "memory");
  return v;
}
// A table lookup: the table is complete before the decode loop starts (__syncwarp), so these
// loads need no ordering and may be scheduled freely.
__device__ __forceinline__ uint32_t LoadTable(uint32_t address) {
  uint32_t v;
  asm("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(address));
  return v;
}
__device__ __forceinline__ void StoreShared(uint32_t address, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;" ::"r"(address), "r"(v) : "memory");
}

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

// The three-symbol lookup table from the code lengths in ws.lengths. Every 11-bit window is
// filled since the code is complete: first the first symbol of every window, then each entry
// from the first symbols of the window and of what is left of it after one and two codes (zeros
// shifted in above, so a code is taken only if it lies wholly in the window).
__device__ void BuildTable(const DecodeShared& sm, int min_symbol, int max_symbol, int lane) {
  uint16_t* codes = reinterpret_cast<uint16_t*>(sm.table);
  CanonicalCodesWarp(sm.ws.lengths, codes, lane);
  __syncwarp();
  uint16_t* first = sm.ws.u.first;
  for (int s = min_symbol; s <= max_symbol; ++s) {
    const uint32_t len = sm.ws.lengths[s];
    if (len == 0) continue;
    const uint16_t f = static_cast<uint16_t>(s | len << 8);
    const uint32_t code = codes[s];
    for (uint32_t j = lane; j < (1u << (kMaxCodeLength - len)); j += kLanes) {
      first[code | (j << len)] = f;
    }
  }
  __syncwarp();  // the codes are dead; the table may be written
#pragma unroll 4
  for (uint32_t i = lane; i < (1u << kMaxCodeLength); i += kLanes) {
    const uint32_t f0 = first[i];
    const uint32_t l0 = f0 >> 8;
    const uint32_t f1 = first[i >> l0];
    const uint32_t l1 = f1 >> 8;
    const uint32_t f2 = first[(i >> l0) >> l1];
    const uint32_t l2 = f2 >> 8;
    const bool two = l0 + l1 <= kMaxCodeLength;
    const bool three = two && l0 + l1 + l2 <= kMaxCodeLength;
    // Bytes 2 and 3 of the 16-bit f0 are zero: [f0, f1, 0, 0] and [f0, f1, f2, 0].
    const uint32_t s01 = __byte_perm(f0, f1, 0x3340);
    const uint32_t s012 = __byte_perm(s01, f2, 0x3410);
    const uint32_t symbols = three ? s012 : (two ? s01 : (f0 & 0xFF));
    const uint32_t bits = l0 + (two ? l1 : 0u) + (three ? l2 : 0u);
    const uint32_t count = 1u + two + three;
    sm.table[i] = symbols | bits << kEntryMetaShift | count << kEntryCountShift;
  }
  __syncwarp();  // the table is complete; u.first is dead, the ring may be written
}

// One lane's bitstream: its words in frame memory, staged through the lane's column of the
// shared ring in aligned 16-byte blocks. Words [rd, fetched) are staged; a block issued at the
// start of a tile (`pending`) is parked at its end, so that its latency hides behind the tile.
struct LaneStream {
  const uint32_t* words_ptr;  // the lane's word 0 (4-byte aligned)
  uint32_t words;             // the lane's size in words
  uint32_t align;             // (frame word index of word 0) % 4
  int32_t safe_blocks_end;    // a block starting at lane word j lies in the frame iff j + 4 <= this
  uint32_t fetched = 0;
  uint32_t fence = 0;  // fetched, or ~0 once every word is staged
  uint4 pending = {};
  int32_t pending_start = 0;
  bool has_pending = false;

  // Lane word index of the 16-byte block that holds word j.
  __device__ int32_t BlockOf(uint32_t j) const {
    return static_cast<int32_t>(j) - static_cast<int32_t>((align + j) & 3);
  }
  // The block at lane word `start`; its words outside the lane read as anything but never
  // outside the frame: a block that would cross the frame's end is read word by word.
  __device__ uint4 Load(int32_t start) const {
    if (start + 4 <= safe_blocks_end) {
      return __ldg(reinterpret_cast<const uint4*>(words_ptr + start));
    }
    uint32_t v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int32_t j = start + u;
      v[u] = j >= 0 && j < static_cast<int32_t>(words) ? __ldg(words_ptr + j) : 0u;
    }
    return make_uint4(v[0], v[1], v[2], v[3]);
  }
  // Stages the block's words from `fetched` on, as far as the ring holds (rd + kRingSlots).
  __device__ void Park(WarpShared& ws, uint4 block, int32_t start, uint32_t rd, int lane) {
    const uint32_t v[4] = {block.x, block.y, block.z, block.w};
    const uint32_t end = min(min(static_cast<uint32_t>(start + 4), words), rd + kRingSlots);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const uint32_t j = static_cast<uint32_t>(start + u);
      if (start + u >= 0 && j >= fetched && j < end) ws.u.dec.ring[j % kRingSlots][lane] = v[u];
    }
    fetched = max(fetched, end);
    fence = fetched < words ? fetched : ~0u;
  }
  // The first kRingSlots - 3 or more words (all of a shorter lane), read before decoding.
  __device__ void Fill(WarpShared& ws, int lane) {
    const int32_t start = BlockOf(0);
    uint4 blocks[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      blocks[k] = words > 0 ? Load(start + 4 * k) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) Park(ws, blocks[k], start + 4 * k, 0, lane);
  }
  // At a tile's start: the next block, if the ring has room for it (at most 12 staged).
  __device__ void Prefetch(uint32_t rd) {
    if (has_pending || fetched >= words || fetched > rd + kRingSlots - 4) return;
    pending_start = BlockOf(fetched);
    pending = Load(pending_start);
    has_pending = true;
  }
  __device__ void ParkPending(WarpShared& ws, uint32_t rd, int lane) {
    if (!has_pending) return;
    Park(ws, pending, pending_start, rd, lane);
    has_pending = false;
  }
  // When a round could need a word not staged yet (rare: a lane decoding many long codes in a
  // row): the pending block now, else one read synchronously.
  __device__ void Restage(WarpShared& ws, uint32_t rd, int lane) {
    if (has_pending) return ParkPending(ws, rd, lane);
    const int32_t start = BlockOf(fetched);
    Park(ws, Load(start), start, rd, lane);
  }
};

// One lane's bit reader: hi:lo holds `avail` bits of the stream (zeros above), `rd` words of
// which have been shifted in; `word` is staged word rd, read a refill ahead. The lookups since
// the last Settle are summed in `taken` (their entries' bits and counts) and applied at once.
struct BitReader {
  uint32_t lo = 0;
  uint32_t hi = 0;
  uint32_t avail = 0;
  uint32_t taken = 0;
  uint32_t rd = 0;
  uint32_t word = 0;
  uint32_t ring;   // shared address of ring[0][lane]
  uint32_t table;  // shared address of the table

  __device__ void Settle(uint32_t& got) {
    avail -= taken & kMetaBitsMask;
    got += taken >> kMetaCountShift;
    taken = 0;
  }
  __device__ void Refill() {
    if (avail <= 32) {
      const uint64_t w = static_cast<uint64_t>(word) << avail;
      lo |= static_cast<uint32_t>(w);
      hi |= static_cast<uint32_t>(w >> 32);
      avail += 32;
      ++rd;
      word = LoadShared(ring + (rd % kRingSlots) * kSymRowBytes);
    }
  }
  __device__ uint32_t Entry() const { return LoadTable(table + ((lo & kWindowMask) << 2)); }
  // Drops the entry's bits: the funnel shifts use their amount mod 32, i.e. the bits field.
  __device__ void Take(uint32_t e) {
    const uint32_t meta = e >> kEntryMetaShift;
    lo = __funnelshift_r(lo, hi, meta);
    hi = __funnelshift_r(hi, 0, meta);
    taken += meta;
  }
  // Bits taken from the stream so far (after Settle).
  __device__ uint32_t Consumed() const { return 32 * rd - avail; }
};

// A lane's decoded symbols, four to a word, stored into its column of the symbol rows.
struct SymbolWords {
  uint32_t acc = 0;   // symbols not yet stored, the first in the low byte; zeros above `bits`
  uint32_t bits = 0;  // 8 x symbols in acc, < 32 between appends
  uint32_t slot;      // shared address of the lane's slot for its next word
  uint32_t rows_end;  // shared address just past the rows

  __device__ void Store(uint32_t v) {
    StoreShared(slot, v);
    slot += kSymRowBytes;
    if (slot >= rows_end) slot -= kSymBytes;
  }
  // Appends `count` symbols (the low bytes of `symbols`). A multiply places them above the
  // ones held; its high half is what overflows into the next word.
  __device__ void Append(uint32_t symbols, uint32_t count) {
    const uint32_t m = 1u << bits;
    const uint32_t full = acc + symbols * m;
    const uint32_t spill = __umulhi(symbols, m);
    bits += 8 * count;
    const bool store = bits >= 32;
    if (store) Store(full);
    acc = store ? spill : full;
    bits &= 31;
  }
  // After the lane's last symbol: its partial last word.
  __device__ void Flush() {
    if (bits == 0) return;
    Store(acc);
    bits = 0;
  }
};

__device__ __forceinline__ void Lookup(BitReader& reader, SymbolWords& out) {
  const uint32_t e = reader.Entry();
  reader.Take(e);
  out.Append(e & kEntrySymbolsMask, e >> kEntryCountShift);
}

// The lane's last lookups, one at a time: an entry may hold symbols past the lane's last, whose
// bits must not count as consumed (the lane's size is checked against the bits used).
// REQUIRES: reader settled.
__device__ void LastLookup(const WarpShared& ws, BitReader& reader, SymbolWords& out, uint32_t& got,
                           uint32_t count) {
  const uint32_t e = reader.Entry();
  uint32_t n = e >> kEntryCountShift;
  uint32_t bits = (e >> kEntryMetaShift) & kMetaBitsMask;
  const uint32_t left = count - got;
  if (n > left) {
    n = left;
    bits = ws.lengths[e & 0xFF] + (left > 1 ? ws.lengths[(e >> 8) & 0xFF] : 0u);
  }
  reader.lo = __funnelshift_r(reader.lo, reader.hi, bits);
  reader.hi = __funnelshift_r(reader.hi, 0, bits);
  reader.avail -= bits;
  got += n;
  out.Append(e & kEntrySymbolsMask, n);
}

// Joins tile words: `coded` and `raw` hold four elements' bytes; returns the four 16-bit
// elements as two words (format.md: x = (raw & 0x80) << 8 | coded << 7 | (raw & 0x7F)).
__device__ __forceinline__ uint2 Join4(uint32_t coded, uint32_t raw) {
  constexpr uint32_t kHigh = 0x80808080u;
  const uint32_t hi = (raw & kHigh) | ((coded >> 1) & ~kHigh);  // sign | coded >> 1
  const uint32_t lo = ((coded << 7) & kHigh) | (raw & ~kHigh);  // coded bit 0 | raw bits 0-6
  return make_uint2(__byte_perm(lo, hi, 0x5140), __byte_perm(lo, hi, 0x7362));
}

// In a tile, lane l handles the 4 x 4 block of elements at rows 4(l / 8) + i (i < 4; a row is
// one symbol of every lane) and columns 4(l % 8) .. + 3: its first element's offset in the tile.
__device__ __forceinline__ uint32_t BlockOffset(int lane) {
  return kLanes * 4 * (lane / 8) + 4 * (lane % 8);
}

// The raw-plane words of lane `lane`'s block of tile t (16-bit dtypes); words past the plane
// (a partial last tile) read as zero.
__device__ __forceinline__ void LoadRaw(const uint8_t* raw_plane, uint32_t raw_bytes, uint32_t t,
                                        int lane, uint32_t (&raw)[4]) {
  const uint32_t first = t * kTileElements + BlockOffset(lane);
  const uint32_t* p = reinterpret_cast<const uint32_t*>(raw_plane + first);
  const bool whole = (t + 1) * kTileElements <= raw_bytes;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    raw[i] = whole || first + kLanes * i < raw_bytes ? __ldg(p + kLanes / 4 * i) : 0u;
  }
}

// Writes tile `t`: lane l reads words l / 8 of lanes 4(l % 8) .. + 3 (its block's symbols, one
// lane's per word), transposes them in registers and writes each row's 4 elements at once.
template <int kElementBytes>
__device__ void WriteTile(const WarpShared& ws, uint32_t t, const uint32_t (&raw)[4], uint8_t* out,
                          uint32_t n, int lane) {
  const uint32_t m = lane / 8;
  const uint32_t s = 4 * (lane % 8);
  const uint4 v = *reinterpret_cast<const uint4*>(&ws.u.dec.sym[(t % 2) * kTileWords + m][s]);
  const uint32_t a = __byte_perm(v.x, v.y, 0x5140);
  const uint32_t b = __byte_perm(v.x, v.y, 0x7362);
  const uint32_t c = __byte_perm(v.z, v.w, 0x5140);
  const uint32_t d = __byte_perm(v.z, v.w, 0x7362);
  const uint32_t rows[4] = {__byte_perm(a, c, 0x5410), __byte_perm(a, c, 0x7632),
                            __byte_perm(b, d, 0x5410), __byte_perm(b, d, 0x7632)};
  const uint32_t first = t * kTileElements + BlockOffset(lane);
  uint8_t* dst = out + uint64_t{first} * kElementBytes;
  const bool whole = (t + 1) * kTileElements <= n;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint8_t* row = dst + kLanes * kElementBytes * i;
    const uint32_t e = first + kLanes * i;
    if constexpr (kElementBytes == 2) {
      const uint2 o = Join4(rows[i], raw[i]);
      if (whole || e + 4 <= n) {
        *reinterpret_cast<uint2*>(row) = o;
      } else {
        for (uint32_t j = 0; e + j < n; ++j) {
          reinterpret_cast<uint16_t*>(row)[j] =
              static_cast<uint16_t>((j < 2 ? o.x : o.y) >> (16 * (j % 2)));
        }
      }
    } else {
      if (whole || e + 4 <= n) {
        *reinterpret_cast<uint32_t*>(row) = rows[i];
      } else {
        for (uint32_t j = 0; e + j < n; ++j) row[j] = static_cast<uint8_t>(rows[i] >> (8 * j));
      }
    }
  }
}

// The chunk check's slice digests of a quarter of the chunk (slices 8q .. 8q + 7), once its
// bytes are written: lane 4g + a runs XXH64 accumulator a of slice 8q + g over the decoded bytes
// at `out` (`bytes` of them; slices of `slice_bytes`), and lane 4g leaves the slice's digest in
// digests[8q + g]. Hashing each quarter as soon as it is written, rather than the whole chunk
// after its last tile, spreads the read-back of the output (from L2) over the decoding, where
// other warps' lookups hide its latency; at the end of the chunk every warp of a wave used to
// wait for L2 at once. REQUIRES: the writes are visible to the warp (__syncwarp).
__device__ void HashQuarter(const uint8_t* out, uint32_t bytes, uint32_t slice_bytes, int quarter,
                            uint64_t* digests, int lane) {
  const int slice = 8 * quarter + lane / 4;
  const int a = lane % 4;
  const uint32_t begin = min(slice * slice_bytes, bytes);
  const uint32_t end = min((slice + 1) * slice_bytes, bytes);
  const uint8_t* p = out + begin;
  const uint32_t len = end - begin;
  const uint32_t stripes = len / 32;
  const uint64_t* words = reinterpret_cast<const uint64_t*>(p) + a;
  uint64_t acc = XxQuadStart(a);
  constexpr uint32_t kBatch = 8;  // loads in flight
  uint32_t s = 0;
  for (; s + kBatch <= stripes; s += kBatch) {
    uint64_t x[kBatch];
#pragma unroll
    for (uint32_t u = 0; u < kBatch; ++u) x[u] = words[4 * (s + u)];
#pragma unroll
    for (uint32_t u = 0; u < kBatch; ++u) acc = XxRound(acc, x[u]);
  }
  for (; s < stripes; ++s) acc = XxRound(acc, words[4 * s]);
  const uint64_t digest = XxQuadDigest<DeviceLoads>(acc, p, len, stripes, lane);
  if (a == 0) digests[slice] = digest;
}

// Decodes every lane of a Huffman chunk body into `out` (n elements): per tile, rounds of
// lookups until every lane has its 16 symbols, then the tile's elements are written; each
// quarter of the chunk (of `chunk_bytes` when whole) is hashed for the chunk check once written
// (HashQuarter). Returns true (on every lane) if a lane's stream is not exactly its symbols'
// codes and zero fill.
template <int kElementBytes>
__device__ bool DecodeLanes(const DecodeShared& sm, LaneStream& stream, const uint8_t* raw_plane,
                            uint32_t raw_bytes, uint8_t* out, uint32_t n, uint32_t chunk_bytes,
                            bool hash_quarters, int lane) {
  WarpShared& ws = sm.ws;
  const uint32_t count = LaneSymbols(n, lane);
  // The last word, for the zero-fill check at the end, read now while nothing waits for it.
  const uint32_t last_word = stream.words > 0 ? __ldg(stream.words_ptr + stream.words - 1) : 0u;
  stream.Fill(ws, lane);
  __syncwarp();
  BitReader reader;
  reader.ring = SharedAddress(&ws.u.dec.ring[0][lane]);
  reader.table = SharedAddress(sm.table);
  reader.word = LoadShared(reader.ring);
  SymbolWords symbols;
  symbols.slot = SharedAddress(&ws.u.dec.sym[0][lane]);
  symbols.rows_end = SharedAddress(&ws.u.dec.sym[0][0]) + kSymBytes;
  uint32_t got = 0;
  uint32_t raw[4] = {0, 0, 0, 0};
  if constexpr (kElementBytes == 2) LoadRaw(raw_plane, raw_bytes, 0, lane, raw);
  const uint32_t tiles = (n + kTileElements - 1) / kTileElements;
  int quarter = hash_quarters ? 0 : 4;  // the next quarter to hash
  for (uint32_t t = 0; t < tiles; ++t) {
    stream.Prefetch(reader.rd);
    uint32_t next_raw[4] = {0, 0, 0, 0};
    if constexpr (kElementBytes == 2) {
      if (t + 1 < tiles) LoadRaw(raw_plane, raw_bytes, t + 1, lane, next_raw);
    }
    const uint32_t target = min(kTileSteps * (t + 1), count);
    const uint32_t limit = min(kTileSteps * (t + 1) + kRunAhead, count);
    while (__any_sync(kFullMask, got < target)) {
      // A round shifts in at most kRefillsPerRound words and reads the next one ahead.
      while (__any_sync(kFullMask, reader.rd + kRefillsPerRound + 1 > stream.fence)) {
        if (reader.rd + kRefillsPerRound + 1 > stream.fence) {
          stream.Restage(ws, reader.rd, lane);
          reader.word = LoadShared(reader.ring + (reader.rd % kRingSlots) * kSymRowBytes);
        }
      }
      if (got < limit) {
        if (got + kRoundSymbols <= count) {
#pragma unroll
          for (int r = 0; r < kRefillsPerRound; ++r) {
            reader.Settle(got);
            reader.Refill();
#pragma unroll
            for (int k = 0; k < kLookupsPerRefill; ++k) Lookup(reader, symbols);
          }
          reader.Settle(got);
        } else {
          reader.Refill();
          LastLookup(ws, reader, symbols, got, count);
        }
      }
    }
    // The lane's partial last word goes out once it is done, but not before the tile ahead of
    // this one holds it: a lane that ran ahead may finish two tiles early (its last symbols
    // within a round of this tile's end), and the word's slot is then still this tile's.
    if (got >= count && count / kTileSteps <= t + 1) symbols.Flush();
    stream.ParkPending(ws, reader.rd, lane);
    __syncwarp();  // the tile's symbols are stored
    WriteTile<kElementBytes>(ws, t, raw, out, n, lane);
    __syncwarp();  // its rows are read: the tile after next may store into them; its bytes are out
    const uint32_t written = min((t + 1) * kTileElements, n) * kElementBytes;
    while (quarter < 4 && written >= min((quarter + 1) * (chunk_bytes / 4), n * kElementBytes)) {
      HashQuarter(out, n * kElementBytes, chunk_bytes / kLanes, quarter++, ws.digests, lane);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) raw[i] = next_raw[i];
  }
  const uint32_t consumed = reader.Consumed();
  bool bad = (consumed + 31) / 32 != stream.words;
  if (!bad && consumed % 32 != 0) bad = (last_word >> (consumed % 32)) != 0;
  return AnyBad(bad);
}

template <int kElementBytes>
__device__ void DecodeChunk(const BatchView& b, const DecodeShared& sm, uint64_t unit, int lane) {
  const uint32_t item = FindItemWarp(b.items, b.num_items, unit, lane);
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
    for (int s = lane; s < 256; s += kLanes) sm.ws.lengths[s] = 0;
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
        sm.ws.lengths[min_symbol + k] = static_cast<uint8_t>(len);
      }
    }
    for (uint32_t i = raw_bytes + lane; i < RoundUp4(raw_bytes); i += kLanes) {
      bad |= body[kHuffmanRawOffset + i] != 0;
    }
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) kraft += __shfl_xor_sync(kFullMask, kraft, d);
    __syncwarp();
    bad |= kraft != (1u << kMaxCodeLength) || sm.ws.lengths[min_symbol] == 0 ||
           sm.ws.lengths[max_symbol] == 0;
    if (AnyBad(bad)) return Report(b, item, kErrorDataLoss, lane);

    BuildTable(sm, min_symbol, max_symbol, lane);
    const uint64_t lane_word0 = (dir_end + start + lanes_offset) / 4 + start_word;
    LaneStream stream{
        .words_ptr = reinterpret_cast<const uint32_t*>(it.in) + lane_word0,
        .words = words,
        .align = static_cast<uint32_t>(lane_word0 % 4),
        .safe_blocks_end = static_cast<int32_t>(it.in_bytes / 4 - lane_word0),
    };
    if (DecodeLanes<kElementBytes>(sm, stream, body + kHuffmanRawOffset, raw_bytes, out, n,
                                   static_cast<uint32_t>(chunk_elements * kElementBytes),
                                   b.hash_quarters, lane)) {
      return Report(b, item, kErrorDataLoss, lane);
    }
    if (b.hash_quarters) {
      __syncwarp();  // the digests are in
      if (ChunkCheckOf(sm.ws.digests, c) != expected_check) Report(b, item, kErrorDataLoss, lane);
      return;
    }
  } else {
    return Report(b, item, kErrorDataLoss, lane);
  }

  __syncwarp();  // the chunk's elements, written by all lanes, are read back for the check
  const uint32_t check = ChunkCheckWarp<false>(
      out, bytes, (chunk_elements * kElementBytes) / kLanes, c, sm.ws.digests, lane);
  if (check != expected_check) Report(b, item, kErrorDataLoss, lane);
}

// The warp that finishes the batch last copies its error codes to b.errors_out. Each warp's
// reports (atomics in device memory) are made visible before it counts itself done, and the
// last one reads them after seeing every other warp's count.
__device__ void CopyErrorsIfLast(const BatchView& b, int lane) {
  __syncwarp();
  uint32_t last = 0;
  if (lane == 0) {
    __threadfence();
    last = atomicAdd(b.warps_done, 1u) == static_cast<uint32_t>(b.num_units - 1);
  }
  if (__shfl_sync(kFullMask, last, 0) == 0) return;
  __threadfence();
  for (uint32_t i = static_cast<uint32_t>(lane); i < b.num_items; i += kLanes) {
    b.errors_out[i] = atomicExch(&b.errors[i], 0);  // from L2, past any stale L1 line; cleared
  }
  // Every other warp is done, so nothing counts or reports any more: the next batch on this
  // set finds zeros without a step to clear them.
  if (lane == 0) *b.warps_done = 0;
  __threadfence();  // every lane's clearing, before lane 0 publishes the epoch
  __syncwarp();
  if (lane == 0) PublishEpoch(b);
}

template <int kElementBytes>
__device__ __forceinline__ void DecodeWarp(const BatchView& b) {
  __shared__ uint32_t tables[kDecodeWarps][1 << kMaxCodeLength];
  __shared__ alignas(16) WarpShared warp_shared[kDecodeWarps];
  const int warp = threadIdx.x / kLanes;
  const uint64_t unit = uint64_t{blockIdx.x} * kDecodeWarps + warp;
  AllowNextKernel();
  if (unit >= b.num_units) return;
  const int lane = threadIdx.x % kLanes;
  if (lane == 0) WaitForEpoch(b);  // the batch before last on these words is done with them
  __syncwarp();
  const DecodeShared sm{tables[warp], warp_shared[warp]};
  DecodeChunk<kElementBytes>(b, sm, unit, lane);
  // A warp ends only once the kernel before it on the stream has (a no-op unless launched
  // programmatically): the stream's later steps then still find every batch before them done.
  WaitForPreviousKernel();
  if (b.errors_out != nullptr) CopyErrorsIfLast(b, lane);
}

template <int kElementBytes>
__global__ void __launch_bounds__(kDecodeWarps* kLanes, kDecodeBlocksPerSm)
    DecodeKernel(BatchView b) {
  DecodeWarp<kElementBytes>(b);
}

template <int kElementBytes, int kItems>
__global__ void __launch_bounds__(kDecodeWarps* kLanes, kDecodeBlocksPerSm)
    DecodeKernelWithItems(const __grid_constant__ BatchWithItems<kItems> p) {
  DecodeWarp<kElementBytes>(p.View());
}

template <int kElementBytes>
cudaError_t LaunchDecodeWithItems(const BatchView& b, const ItemDesc* host_items, unsigned blocks,
                                  cudaStream_t stream) {
  return LaunchWithItems(b, host_items, [&](const auto& p) {
    constexpr int kSlots = std::decay_t<decltype(p)>::kSlots;
    return LaunchKernel(DecodeKernelWithItems<kElementBytes, kSlots>, p, blocks,
                        kDecodeWarps * kLanes, 0, stream, b.programmatic);
  });
}

}  // namespace

cudaError_t LaunchDecode(const BatchView& batch, cudaStream_t stream, const ItemDesc* host_items) {
  BatchView b = batch;
  b.hash_quarters =
      batch.chunk_log2 >= 14 && b.num_units >= uint64_t{kDecodeWarps * kDecodeBlocksPerSm / 2} *
                                                   static_cast<uint64_t>(batch.sm_count);
  const unsigned blocks = static_cast<unsigned>((b.num_units + kDecodeWarps - 1) / kDecodeWarps);
  if (host_items != nullptr) {
    return ElementBytes(b.dtype) == 2 ? LaunchDecodeWithItems<2>(b, host_items, blocks, stream)
                                      : LaunchDecodeWithItems<1>(b, host_items, blocks, stream);
  }
  if (ElementBytes(b.dtype) == 2) {
    DecodeKernel<2><<<blocks, kDecodeWarps * kLanes, 0, stream>>>(b);
  } else {
    DecodeKernel<1><<<blocks, kDecodeWarps * kLanes, 0, stream>>>(b);
  }
  return cudaGetLastError();
}

}  // namespace kvtier::kvz::gpu
