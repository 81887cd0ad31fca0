// Chunk encoder: split, histogram, table, lanes, and the stored fallback, in the order of
// docs/format.md's encoder rules. The hot loops are the split/histogram pass (one pass over
// the input) and the lane encoder (one table lookup and one OR per symbol).
#include <algorithm>
#include <cstring>

#include "chunk_codec.h"
#include "cpu_clones.h"
#include "cpu_features.h"
#include "format.h"
#include "huffman.h"
#include "slice_digests_avx512.h"
#include "symbol_count_avx512.h"
#include "xxh64.h"

namespace kvtier::kvz {
namespace {

inline void Store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

// Splits 16-bit elements into the coded plane `sym` and the raw plane `raw` (vectorises).
KVTIER_CODEC_CLONES void Split16(const uint8_t* in, size_t n, uint8_t* sym, uint8_t* raw) {
  for (size_t i = 0; i < n; ++i) {  // size_t: a 32-bit index would block vectorisation
    uint16_t x;
    std::memcpy(&x, in + 2 * i, 2);
    sym[i] = CodedByte16(x);
    raw[i] = RawByte16(x);
  }
}

// Histogram of the coded plane. Four partial histograms break the store-to-load dependency
// when neighbouring elements share an exponent (they mostly do).
void Count(const uint8_t* sym, uint32_t n, uint32_t* hist) {
  if (CpuHasAvx512() && CountNarrowAvx512(sym, n, hist)) return;
  uint32_t part[4][256] = {};  // size_t: a 32-bit index would block vectorisation
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++part[0][sym[i]];
    ++part[1][sym[i + 1]];
    ++part[2][sym[i + 2]];
    ++part[3][sym[i + 3]];
  }
  for (; i < n; ++i) ++part[0][sym[i]];
  for (int v = 0; v < 256; ++v) hist[v] = part[0][v] + part[1][v] + part[2][v] + part[3][v];
}

// Writes lane `lane`'s codes at `p` and returns its size in words. Flushes every four symbols
// (at most 44 bits plus 7 pending fit the 64-bit accumulator); stores past the lane's end
// write only zero bits, which the next lane then overwrites.
KVTIER_CODEC_CLONES uint32_t EncodeLane(const uint8_t* sym, uint32_t count, int lane,
                                        const uint32_t* entry, uint8_t* p) {
  uint8_t* const start = p;
  uint64_t acc = 0;
  uint32_t bits = 0;
  const uint8_t* s = sym + lane;
  uint32_t k = 0;
  for (; k + 4 <= count; k += 4, s += 4 * kLanes) {
    const uint32_t e0 = entry[s[0]];
    const uint32_t e1 = entry[s[kLanes]];
    const uint32_t e2 = entry[s[2 * kLanes]];
    const uint32_t e3 = entry[s[3 * kLanes]];
    acc |= uint64_t{e0 & 0xFFFF} << bits;
    bits += e0 >> 16;
    acc |= uint64_t{e1 & 0xFFFF} << bits;
    bits += e1 >> 16;
    acc |= uint64_t{e2 & 0xFFFF} << bits;
    bits += e2 >> 16;
    acc |= uint64_t{e3 & 0xFFFF} << bits;
    bits += e3 >> 16;
    Store64(p, acc);
    p += bits >> 3;
    acc >>= bits & ~7u;
    bits &= 7;
  }
  for (; k < count; ++k, s += kLanes) {
    const uint32_t e = entry[s[0]];
    acc |= uint64_t{e & 0xFFFF} << bits;
    bits += e >> 16;
  }
  Store64(p, acc);  // at most 7 + 3 * 11 bits pending
  const size_t total_bits = static_cast<size_t>(p - start) * 8 + bits;
  const uint32_t words = static_cast<uint32_t>((total_bits + 31) / 32);
  // Zero the padding up to the word boundary (the Store64 above may not reach it).
  std::memset(start + (total_bits + 7) / 8, 0, words * 4 - (total_bits + 7) / 8);
  return words;
}

size_t WriteStored(const uint8_t* in, size_t bytes, uint8_t* out) {
  std::memcpy(out, in, bytes);
  const size_t size = RoundUp4(bytes);
  std::memset(out + bytes, 0, size - bytes);
  return size;
}

}  // namespace

int ChunkLayout::element_bytes() const { return ElementBytes(dtype); }
size_t ChunkLayout::slice_bytes() const {
  return (size_t{1} << chunk_log2) * static_cast<size_t>(element_bytes()) / kLanes;
}

uint32_t ChunkCheck(const uint8_t* data, size_t bytes, size_t slice_bytes, uint64_t chunk_index) {
  uint64_t digest[kLanes];
  if (bytes == kLanes * slice_bytes && slice_bytes % 32 == 0 && CpuHasAvx512()) {
    SliceDigestsAvx512(data, slice_bytes, digest);  // a full chunk: every slice whole
  } else {
    for (int l = 0; l < kLanes; ++l) {
      const size_t begin = std::min(l * slice_bytes, bytes);
      const size_t end = std::min((l + 1) * slice_bytes, bytes);
      digest[l] = Xxh64(data + begin, end - begin, 0);
    }
  }
  uint8_t digests[8 * kLanes];
  for (int l = 0; l < kLanes; ++l) StoreLe64(digests + 8 * l, digest[l]);
  return static_cast<uint32_t>(Xxh64(digests, sizeof(digests), chunk_index));
}

