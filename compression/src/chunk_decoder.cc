// Chunk decoder. Every field of a body is checked before it is used; the lane decoder then
// runs four lanes side by side with one table lookup per symbol, and checks afterwards that
// each lane's codes ended in its last word.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "chunk_codec.h"
#include "cpu_clones.h"
#include "cpu_features.h"
#include "format.h"
#include "huffman.h"
#include "kvtier/common/strings.h"
#include "lane_decoder_avx2.h"

namespace kvtier::kvz {
namespace {

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

absl::Status Corrupt(uint64_t index, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("kvz frame is damaged: chunk ", index, ": ", AbslView(what)));
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// The two-symbol table: for each 11-bit window, the first code's symbol and, when the next
// code fits in the window too, the second's: sym0 | sym1 << 8 | bits << 16 | symbols << 24.
// Exponent codes are mostly 2-4 bits, so most lookups yield two symbols, which halves the
// dependency chain (lookup, shift) that bounds a lane. Returns how many windows hold two
// symbols: under the code's own distribution every window is equally likely, so this over
// 2048 is the share of lookups that yield two symbols.
uint32_t BuildPairTable(const uint16_t* single, uint32_t* pair) {
  uint32_t pairs = 0;
  for (uint32_t i = 0; i < (1u << kMaxCodeLength); ++i) {
    const uint32_t e0 = single[i];
    const uint32_t l0 = e0 >> 8;
    const uint32_t e1 = single[i >> l0];  // the window's remaining bits, zeros above
    const uint32_t l1 = e1 >> 8;
    const bool two = l0 + l1 <= kMaxCodeLength;
    pair[i] = two ? (e0 & 0xFF) | (e1 & 0xFF) << 8 | (l0 + l1) << 16 | 2u << 24
                  : (e0 & 0xFF) | l0 << 16 | 1u << 24;
    pairs += two;
  }
  return pairs;
}

// The same with the two-symbol table, for short codes (bf16 exponents). Lanes 4g..4g+3
// advance side by side for instruction-level parallelism, each at its own pace: a
// reload of a lane's 64-bit window yields at least 57 bits, enough for five lookups of at most
// 11 bits, i.e. up to 10 symbols. A lookup always stores two symbols; when it decoded one, the
// second store lands on the lane's next position and is overwritten by the next lookup, so the
// fast loop runs only while every lane has at least 11 symbols to go.
// Decodes the 32 lanes into `sym` in chunk order (lane l's k-th symbol at k * 32 + l), one
// symbol per lookup. Lane l starts at bit start_bits[l] of `lanes`; consumed[l] receives the
// bits it used. Lanes 4g..4g+3 advance together for instruction-level parallelism; each reload
// of a lane's 64-bit window yields at least 57 bits, enough for five 11-bit codes. For long
// codes (fp16, fp8), where two codes seldom fit in one window.
KVTIER_CODEC_CLONES void DecodeLanesSingle(const uint8_t* lanes, const uint64_t* start_bits,
                                           uint32_t n, const uint16_t* table, uint8_t* sym,
                                           uint64_t* consumed) {
  constexpr uint64_t kMask = (1u << kMaxCodeLength) - 1;
  for (int g = 0; g < kLanes / 4; ++g) {
    const int l0 = 4 * g;
    uint64_t p0 = start_bits[l0], p1 = start_bits[l0 + 1], p2 = start_bits[l0 + 2],
             p3 = start_bits[l0 + 3];
    const uint32_t common = LaneSymbols(n, l0 + 3);  // the fewest of the four
    uint8_t* o = sym + l0;
    uint32_t k = 0;
    for (; k + 5 <= common; k += 5, o += 5 * kLanes) {
      uint64_t b0 = Load64(lanes + (p0 >> 3)) >> (p0 & 7);
      uint64_t b1 = Load64(lanes + (p1 >> 3)) >> (p1 & 7);
      uint64_t b2 = Load64(lanes + (p2 >> 3)) >> (p2 & 7);
      uint64_t b3 = Load64(lanes + (p3 >> 3)) >> (p3 & 7);
#define KVTIER_DECODE_STEP(t)                     \
  {                                               \
    const uint16_t e0 = table[b0 & kMask];        \
    const uint16_t e1 = table[b1 & kMask];        \
    const uint16_t e2 = table[b2 & kMask];        \
    const uint16_t e3 = table[b3 & kMask];        \
    b0 >>= e0 >> 8;                               \
    b1 >>= e1 >> 8;                               \
    b2 >>= e2 >> 8;                               \
    b3 >>= e3 >> 8;                               \
    p0 += e0 >> 8;                                \
    p1 += e1 >> 8;                                \
    p2 += e2 >> 8;                                \
    p3 += e3 >> 8;                                \
    o[(t)*kLanes] = static_cast<uint8_t>(e0);     \
    o[(t)*kLanes + 1] = static_cast<uint8_t>(e1); \
    o[(t)*kLanes + 2] = static_cast<uint8_t>(e2); \
    o[(t)*kLanes + 3] = static_cast<uint8_t>(e3); \
  }
      KVTIER_DECODE_STEP(0)
      KVTIER_DECODE_STEP(1)
      KVTIER_DECODE_STEP(2)
      KVTIER_DECODE_STEP(3)
      KVTIER_DECODE_STEP(4)
#undef KVTIER_DECODE_STEP
    }
    uint64_t* const pos[4] = {&p0, &p1, &p2, &p3};
    for (int j = 0; j < 4; ++j) {
      uint64_t& p = *pos[j];
      const uint32_t count = LaneSymbols(n, l0 + j);
      for (uint32_t kk = k; kk < count; ++kk) {
        const uint16_t e = table[(Load64(lanes + (p >> 3)) >> (p & 7)) & kMask];
        p += e >> 8;
        sym[kk * kLanes + l0 + j] = static_cast<uint8_t>(e);
      }
      consumed[l0 + j] = p - start_bits[l0 + j];
    }
  }
}

KVTIER_CODEC_CLONES void DecodeLanesPairs(const uint8_t* lanes, const uint64_t* start_bits,
                                          uint32_t n, const uint16_t* table, const uint32_t* pair,
                                          uint8_t* sym, uint64_t* consumed) {
  constexpr uint64_t kMask = (1u << kMaxCodeLength) - 1;
  for (int g = 0; g < kLanes / 4; ++g) {
    const int l0 = 4 * g;
    uint64_t p0 = start_bits[l0], p1 = start_bits[l0 + 1], p2 = start_bits[l0 + 2],
             p3 = start_bits[l0 + 3];
    uint8_t* o0 = sym + l0;
    uint8_t* o1 = o0 + 1;
    uint8_t* o2 = o0 + 2;
    uint8_t* o3 = o0 + 3;
    const uint32_t common = LaneSymbols(n, l0 + 3);  // the fewest of the four
    if (common >= 11) {
      const uint8_t* const limit = sym + l0 + size_t{common - 11} * kLanes;
      while (o0 <= limit && o1 <= limit + 1 && o2 <= limit + 2 && o3 <= limit + 3) {
        uint64_t b0 = Load64(lanes + (p0 >> 3)) >> (p0 & 7);
        uint64_t b1 = Load64(lanes + (p1 >> 3)) >> (p1 & 7);
        uint64_t b2 = Load64(lanes + (p2 >> 3)) >> (p2 & 7);
        uint64_t b3 = Load64(lanes + (p3 >> 3)) >> (p3 & 7);
#define KVTIER_PAIR_STEP(b, p, o)             \
  {                                           \
    const uint32_t e = pair[b & kMask];       \
    const uint32_t bits = (e >> 16) & 0xFF;   \
    o[0] = static_cast<uint8_t>(e);           \
    o[kLanes] = static_cast<uint8_t>(e >> 8); \
    b >>= bits;                               \
    p += bits;                                \
    o += (e >> 24) * kLanes;                  \
  }
        for (int t = 0; t < 5; ++t) {
          KVTIER_PAIR_STEP(b0, p0, o0)
          KVTIER_PAIR_STEP(b1, p1, o1)
          KVTIER_PAIR_STEP(b2, p2, o2)
          KVTIER_PAIR_STEP(b3, p3, o3)
        }
#undef KVTIER_PAIR_STEP
      }
    }
    uint64_t* const pos[4] = {&p0, &p1, &p2, &p3};
    uint8_t* const outs[4] = {o0, o1, o2, o3};
    for (int j = 0; j < 4; ++j) {
      uint64_t& p = *pos[j];
      const uint32_t count = LaneSymbols(n, l0 + j);
      for (uint32_t k = static_cast<uint32_t>((outs[j] - (sym + l0 + j)) / kLanes); k < count;
           ++k) {
        const uint16_t e = table[(Load64(lanes + (p >> 3)) >> (p & 7)) & kMask];
        p += e >> 8;
        sym[k * kLanes + l0 + j] = static_cast<uint8_t>(e);
      }
      consumed[l0 + j] = p - start_bits[l0 + j];
    }
  }
}

// Rebuilds 16-bit elements from the coded and raw planes (vectorises).
KVTIER_CODEC_CLONES void Join16Planes(const uint8_t* sym, const uint8_t* raw, size_t n,
                                      uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const uint16_t x = Join16(sym[i], raw[i]);
    std::memcpy(out + 2 * i, &x, 2);
  }
}

struct ParsedHuffman {
  int min_symbol = 0;
  int max_symbol = 0;
  int max_len = 0;
  int symbols = 0;
  uint8_t lengths[256] = {};
  size_t lanes_offset = 0;  // where lane 0 starts in the body
};

// The decode table, a full 11-bit one whatever the longest code (2048 entries cost less than the
// 16384 symbols of a chunk they serve, and a constant mask saves a register in the hot loops):
// for every window (first bit lowest), symbol | code length << 8 of the code it starts with.
// A code of length L owns the windows equal to it modulo 2^L, so the table is built shortest
// codes first in a table that doubles with each length: once the codes up to L fill the first
// 2^L entries, copying those up makes the first 2^(L+1) right for them, and each code of length
// L + 1 then takes the one entry left to it. That is 2^11 copied entries and one store per
// symbol; a store per window, the obvious fill, cost the decoder a tenth of its time.
// REQUIRES: the code is complete (ParseTable checks it), so every entry ends up written.
template <typename Entry>
void BuildDecodeTable(const ParsedHuffman& t, Entry* table) {
  uint32_t count[kMaxCodeLength + 1] = {};
  for (int v = t.min_symbol; v <= t.max_symbol; ++v) ++count[t.lengths[v]];
  // Symbols by length, ascending within a length: canonical order.
  uint32_t next[kMaxCodeLength + 2] = {};
  for (int len = 1; len <= kMaxCodeLength; ++len) next[len + 1] = next[len] + count[len];
  uint32_t first[kMaxCodeLength + 2];  // where each length's symbols start in by_length
  std::memcpy(first, next, sizeof(first));
  uint8_t by_length[256];
  for (int v = t.min_symbol; v <= t.max_symbol; ++v) {
    if (t.lengths[v] != 0) by_length[next[t.lengths[v]]++] = static_cast<uint8_t>(v);
  }
  table[0] = 0;
  uint32_t size = 1;
  uint32_t code = 0;
  for (int len = 1; len <= kMaxCodeLength; ++len) {
    std::memcpy(table + size, table, size * sizeof(Entry));
    size *= 2;
    code <<= 1;  // after the codes of length len - 1: huffman.h's CanonicalCodes
    for (uint32_t i = first[len]; i < first[len + 1]; ++i) {
      table[ReverseBits(code++, len)] = static_cast<Entry>(by_length[i] | len << 8);
    }
  }
}

// Parses and validates a Huffman body's prefix, range, nibbles and code completeness; the
// nibbles follow the raw plane of `raw_bytes`.
absl::Status ParseTable(uint64_t index, const uint8_t* body, size_t body_bytes, size_t raw_bytes,
                        ParsedHuffman* t) {
  if (body_bytes < kHuffmanRawOffset) return Corrupt(index, "Huffman body too short");
  t->min_symbol = body[1];
  t->max_symbol = body[2];
  if (body[3] != 0) return Corrupt(index, "reserved byte 3 of the Huffman body is not zero");
  if (t->max_symbol <= t->min_symbol) return Corrupt(index, "Huffman table has under 2 symbols");
  const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
  const size_t nibble_bytes = NibbleBytes(t->min_symbol, t->max_symbol);
  t->lanes_offset = nibbles_offset + nibble_bytes;
  if (body_bytes < t->lanes_offset) return Corrupt(index, "Huffman table truncated");
  const uint8_t* nibbles = body + nibbles_offset;
  const int range = t->max_symbol - t->min_symbol + 1;
  uint32_t kraft = 0;  // in units of 2^-kMaxCodeLength
  for (int k = 0; k < range; ++k) {
    const int len = (nibbles[k / 2] >> (4 * (k & 1))) & 0xF;
    if (len > kMaxCodeLength) return Corrupt(index, "code length above 11");
    if (len == 0) continue;
    t->lengths[t->min_symbol + k] = static_cast<uint8_t>(len);
    kraft += 1u << (kMaxCodeLength - len);
    t->max_len = std::max(t->max_len, len);
    ++t->symbols;
  }
  if (t->lengths[t->min_symbol] == 0 || t->lengths[t->max_symbol] == 0) {
    return Corrupt(index, "min or max symbol of the table is absent");
  }
  if (kraft != (1u << kMaxCodeLength)) return Corrupt(index, "code is not complete");
  if ((range & 1) && (nibbles[range / 2] >> 4) != 0) {
    return Corrupt(index, "padding nibble is not zero");
  }
  const size_t nibble_end = static_cast<size_t>(range + 1) / 2;
  if (!AllZero(nibbles + nibble_end, nibble_bytes - nibble_end)) {
    return Corrupt(index, "table padding is not zero");
  }
  const uint8_t* raw = body + kHuffmanRawOffset;
  if (!AllZero(raw + raw_bytes, RoundUp4(raw_bytes) - raw_bytes)) {
    return Corrupt(index, "raw plane padding is not zero");
  }
  return absl::OkStatus();
}

// The portable path: a 16-bit table entry per window, two symbols per lookup where most
// windows hold two codes, the symbols decoded into a plane and then joined with the raw plane.
void DecodeLanesScalar(const ParsedHuffman& t, const uint8_t* lanes, const uint64_t* start_bits,
                       uint32_t n, const uint8_t* raw, int element_bytes, uint8_t* out,
                       uint64_t* consumed) {
  uint16_t table[1 << kMaxCodeLength];
  BuildDecodeTable(t, table);

  // Pairs pay when most windows hold two codes (measured: bf16 exponents, 3-bit codes on
  // average, decode 15-20% faster; fp16 and fp8, with 6-7-bit codes, as much slower), so the
  // table's own share of two-symbol windows decides.
  uint32_t pair[1 << kMaxCodeLength];
  const bool pairs = BuildPairTable(table, pair) >= (1u << kMaxCodeLength) / 2;
  uint8_t* plane = out;
  thread_local std::vector<uint8_t> plane_buffer;
  if (element_bytes == 2) {
    if (plane_buffer.size() < n) plane_buffer.resize(size_t{1} << kMaxChunkLog2);
    plane = plane_buffer.data();
  }
  if (pairs) {
    DecodeLanesPairs(lanes, start_bits, n, table, pair, plane, consumed);
  } else {
    DecodeLanesSingle(lanes, start_bits, n, table, plane, consumed);
  }
  if (element_bytes == 2) Join16Planes(plane, raw, n, out);
}

// The AVX2 path (lane_decoder_avx2.h): a 32-bit entry per window for the gathers, rows of all
// 32 lanes decoded two at a time and joined with the raw plane as they are stored, then each
// lane's last one or two symbols one at a time. No two-symbol table: its build cost a fifth of
// the scalar decoder's time, and eight lanes per instruction already hide a lookup's latency.
void DecodeLanesWide(const ParsedHuffman& t, const uint8_t* lanes, const uint64_t* start_bits,
                     uint32_t n, const uint8_t* raw, int element_bytes, uint8_t* out,
                     uint64_t* consumed) {
  constexpr uint64_t kMask = (1u << kMaxCodeLength) - 1;
  uint32_t table[1 << kMaxCodeLength];
  BuildDecodeTable(t, table);
  uint32_t bits[kLanes];
  for (int l = 0; l < kLanes; ++l) bits[l] = static_cast<uint32_t>(start_bits[l]);
  const uint32_t steps = (n / kLanes) & ~1u;
  DecodeLanesAvx2(lanes, bits, steps, table, raw, element_bytes, out);
  for (int l = 0; l < kLanes; ++l) {
    uint64_t p = bits[l];
    for (uint32_t k = steps; k < LaneSymbols(n, l); ++k) {
      const uint32_t e = table[(Load64(lanes + (p >> 3)) >> (p & 7)) & kMask];
      p += e >> 8;
      const size_t i = size_t{k} * kLanes + static_cast<size_t>(l);
      if (element_bytes == 2) {
        const uint16_t x = Join16(static_cast<uint8_t>(e), raw[i]);
        std::memcpy(out + 2 * i, &x, 2);
      } else {
        out[i] = static_cast<uint8_t>(e);
      }
    }
    consumed[l] = p - start_bits[l];
  }
}

absl::Status DecodeHuffman(const ChunkLayout& layout, uint64_t index, const uint8_t* body,
                           size_t body_bytes, const uint8_t* readable_end, uint32_t n,
                           uint8_t* out) {
  const size_t raw_bytes = size_t{n} * RawBytesPerElement(layout.dtype);
  ParsedHuffman t;
  if (absl::Status s = ParseTable(index, body, body_bytes, raw_bytes, &t); !s.ok()) return s;
  size_t lane_bytes[kLanes];
  size_t lanes_total = 0;
  for (int l = 0; l < kLanes; ++l) {
    lane_bytes[l] = 4 * size_t{LoadLe16(body + kHuffmanPrefixBytes + 2 * l)};
    lanes_total += lane_bytes[l];
  }
  if (t.lanes_offset + lanes_total != body_bytes) {
    return Corrupt(index, "lane sizes do not add up to the body size");
  }
  const uint8_t* raw = body + kHuffmanRawOffset;
  const size_t lanes_offset = t.lanes_offset;

  // The fast reader may run ahead of a damaged lane by up to its symbols' worth of maximal
  // codes, plus one 8-byte load. Where the frame does not extend that far, decode from a
  // zero-padded copy of the lanes instead.
  const size_t ahead = (size_t{LaneSymbols(n, 0)} * kMaxCodeLength + 7) / 8 + 16;
  const uint8_t* lanes = body + lanes_offset;
  thread_local std::vector<uint8_t> padded;
  if (static_cast<size_t>(readable_end - (lanes + lanes_total)) < ahead) {
    padded.assign(lanes_total + ahead, 0);
    std::memcpy(padded.data(), lanes, lanes_total);
    lanes = padded.data();
  }
  uint64_t start_bits[kLanes];
  const uint8_t* lane_start[kLanes];
  size_t offset = 0;
  for (int l = 0; l < kLanes; ++l) {
    start_bits[l] = 8 * offset;
    lane_start[l] = lanes + offset;
    offset += lane_bytes[l];
  }

  uint64_t consumed[kLanes];
  if (CpuHasAvx2()) {
    DecodeLanesWide(t, lanes, start_bits, n, raw, layout.element_bytes(), out, consumed);
  } else {
    DecodeLanesScalar(t, lanes, start_bits, n, raw, layout.element_bytes(), out, consumed);
  }
  for (int l = 0; l < kLanes; ++l) {
    if ((consumed[l] + 31) / 32 * 4 != lane_bytes[l]) {
      return Corrupt(index, absl::StrCat("lane ", l, " does not end in its last word"));
    }
    // The bits after the last code are zero, so that a frame has exactly one valid form.
    const uint32_t used = static_cast<uint32_t>(consumed[l] % 32);
    if (used != 0 && (LoadLe32(lane_start[l] + lane_bytes[l] - 4) >> used) != 0) {
      return Corrupt(index, absl::StrCat("lane ", l, " has non-zero padding bits"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DecodeChunk(const ChunkLayout& layout, uint64_t index, const uint8_t* body,
                         size_t body_bytes, const uint8_t* readable_end, uint32_t n,
                         uint32_t expected_check, bool verify, uint8_t* out) {
  const size_t bytes = size_t{n} * layout.element_bytes();
  const size_t raw_bytes = size_t{n} * RawBytesPerElement(layout.dtype);
  if (body_bytes == RoundUp4(bytes)) {
    std::memcpy(out, body, bytes);
    if (!AllZero(body + bytes, body_bytes - bytes)) {
      return Corrupt(index, "stored body padding is not zero");
    }
  } else if (body_bytes == 0) {
    return Corrupt(index, "empty body");
  } else if (body[0] == kKindConstant) {
    if (body_bytes != RoundUp4(4 + raw_bytes)) return Corrupt(index, "constant body size");
    if (body[2] != 0 || body[3] != 0 ||
        !AllZero(body + 4 + raw_bytes, body_bytes - 4 - raw_bytes)) {
      return Corrupt(index, "constant body padding is not zero");
    }
    const uint8_t coded = body[1];
    if (layout.element_bytes() == 2) {
      for (uint32_t i = 0; i < n; ++i) {
        const uint16_t x = Join16(coded, body[kConstantRawOffset + i]);
        std::memcpy(out + 2 * i, &x, 2);
      }
    } else {
      std::memset(out, coded, n);
    }
  } else if (body[0] == kKindHuffman) {
    if (absl::Status s = DecodeHuffman(layout, index, body, body_bytes, readable_end, n, out);
        !s.ok()) {
      return s;
    }
  } else {
    return Corrupt(index, absl::StrCat("unknown body kind ", body[0]));
  }
  if (verify && ChunkCheck(out, bytes, layout.slice_bytes(), index) != expected_check) {
    return Corrupt(index, "checksum mismatch");
  }
  return absl::OkStatus();
}

ChunkSummary SummarizeChunk(const ChunkLayout& layout, const uint8_t* body, size_t body_bytes,
                            uint32_t n) {
  ChunkSummary s;
  if (body_bytes == RoundUp4(size_t{n} * layout.element_bytes()) || body_bytes == 0) return s;
  s.kind = body[0];
  if (s.kind == kKindConstant) {
    s.symbols = 1;
  } else if (s.kind == kKindHuffman) {
    ParsedHuffman t;
    if (ParseTable(0, body, body_bytes, size_t{n} * RawBytesPerElement(layout.dtype), &t).ok()) {
      s.symbols = t.symbols;
      s.max_length = t.max_len;
    }
  }
  return s;
}

}  // namespace kvtier::kvz
