// Round trips and format properties of the CPU codec on the inputs the issue lists: random
// bits (stored), all exponents, special values, awkward sizes, empty input, KV-like data.
#include "kvtier/compression/kv_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "format.h"
#include "kv_like_data.h"
#include "kvtier/compression/frame_info.h"

namespace kvtier {
namespace {

using ::testing::HasSubstr;

constexpr KvDtype kAllDtypes[] = {KvDtype::kRaw, KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3,
                                  KvDtype::kFp8E5M2};

std::vector<std::byte> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (std::byte& b : v) b = static_cast<std::byte>(rng());
  return v;
}

std::vector<std::byte> FromU16(const std::vector<uint16_t>& v) {
  std::vector<std::byte> b(2 * v.size());
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Compresses, checks the size bound and the header, decompresses and compares bit for bit.
std::vector<std::byte> RoundTrip(const std::vector<std::byte>& input, const CodecOptions& options) {
  std::vector<std::byte> frame(MaxCompressedSize(input.size(), options));
  absl::StatusOr<size_t> size = Compress(input, options, frame);
  EXPECT_TRUE(size.ok()) << size.status();
  if (!size.ok()) return {};
  EXPECT_LE(*size, MaxCompressedSize(input.size(), options));
  frame.resize(*size);
  absl::StatusOr<FrameHeader> h = ReadFrameHeader(frame);
  EXPECT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->frame_bytes, frame.size());
  EXPECT_EQ(h->decompressed_bytes, input.size());
  EXPECT_EQ(h->dtype, options.dtype);
  absl::StatusOr<std::vector<std::byte>> out = Decompress(frame);
  EXPECT_TRUE(out.ok()) << out.status();
  if (out.ok()) {
    EXPECT_TRUE(*out == input) << "round trip changed the bytes";
  }
  return frame;
}

double Ratio(const std::vector<std::byte>& input, const std::vector<std::byte>& frame) {
  return static_cast<double>(input.size()) / static_cast<double>(frame.size());
}

TEST(KvCodecTest, RandomBitsFallBackToStored) {
  for (KvDtype dtype : kAllDtypes) {
    SCOPED_TRACE(KvDtypeName(dtype));
    const CodecOptions options{.dtype = dtype};
    const std::vector<std::byte> input = RandomBytes(200000, 1);
    const std::vector<std::byte> frame = RoundTrip(input, options);
    // Worst case: the input plus header, 8 bytes per chunk and padding.
    const size_t chunks = (input.size() / KvDtypeBytes(dtype) + 16383) / 16384;
    EXPECT_EQ(frame.size(), 32 + 8 * chunks + kvz::RoundUp4(input.size()));
    absl::StatusOr<FrameInfo> info = InspectFrame(frame);
    ASSERT_TRUE(info.ok());
    for (const ChunkInfo& c : info->chunks) EXPECT_EQ(c.mode, "stored");
  }
}

TEST(KvCodecTest, EmptyInput) {
  for (KvDtype dtype : kAllDtypes) {
    const CodecOptions options{.dtype = dtype};
    const std::vector<std::byte> frame = RoundTrip({}, options);
    EXPECT_EQ(frame.size(), kvz::kHeaderBytes);
  }
}

TEST(KvCodecTest, AllExponentValuesAndSpecialValuesSurviveBitExactly) {
  std::mt19937_64 rng(3);
  std::vector<uint16_t> v;
  for (int rep = 0; rep < 40; ++rep) {
    for (int e = 0; e < 256; ++e) {  // every bf16 exponent byte, random sign and mantissa
      v.push_back(static_cast<uint16_t>((rng() & 0x807F) | e << 7));
    }
  }
  // bf16: +-0, +-inf, quiet and signalling NaNs with payloads, denormals, largest finite.
  for (uint16_t x : {0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0x7FFF, 0x0001, 0x807F,
                     0x0040, 0x7F7F, 0xFF7F}) {
    for (int rep = 0; rep < 50; ++rep) v.push_back(x);
  }
  // fp16 specials in the same buffer (as bits, they are just more symbols).
  for (uint16_t x : {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x03FF, 0x8001, 0x7BFF}) v.push_back(x);
  const std::vector<std::byte> input = FromU16(v);
  for (KvDtype dtype : {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kRaw}) {
    for (int chunk_log2 : {10, 14}) {
      RoundTrip(input, {.dtype = dtype, .chunk_log2 = chunk_log2});
    }
  }
  // fp8: every byte value, including NaNs (e4m3 0x7F/0xFF, e5m2 0x7D-0x7F) and -0 (0x80).
  std::vector<std::byte> bytes;
  for (int rep = 0; rep < 30; ++rep) {
    for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<std::byte>(b));
  }
  RoundTrip(bytes, {.dtype = KvDtype::kFp8E4M3});
  RoundTrip(bytes, {.dtype = KvDtype::kFp8E5M2});
}