size_t MaxCodedAttemptBytes(const ChunkLayout& layout, uint32_t n) {
  size_t lanes = 0;
  for (int l = 0; l < kLanes; ++l) {
    lanes += RoundUp4((size_t{LaneSymbols(n, l)} * kMaxCodeLength + 7) / 8);
  }
  return kHuffmanRawOffset + RoundUp4(size_t{n} * RawBytesPerElement(layout.dtype)) +
         NibbleBytes(0, 255) + lanes + 8;
}

size_t EncodeChunk(const ChunkLayout& layout, uint64_t index, const uint8_t* in, uint32_t n,
                   uint8_t* out, size_t out_room, uint32_t* check, ChunkScratch& scratch) {
  const size_t bytes = size_t{n} * layout.element_bytes();
  const size_t stored_size = RoundUp4(bytes);
  const int raw_per_element = RawBytesPerElement(layout.dtype);
  const size_t raw_bytes = size_t{n} * raw_per_element;
  *check = ChunkCheck(in, bytes, layout.slice_bytes(), index);

  // The body is built in place when the output has room for the largest attempt (always,
  // except near the end of a frame), else in the scratch buffer and copied.
  const size_t attempt_room = MaxCodedAttemptBytes(layout, n);
  uint8_t* body = out;
  if (out_room < attempt_room) {
    if (scratch.body.size() < attempt_room) scratch.body.resize(attempt_room);
    body = scratch.body.data();
  }
  // Split straight into the body: the raw plane's place does not depend on the table.
  const uint8_t* sym = in;
  if (raw_per_element == 1) {
    if (scratch.symbols.size() < n) scratch.symbols.resize(size_t{1} << kMaxChunkLog2);
    Split16(in, n, scratch.symbols.data(), body + kHuffmanRawOffset);
    sym = scratch.symbols.data();
  }
  uint32_t hist[256];
  Count(sym, n, hist);

  int present = 0;
  int min_symbol = -1;
  int max_symbol = 0;
  uint32_t keys[256];
  for (int v = 0; v < 256; ++v) {
    if (hist[v] == 0) continue;
    if (min_symbol < 0) min_symbol = v;
    max_symbol = v;
    keys[present++] = SortKey(hist[v], v);
  }

  if (present == 1) {
    const size_t size = RoundUp4(kConstantRawOffset + raw_bytes);
    if (size >= stored_size) return WriteStored(in, bytes, out);
    std::memmove(body + kConstantRawOffset, body + kHuffmanRawOffset, raw_bytes);
    body[0] = kKindConstant;
    body[1] = static_cast<uint8_t>(min_symbol);
    body[2] = 0;
    body[3] = 0;
    std::memset(body + kConstantRawOffset + raw_bytes, 0, size - kConstantRawOffset - raw_bytes);
    if (body != out) std::memcpy(out, body, size);
    return size;
  }

  std::sort(keys, keys + present);
  uint8_t lengths[256] = {};
  uint32_t work[256] = {};
  LengthsFromSorted(keys, present, work, lengths);

  const size_t nibbles_offset = kHuffmanRawOffset + RoundUp4(raw_bytes);
  const size_t nibble_bytes = NibbleBytes(min_symbol, max_symbol);
  const size_t lanes_offset = nibbles_offset + nibble_bytes;
  uint64_t total_bits = 0;
  for (int v = min_symbol; v <= max_symbol; ++v) total_bits += uint64_t{hist[v]} * lengths[v];
  // Lanes cannot be smaller than their bits; skip the encoding when even that does not pay.
  if (lanes_offset + total_bits / 8 >= stored_size) return WriteStored(in, bytes, out);

  uint16_t codes[256];
  CanonicalCodes(lengths, codes);
  uint32_t entry[256];
  for (int v = 0; v < 256; ++v) entry[v] = codes[v] | uint32_t{lengths[v]} << 16;

  body[0] = kKindHuffman;
  body[1] = static_cast<uint8_t>(min_symbol);
  body[2] = static_cast<uint8_t>(max_symbol);
  body[3] = 0;
  std::memset(body + kHuffmanRawOffset + raw_bytes, 0, RoundUp4(raw_bytes) - raw_bytes);
  uint8_t* nibbles = body + nibbles_offset;
  std::memset(nibbles, 0, nibble_bytes);
  for (int v = min_symbol; v <= max_symbol; ++v) {
    const int k = v - min_symbol;
    nibbles[k / 2] |= static_cast<uint8_t>(lengths[v] << (4 * (k & 1)));
  }
  uint8_t* p = body + lanes_offset;
  for (int l = 0; l < kLanes; ++l) {
    const uint32_t words = EncodeLane(sym, LaneSymbols(n, l), l, entry, p);
    StoreLe16(body + kHuffmanPrefixBytes + 2 * l, static_cast<uint16_t>(words));
    p += 4 * words;
  }
  const size_t size = static_cast<size_t>(p - body);
  if (size >= stored_size) return WriteStored(in, bytes, out);
  if (body != out) std::memcpy(out, body, size);
  return size;
}

}  // namespace kvtier::kvz
