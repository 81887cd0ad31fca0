// Damaged and truncated frames: every error is DataLoss or InvalidArgument, never a crash (the
// fuzzer in tests/fuzz/codec_fuzz.cc explores further), and damage is never silently accepted.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <span>
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

// A frame that ends where a page without access begins, and an output that does too: a read
// or write past either (a gather of the vector decoder included, which sanitizers do not see)
// faults. Intact and damaged frames of every coded dtype, in 2^14-element chunks as kvtierd
// uses, must decode or fail cleanly there.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    room_ = (bytes + page - 1) / page * page;
    base_ = static_cast<std::byte*>(
        mmap(nullptr, room_ + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED) {
      base_ = nullptr;
      return;
    }
    mprotect(base_ + room_, page, PROT_NONE);
    guard_ = page;
  }
  ~GuardedBuffer() {
    if (base_ != nullptr) munmap(base_, room_ + guard_);
  }
  // `bytes` that end right before the guard page.
  std::span<std::byte> Tail(size_t bytes) { return {base_ + room_ - bytes, bytes}; }
  bool ok() const { return base_ != nullptr; }

 private:
  std::byte* base_ = nullptr;
  size_t room_ = 0;
  size_t guard_ = 0;
};

TEST(CorruptionTest, NothingIsReadOrWrittenPastTheFrameOrTheOutput) {
  for (KvDtype dtype : {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3}) {
    testing::KvLikeOptions o;
    o.dtype = dtype;
    o.tokens = 64;
    const std::vector<std::byte> input = testing::GenerateKvLike(o);
    absl::StatusOr<std::vector<std::byte>> frame = Compress(input, {.dtype = dtype});
    ASSERT_TRUE(frame.ok());
    GuardedBuffer frame_buf(frame->size());
    GuardedBuffer out_buf(input.size());
    ASSERT_TRUE(frame_buf.ok() && out_buf.ok());
    const std::span<std::byte> f = frame_buf.Tail(frame->size());
    const std::span<std::byte> out = out_buf.Tail(input.size());
    std::memcpy(f.data(), frame->data(), f.size());
    ASSERT_TRUE(Decompress(f, out).ok());
    ASSERT_EQ(std::memcmp(out.data(), input.data(), input.size()), 0);
    std::mt19937_64 rng(static_cast<uint64_t>(dtype));
    for (int trial = 0; trial < 300; ++trial) {
      std::memcpy(f.data(), frame->data(), f.size());
      // One to four bytes anywhere after the header and directory: lane tables, code lengths
      // and lanes, which steer how far the lane decoder reads.
      for (int k = 0; k <= trial % 4; ++k) {
        const size_t at = 40 + rng() % (f.size() - 40);
        f[at] ^= static_cast<std::byte>(1 + rng() % 255);
      }
      const absl::Status s = Decompress(f, out);
      ASSERT_TRUE(s.ok() || IsExpectedError(s)) << s;
    }
  }
}

}  // namespace
}  // namespace kvtier
