// Damaged and truncated frames: every error is DataLoss or InvalidArgument, never a crash (the
// fuzzer in tests/fuzz/codec_fuzz.cc explores further), and damage is never silently accepted.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "format.h"
#include "kv_like_data.h"
#include "kvtier/compression/frame_info.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {
namespace {

bool IsExpectedError(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDataLoss || s.code() == absl::StatusCode::kInvalidArgument;
}

// A small frame with Huffman, constant and stored chunks and a partial last chunk.
std::vector<std::byte> MixedInput() {
  testing::KvLikeOptions o;
  o.tokens = 16;
  o.heads = 2;
  o.head_dim = 64;
  std::vector<std::byte> in = testing::GenerateKvLike(o);  // 2048 elements
  in.resize(in.size() + 2048, std::byte{0});               // a constant chunk
  std::mt19937_64 rng(1);
  for (int i = 0; i < 2048 + 6; ++i) in.push_back(static_cast<std::byte>(rng()));  // stored
  return in;
}

TEST(CorruptionTest, EveryTruncationIsRejected) {
  const std::vector<std::byte> input = MixedInput();
  absl::StatusOr<std::vector<std::byte>> frame =
      Compress(input, {.dtype = KvDtype::kBf16, .chunk_log2 = 10});
  ASSERT_TRUE(frame.ok());
  std::vector<std::byte> out(input.size());
  for (size_t len = 0; len < frame->size(); ++len) {
    const std::vector<std::byte> cut(frame->begin(), frame->begin() + len);
    const absl::Status s = Decompress(cut, out);
    ASSERT_TRUE(IsExpectedError(s)) << "length " << len << ": " << s;
    EXPECT_FALSE(InspectFrame(cut).ok());
  }
}

TEST(CorruptionTest, EverySingleBitFlipIsRejected) {
  const std::vector<std::byte> input = MixedInput();
  absl::StatusOr<std::vector<std::byte>> frame =
      Compress(input, {.dtype = KvDtype::kBf16, .chunk_log2 = 10});
  ASSERT_TRUE(frame.ok());
  absl::StatusOr<FrameInfo> info = InspectFrame(*frame);
  ASSERT_TRUE(info.ok());
  int modes = 0;
  for (const ChunkInfo& c : info->chunks)
    modes |= c.mode == "huffman" ? 1 : c.mode == "constant" ? 2 : 4;
  ASSERT_EQ(modes, 7) << "the frame should exercise all three body forms";
  std::vector<std::byte> out(input.size());
  int accepted = 0;
  for (size_t byte = 0; byte < frame->size(); ++byte) {
    for (int bit = 0; bit < 8; bit += 3) {
      std::vector<std::byte> bad = *frame;
      bad[byte] ^= static_cast<std::byte>(1 << bit);
      const absl::Status s = Decompress(bad, out);
      if (s.ok()) {
        ADD_FAILURE() << "byte " << byte << " bit " << bit << " flipped, frame still accepted"
                      << (out == input ? " (output unchanged)" : " WITH WRONG OUTPUT");
        ++accepted;
      } else {
        ASSERT_TRUE(IsExpectedError(s)) << s;
      }
    }
  }
  // Every byte, padding included, is checked: a frame has exactly one valid form.
  EXPECT_EQ(accepted, 0);
}

TEST(CorruptionTest, RandomGarbageAndCraftedHeaders) {
  std::mt19937_64 rng(2);
  std::vector<std::byte> out(1 << 16);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::byte> junk(rng() % 600);
    for (std::byte& b : junk) b = static_cast<std::byte>(rng());
    if (junk.size() >= 4 && trial % 2 == 0) std::memcpy(junk.data(), kvz::kMagic, 4);
    absl::StatusOr<std::vector<std::byte>> d = Decompress(junk);
    if (!d.ok()) {
      ASSERT_TRUE(IsExpectedError(d.status())) << d.status();
    }
  }
}

TEST(CorruptionTest, ChecksumCatchesSwappedChunks) {
  // Two identical-size chunks swapped, directory and all: only the per-chunk seed notices.
  std::vector<std::byte> input(4096);  // 2 chunks of 1024 bf16
  std::mt19937_64 rng(4);
  for (size_t i = 0; i < input.size(); i += 2) {
    input[i] = static_cast<std::byte>(rng());
    input[i + 1] = static_cast<std::byte>(0x3F);
  }
  absl::StatusOr<std::vector<std::byte>> frame =
      Compress(input, {.dtype = KvDtype::kBf16, .chunk_log2 = 10});
  ASSERT_TRUE(frame.ok());
  // Both chunks are two-symbol Huffman bodies of equal size: swap bodies and checks.
  std::vector<std::byte> swapped = *frame;
  const size_t payload = 32 + 16;
  const size_t end0 = kvz::LoadLe32(reinterpret_cast<const uint8_t*>(&swapped[32]));
  ASSERT_EQ(end0 * 2, swapped.size() - payload);
  std::swap_ranges(swapped.begin() + payload, swapped.begin() + payload + end0,
                   swapped.begin() + payload + end0);
  std::swap_ranges(swapped.begin() + 36, swapped.begin() + 40, swapped.begin() + 44);
  std::vector<std::byte> out(input.size());
  EXPECT_EQ(Decompress(swapped, out).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Decompress(swapped, out, {.verify_checksums = false}).ok());
}

}  // namespace
}  // namespace kvtier