TEST(KvCodecTest, SizesThatAreNotMultiplesOfAnything) {
  std::mt19937_64 rng(5);
  for (KvDtype dtype : kAllDtypes) {
    for (int chunk_log2 : {10, 12, 14}) {
      const size_t chunk = size_t{1} << chunk_log2;
      for (size_t n : {size_t{1}, size_t{2}, size_t{3}, size_t{31}, size_t{32}, size_t{33},
                       size_t{100}, chunk - 1, chunk, chunk + 1, 3 * chunk + 7, 5 * chunk - 33}) {
        SCOPED_TRACE(::testing::Message()
                     << KvDtypeName(dtype) << " chunk_log2=" << chunk_log2 << " n=" << n);
        // Low-entropy data so that the chunks are coded, not stored.
        std::vector<std::byte> input(n * KvDtypeBytes(dtype));
        for (size_t i = 0; i < input.size(); ++i) {
          input[i] = static_cast<std::byte>(
              (i % KvDtypeBytes(dtype) == KvDtypeBytes(dtype) - 1) ? 0x3F + rng() % 3 : rng());
        }
        RoundTrip(input, {.dtype = dtype, .chunk_log2 = chunk_log2});
      }
    }
  }
}

TEST(KvCodecTest, ConstantAndTwoSymbolChunks) {
  const std::vector<std::byte> zeros(100000, std::byte{0});
  for (KvDtype dtype : kAllDtypes) {
    const std::vector<std::byte> frame = RoundTrip(zeros, {.dtype = dtype});
    absl::StatusOr<FrameInfo> info = InspectFrame(frame);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->chunks[0].mode, "constant");
  }
  // 1-byte dtypes: zeros compress to 4 bytes per chunk.
  EXPECT_LT(RoundTrip(zeros, {.dtype = KvDtype::kFp8E4M3}).size(), 200u);
  std::vector<std::byte> two(70000);
  std::mt19937_64 rng(9);
  for (std::byte& b : two) b = static_cast<std::byte>(rng() % 7 == 0 ? 0x40 : 0x3F);
  RoundTrip(two, {.dtype = KvDtype::kRaw});
}

// Frames sit wherever a tier or a socket buffer put them: the input, the frame and the output
// at every offset modulo 8 give the same bytes (the vector decoder gathers 4-byte words, which
// are aligned only when the frame is).
TEST(KvCodecTest, AnyAlignmentOfInputFrameAndOutput) {
  for (KvDtype dtype : {KvDtype::kBf16, KvDtype::kFp8E4M3}) {
    testing::KvLikeOptions o;
    o.dtype = dtype;
    o.tokens = 96;
    const std::vector<std::byte> input = testing::GenerateKvLike(o);
    const CodecOptions options{.dtype = dtype};
    const std::vector<std::byte> reference = *Compress(input, options);
    for (size_t shift = 0; shift < 8; ++shift) {
      std::vector<std::byte> in_buf(input.size() + shift);
      std::memcpy(in_buf.data() + shift, input.data(), input.size());
      std::vector<std::byte> frame_buf(MaxCompressedSize(input.size(), options) + shift);
      const std::span<std::byte> frame_room(frame_buf.data() + shift, frame_buf.size() - shift);
      absl::StatusOr<size_t> size = Compress(std::span(in_buf).subspan(shift), options, frame_room);
      ASSERT_TRUE(size.ok()) << size.status();
      const std::span<const std::byte> frame = frame_room.first(*size);
      EXPECT_TRUE(std::equal(frame.begin(), frame.end(), reference.begin(), reference.end()))
          << "shift " << shift;
      std::vector<std::byte> out_buf(input.size() + shift);
      const std::span<std::byte> out(out_buf.data() + shift, input.size());
      ASSERT_TRUE(Decompress(frame, out).ok()) << "shift " << shift;
      EXPECT_TRUE(std::equal(out.begin(), out.end(), input.begin(), input.end()))
          << "shift " << shift;
    }
  }
}

