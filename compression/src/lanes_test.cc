// The lane layout of docs/format.md, checked by a decoder written from the document alone (bit
// by bit, canonical codes rebuilt from the nibbles, element i in lane i mod 2^lanes_log2), for
// 32- and 64-lane frames; and what 64 lanes cost in ratio.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "format.h"
#include "kv_like_data.h"
#include "kvtier/compression/frame_info.h"
#include "kvtier/compression/kv_codec.h"
#include "xxh64.h"

namespace kvtier {
namespace {

uint32_t Le32(const std::byte* p) { return kvz::LoadLe32(reinterpret_cast<const uint8_t*>(p)); }
uint16_t Le16(const std::byte* p) { return kvz::LoadLe16(reinterpret_cast<const uint8_t*>(p)); }
uint8_t U8(std::byte b) { return static_cast<uint8_t>(b); }

// Decodes a bf16 frame the slow way, straight from the format document; checks nothing the
// real decoders check beyond what it needs to find its way. Returns the elements.
std::vector<uint16_t> ReferenceDecodeBf16(const std::vector<std::byte>& frame) {
  const int chunk_log2 = U8(frame[6]);
  const int lanes_log2 = U8(frame[7]);
  const int lanes = 1 << lanes_log2;
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

TEST(LanesTest, TheDocumentsDecoderReadsBothLaneCounts) {
  // 9000 elements: whole chunks and a partial last one at every chunk size below 2^14.
  std::vector<std::byte> input = KvLike(72, 7);
  input.resize(2 * 9000);
  for (int lanes_log2 : {5, 6}) {
    for (int chunk_log2 : {10, 11, 13, 14}) {
      SCOPED_TRACE(::testing::Message()
                   << "lanes_log2 " << lanes_log2 << " chunk_log2 " << chunk_log2);
      const CodecOptions options{
          .dtype = KvDtype::kBf16, .chunk_log2 = chunk_log2, .lanes_log2 = lanes_log2};
      absl::StatusOr<std::vector<std::byte>> frame = Compress(input, options);
      ASSERT_TRUE(frame.ok()) << frame.status();
      EXPECT_EQ(U8((*frame)[7]), lanes_log2);
      absl::StatusOr<FrameHeader> header = ReadFrameHeader(*frame);
      ASSERT_TRUE(header.ok());
      EXPECT_EQ(header->lanes_log2, lanes_log2);
      const std::vector<uint16_t> reference = ReferenceDecodeBf16(*frame);
      ASSERT_EQ(reference.size(), 9000u);
      EXPECT_EQ(std::memcmp(reference.data(), input.data(), input.size()), 0);
      absl::StatusOr<std::vector<std::byte>> decoded = Decompress(*frame);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_TRUE(*decoded == input);
    }
  }
}

TEST(LanesTest, SixtyFourLanesCostLittleRatio) {
  const std::vector<std::byte> input = KvLike(512, 3);  // 128 K elements, 8 chunks of 2^14
  absl::StatusOr<std::vector<std::byte>> f32 =
      Compress(input, {.dtype = KvDtype::kBf16, .lanes_log2 = 5});
  absl::StatusOr<std::vector<std::byte>> f64 =
      Compress(input, {.dtype = KvDtype::kBf16, .lanes_log2 = 6});
  ASSERT_TRUE(f32.ok() && f64.ok());
  // 64 more bytes of lane table and about 64 more of last-word padding per chunk.
  EXPECT_GT(f64->size(), f32->size());
  EXPECT_LT(f64->size(), f32->size() + 8 * 192);
  RecordProperty("ratio_32_lanes", std::to_string(static_cast<double>(input.size()) / f32->size()));
  RecordProperty("ratio_64_lanes", std::to_string(static_cast<double>(input.size()) / f64->size()));
}

TEST(LanesTest, OtherLaneCountsAreRejected) {
  const std::vector<std::byte> input(64);
  for (int lanes_log2 : {0, 4, 7}) {
    absl::StatusOr<std::vector<std::byte>> frame =
        Compress(input, {.dtype = KvDtype::kBf16, .lanes_log2 = lanes_log2});
    EXPECT_EQ(frame.status().code(), absl::StatusCode::kInvalidArgument);
  }
  // A header naming another lane count, its own check intact, is refused as a layout this
  // build does not read.
  absl::StatusOr<std::vector<std::byte>> frame = Compress(input, {.dtype = KvDtype::kBf16});
  ASSERT_TRUE(frame.ok());
  for (uint8_t lanes_log2 : {4, 7}) {
    std::vector<std::byte> other = *frame;
    other[7] = static_cast<std::byte>(lanes_log2);
    auto* h = reinterpret_cast<uint8_t*>(other.data());
    kvz::StoreLe32(h + 28, static_cast<uint32_t>(kvz::Xxh64(h, 28, 0)));
    const absl::StatusOr<FrameHeader> header = ReadFrameHeader(other);
    EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(header.status().message().find("lanes_log2"), std::string_view::npos);
  }
}

}  // namespace
}  // namespace kvtier
