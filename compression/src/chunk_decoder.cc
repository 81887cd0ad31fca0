// Chunk decoder. Every field of a body is checked before it is used; the lane decoder then
// runs four lanes side by side with one table lookup per symbol, and checks afterwards that
// each lane's codes ended in its last word.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "chunk_codec.h"
#include "format.h"
#include "huffman.h"
#include "kvtier/common/strings.h"

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

// One lane's bit reader (LSB-first, refilled to at least 56 bits; see format.md "Lanes").
struct LaneReader {
  const uint8_t* start;
  const uint8_t* p;
  uint64_t buf = 0;
  uint32_t count = 0;  // valid bits in buf

  explicit LaneReader(const uint8_t* s) : start(s), p(s) {}
  void Refill() {
    buf |= Load64(p) << count;
    p += (63 - count) >> 3;
    count |= 56;
  }
  uint8_t Decode(const uint16_t* table, uint64_t mask) {
    const uint16_t e = table[buf & mask];
    const uint32_t len = e >> 8;
    buf >>= len;
    count -= len;
    return static_cast<uint8_t>(e);
  }
  uint64_t consumed_bits() const { return static_cast<uint64_t>(p - start) * 8 - count; }
};

// Writes element `i` of the chunk from its coded byte.
template <int kElementBytes>
inline void Put(uint8_t* out, const uint8_t* raw, uint32_t i, uint8_t coded) {
  if constexpr (kElementBytes == 2) {
    const uint16_t x = Join16(coded, raw[i]);
    std::memcpy(out + 2 * i, &x, 2);
  } else {
    out[i] = coded;
  }
}

// Decodes all 32 lanes into `out`; consumed[l] receives the bits lane l used. Lanes 4g..4g+3
// advance together, five symbols per refill (5 x 11 bits <= 56).
template <int kElementBytes>
void DecodeLanes(const uint8_t* const* lane_start, uint32_t n, const uint16_t* table, int max_len,
                 const uint8_t* raw, uint8_t* out, uint64_t* consumed) {
  const uint64_t mask = (uint64_t{1} << max_len) - 1;
  for (int g = 0; g < kLanes / 4; ++g) {
    const int l0 = 4 * g;
    LaneReader r0(lane_start[l0]), r1(lane_start[l0 + 1]), r2(lane_start[l0 + 2]),
        r3(lane_start[l0 + 3]);
    const uint32_t common = LaneSymbols(n, l0 + 3);  // the fewest of the four
    uint32_t k = 0;
    for (; k + 5 <= common; k += 5) {
      r0.Refill();
      r1.Refill();
      r2.Refill();
      r3.Refill();
      for (uint32_t t = 0; t < 5; ++t) {
        const uint32_t i = (k + t) * kLanes + l0;
        const uint8_t s0 = r0.Decode(table, mask);
        const uint8_t s1 = r1.Decode(table, mask);
        const uint8_t s2 = r2.Decode(table, mask);
        const uint8_t s3 = r3.Decode(table, mask);
        Put<kElementBytes>(out, raw, i, s0);
        Put<kElementBytes>(out, raw, i + 1, s1);
        Put<kElementBytes>(out, raw, i + 2, s2);
        Put<kElementBytes>(out, raw, i + 3, s3);
      }
    }
    LaneReader* readers[4] = {&r0, &r1, &r2, &r3};
    for (int j = 0; j < 4; ++j) {
      LaneReader& r = *readers[j];
      const uint32_t count = LaneSymbols(n, l0 + j);
      for (uint32_t kk = k; kk < count; ++kk) {
        r.Refill();
        Put<kElementBytes>(out, raw, kk * kLanes + l0 + j, r.Decode(table, mask));
      }
      consumed[l0 + j] = r.consumed_bits();
    }
  }
}

struct ParsedHuffman {
  int min_symbol = 0;
  int max_symbol = 0;
  int max_len = 0;
  int symbols = 0;
  uint8_t lengths[256] = {};
  size_t table_bytes = 0;
};