TEST(KvCodecTest, KvLikeDataCompresses) {
  for (KvDtype dtype :
       {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3, KvDtype::kFp8E5M2, KvDtype::kRaw}) {
    for (bool keys : {true, false}) {
      testing::KvLikeOptions o;
      o.dtype = dtype;
      o.keys = keys;
      o.tokens = 128;
      const std::vector<std::byte> input = testing::GenerateKvLike(o);
      const std::vector<std::byte> frame = RoundTrip(input, {.dtype = dtype});
      const double ratio = Ratio(input, frame);
      RecordProperty(std::string(KvDtypeName(dtype)) + (keys ? "_k" : "_v"), std::to_string(ratio));
      if (dtype == KvDtype::kBf16) {
        EXPECT_GT(ratio, 1.35) << (keys ? "keys" : "values");
      }
      if (dtype == KvDtype::kFp16) {
        EXPECT_GT(ratio, 1.08) << (keys ? "keys" : "values");
      }
      EXPECT_GT(ratio, 1.0);
    }
  }
}

TEST(KvCodecTest, EveryChunkSizeRoundTrips) {
  const std::vector<std::byte> input =
      testing::GenerateKvBlock(KvDtype::kBf16, /*layers=*/2, /*tokens=*/32, 4, 64, 1);
  for (int chunk_log2 = kvz::kMinChunkLog2; chunk_log2 <= kvz::kMaxChunkLog2; ++chunk_log2) {
    RoundTrip(input, {.dtype = KvDtype::kBf16, .chunk_log2 = chunk_log2});
  }
}

TEST(KvCodecTest, BadArgumentsAreInvalidArgument) {
  const std::vector<std::byte> odd(7);
  std::vector<std::byte> out(100);
  absl::StatusOr<size_t> s = Compress(odd, {.dtype = KvDtype::kBf16}, out);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("raw"));
  s = Compress(odd, {.dtype = KvDtype::kRaw, .chunk_log2 = 9}, out);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  s = Compress(odd, {.dtype = static_cast<KvDtype>(9)}, out);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> small(10);
  s = Compress(odd, {.dtype = KvDtype::kRaw}, small);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("MaxCompressedSize"));

  absl::StatusOr<std::vector<std::byte>> frame = Compress(odd, {.dtype = KvDtype::kRaw});
  ASSERT_TRUE(frame.ok());
  std::vector<std::byte> wrong(8);
  EXPECT_EQ(Decompress(*frame, wrong).code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> longer = *frame;
  longer.push_back(std::byte{0});
  std::vector<std::byte> right(7);
  EXPECT_EQ(Decompress(longer, right).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Decompress(*frame, right).ok());
}

TEST(KvCodecTest, DtypeNames) {
  for (KvDtype dtype : kAllDtypes) {
    absl::StatusOr<KvDtype> parsed = ParseKvDtype(KvDtypeName(dtype));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_EQ(ParseKvDtype("float32").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvDtypeName(static_cast<KvDtype>(77)), "unknown");
}

TEST(KvCodecTest, BatchOutputDoesNotDependOnThreads) {
  std::vector<std::vector<std::byte>> inputs;
  for (int i = 0; i < 9; ++i) {
    inputs.push_back(testing::GenerateKvBlock(KvDtype::kBf16, 2, 16 + i, 2, 64, i));
  }
  const CodecOptions options{.dtype = KvDtype::kBf16, .chunk_log2 = 11};
  std::vector<std::vector<std::byte>> outputs[2];
  for (int run = 0; run < 2; ++run) {
    std::vector<CompressJob> jobs;
    for (const auto& in : inputs) {
      outputs[run].emplace_back(MaxCompressedSize(in.size(), options));
      jobs.push_back({.input = in, .output = outputs[run].back()});
    }
    ASSERT_TRUE(CompressBatch(jobs, options, run == 0 ? 1 : 4).ok());
    for (size_t i = 0; i < jobs.size(); ++i) outputs[run][i].resize(jobs[i].compressed_bytes);
  }
  EXPECT_EQ(outputs[0], outputs[1]);

  std::vector<std::vector<std::byte>> decoded;
  std::vector<DecompressJob> djobs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    decoded.emplace_back(inputs[i].size());
    djobs.push_back({.frame = outputs[0][i], .output = decoded.back()});
  }
  ASSERT_TRUE(DecompressBatch(djobs, 3).ok());
  EXPECT_EQ(decoded, inputs);
  // An error names its job.
  outputs[0][4][40] ^= std::byte{1};
  djobs[4].frame = outputs[0][4];
  const absl::Status s = DecompressBatch(djobs, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("job 4"));
}

}  // namespace
}  // namespace kvtier
