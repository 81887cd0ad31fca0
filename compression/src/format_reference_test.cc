// The chunk layout of docs/format.md, checked by a decoder written from the document alone (bit
// by bit, canonical codes rebuilt from the nibbles, element i in lane i mod 32): the fast
// decoders and the encoders could share a misreading of the document; this one shares no code
// with them.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "format.h"
#include "kv_like_data.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {
namespace {

uint32_t Le32(const std::byte* p) { return kvz::LoadLe32(reinterpret_cast<const uint8_t*>(p)); }
uint16_t Le16(const std::byte* p) { return kvz::LoadLe16(reinterpret_cast<const uint8_t*>(p)); }
uint8_t U8(std::byte b) { return static_cast<uint8_t>(b); }

// Decodes a bf16 frame the slow way, straight from the format document; checks nothing the
// real decoders check beyond what it needs to find its way. Returns the elements.
std::vector<uint16_t> ReferenceDecodeBf16(const std::vector<std::byte>& frame) {
  const int chunk_log2 = U8(frame[6]);
  const int lanes = 1 << U8(frame[7]);
  uint64_t count = 0;
  std::memcpy(&count, &frame[8], 8);
  const uint64_t chunks = (count + (uint64_t{1} << chunk_log2) - 1) >> chunk_log2;
  const std::byte* payload = frame.data() + 32 + 8 * chunks;
  std::vector<uint16_t> out;
  uint32_t start = 0;
  for (uint64_t c = 0; c < chunks; ++c) {
    const uint32_t end = Le32(frame.data() + 32 + 8 * c);
    const std::byte* body = payload + start;
    const uint32_t size = end - start;
    start = end;
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(uint64_t{1} << chunk_log2, count - out.size()));
    if (size == kvz::RoundUp4(2 * n)) {  // stored
      for (uint32_t i = 0; i < n; ++i) out.push_back(Le16(body + 2 * i));
      continue;
    }
    if (U8(body[0]) == kvz::kKindConstant) {
      for (uint32_t i = 0; i < n; ++i) out.push_back(kvz::Join16(U8(body[1]), U8(body[4 + i])));
      continue;
    }
    EXPECT_EQ(U8(body[0]), kvz::kKindHuffman) << "chunk " << c;
    if (U8(body[0]) != kvz::kKindHuffman) return {};
    const int min_symbol = U8(body[1]);
    const int max_symbol = U8(body[2]);
    const std::byte* raw = body + 4 + 2 * lanes;
    const std::byte* nibbles = raw + kvz::RoundUp4(n);
    // Canonical codes (RFC 1951, 3.2.2) from the lengths: (length, code) -> symbol.
    int length[256] = {};
    int bl_count[16] = {};
    for (int s = min_symbol; s <= max_symbol; ++s) {
      const int k = s - min_symbol;
      length[s] = (U8(nibbles[k / 2]) >> (4 * (k & 1))) & 0xF;
      if (length[s] != 0) ++bl_count[length[s]];
    }
    int next_code[16] = {};
    for (int len = 1, code = 0; len < 16; ++len) {
      code = (code + bl_count[len - 1]) << 1;
      next_code[len] = code;
    }
    next_code[0] = 0;
    std::map<std::pair<int, int>, int> symbol_of;
    for (int s = 0; s < 256; ++s) {
      if (length[s] != 0) symbol_of[{length[s], next_code[length[s]]++}] = s;
    }
    const std::byte* lane_data = nibbles + kvz::NibbleBytes(min_symbol, max_symbol);
    std::vector<uint8_t> coded(n);
    for (int l = 0; l < lanes; ++l) {
      const uint32_t words = Le16(body + 4 + 2 * l);
      uint64_t bit = 0;
      for (uint32_t i = static_cast<uint32_t>(l); i < n; i += static_cast<uint32_t>(lanes)) {
        int code = 0;
        int len = 0;
        for (;;) {
          code = code << 1 | ((U8(lane_data[bit / 8]) >> (bit % 8)) & 1);
          ++bit;
          ++len;
          auto it = symbol_of.find({len, code});
          if (it != symbol_of.end()) {
            coded[i] = static_cast<uint8_t>(it->second);
            break;
          }
          if (len > kvz::kMaxCodeLength) {
            ADD_FAILURE() << "no code in lane " << l << " of chunk " << c;
            return {};
          }
        }
      }
      EXPECT_EQ((bit + 31) / 32, words) << "lane " << l << " of chunk " << c;
      lane_data += 4 * words;
    }
    for (uint32_t i = 0; i < n; ++i) out.push_back(kvz::Join16(coded[i], U8(raw[i])));
  }
  return out;
}

std::vector<std::byte> KvLike(int tokens, uint64_t seed) {
  testing::KvLikeOptions o;
  o.tokens = tokens;
  o.heads = 2;
  o.head_dim = 64;
  o.seed = seed;
  return testing::GenerateKvLike(o);
}

TEST(FormatReferenceTest, TheDocumentsDecoderReadsTheEncodersFrames) {
  // 9000 elements: whole chunks and a partial last one at every chunk size below 2^14, with
  // Huffman, constant and stored chunks (a run of one value, then random bits).
  std::vector<std::byte> input = KvLike(72, 7);
  input.resize(2 * 9000);
  for (size_t i = 2 * 5000; i < 2 * 6100; i += 2) input[i + 1] = std::byte{0x3F};
  std::mt19937_64 rng(11);
  for (size_t i = 2 * 7000; i < 2 * 8100; ++i) input[i] = static_cast<std::byte>(rng());
  for (int chunk_log2 : {10, 11, 13, 14}) {
    SCOPED_TRACE(::testing::Message() << "chunk_log2 " << chunk_log2);
    absl::StatusOr<std::vector<std::byte>> frame =
        Compress(input, {.dtype = KvDtype::kBf16, .chunk_log2 = chunk_log2});
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::vector<uint16_t> reference = ReferenceDecodeBf16(*frame);
    ASSERT_EQ(reference.size(), 9000u);
    EXPECT_EQ(std::memcmp(reference.data(), input.data(), input.size()), 0);
  }
}

}  // namespace
}  // namespace kvtier