// Parses and validates kind, range, nibbles and completeness of a Huffman body's table.
absl::Status ParseTable(uint64_t index, const uint8_t* body, size_t body_bytes, ParsedHuffman* t) {
  if (body_bytes < kHuffmanPrefixBytes) return Corrupt(index, "Huffman body too short");
  t->min_symbol = body[1];
  t->max_symbol = body[2];
  if (body[3] != 0) return Corrupt(index, "reserved byte 3 of the Huffman body is not zero");
  if (t->max_symbol <= t->min_symbol) return Corrupt(index, "Huffman table has under 2 symbols");
  t->table_bytes = HuffmanTableBytes(t->min_symbol, t->max_symbol);
  if (body_bytes < t->table_bytes + kLaneTableBytes) return Corrupt(index, "table truncated");
  const int range = t->max_symbol - t->min_symbol + 1;
  uint32_t kraft = 0;  // in units of 2^-kMaxCodeLength
  for (int k = 0; k < range; ++k) {
    const int len = (body[kHuffmanPrefixBytes + k / 2] >> (4 * (k & 1))) & 0xF;
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
  if ((range & 1) && (body[kHuffmanPrefixBytes + range / 2] >> 4) != 0) {
    return Corrupt(index, "padding nibble is not zero");
  }
  const size_t nibble_end = kHuffmanPrefixBytes + (range + 1) / 2;
  if (!AllZero(body + nibble_end, t->table_bytes - nibble_end)) {
    return Corrupt(index, "table padding is not zero");
  }
  return absl::OkStatus();
}

absl::Status DecodeHuffman(const ChunkLayout& layout, uint64_t index, const uint8_t* body,
                           size_t body_bytes, const uint8_t* readable_end, uint32_t n,
                           uint8_t* out) {
  ParsedHuffman t;
  if (absl::Status s = ParseTable(index, body, body_bytes, &t); !s.ok()) return s;
  const uint8_t* lane_table = body + t.table_bytes;
  const size_t raw_bytes = size_t{n} * RawBytesPerElement(layout.dtype);
  size_t lane_bytes[kLanes];
  size_t lanes_total = 0;
  for (int l = 0; l < kLanes; ++l) {
    lane_bytes[l] = 4 * size_t{uint16_t(lane_table[2 * l] | lane_table[2 * l + 1] << 8)};
    lanes_total += lane_bytes[l];
  }
  const size_t lanes_offset = t.table_bytes + kLaneTableBytes;
  if (lanes_offset + lanes_total + RoundUp4(raw_bytes) != body_bytes) {
    return Corrupt(index, "lane sizes do not add up to the body size");
  }
  const uint8_t* raw = body + lanes_offset + lanes_total;
  if (!AllZero(raw + raw_bytes, RoundUp4(raw_bytes) - raw_bytes)) {
    return Corrupt(index, "raw plane padding is not zero");
  }

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
  const uint8_t* lane_start[kLanes];
  size_t offset = 0;
  for (int l = 0; l < kLanes; ++l) {
    lane_start[l] = lanes + offset;
    offset += lane_bytes[l];
  }

  uint16_t codes[256];
  CanonicalCodes(t.lengths, codes);
  uint16_t table[1 << kMaxCodeLength];
  const uint32_t table_size = 1u << t.max_len;
  for (int v = t.min_symbol; v <= t.max_symbol; ++v) {
    const int len = t.lengths[v];
    if (len == 0) continue;
    const uint16_t e = static_cast<uint16_t>(v | len << 8);
    for (uint32_t i = codes[v]; i < table_size; i += 1u << len) table[i] = e;
  }

  uint64_t consumed[kLanes];
  if (layout.element_bytes() == 2) {
    DecodeLanes<2>(lane_start, n, table, t.max_len, raw, out, consumed);
  } else {
    DecodeLanes<1>(lane_start, n, table, t.max_len, raw, out, consumed);
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
      for (uint32_t i = 0; i < n; ++i) Put<2>(out, body + 4, i, coded);
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
    if (ParseTable(0, body, body_bytes, &t).ok()) {
      s.symbols = t.symbols;
      s.max_length = t.max_len;
    }
  }
  return s;
}

}  // namespace kvtier::kvz
