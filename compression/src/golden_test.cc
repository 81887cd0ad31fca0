// Golden frames pin format v1: each testdata/<name>.kvz must decode to testdata/<name>.bin, and
// compressing <name>.bin must give <name>.kvz byte for byte. A change that breaks this changes
// the format: bump the version instead (docs/format.md, "Versioning").
//
// Regenerate (only when deliberately changing the format) with
//   KVTIER_UPDATE_GOLDEN=1 build/tests/compression_golden_test
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kv_like_data.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {
namespace {

struct GoldenCase {
  const char* name;
  KvDtype dtype;
  int chunk_log2;
};

constexpr GoldenCase kCases[] = {
    {"bf16_keys", KvDtype::kBf16, 12},         {"bf16_values", KvDtype::kBf16, 11},
    {"fp16_keys", KvDtype::kFp16, 12},         {"fp8e4m3_keys", KvDtype::kFp8E4M3, 12},
    {"fp8e5m2_values", KvDtype::kFp8E5M2, 12}, {"raw_int8", KvDtype::kRaw, 12},
    {"bf16_special", KvDtype::kBf16, 10},
};

std::string Dir() {
  const char* env = std::getenv("KVTIER_CODEC_TESTDATA");
  return env != nullptr ? env : KVTIER_CODEC_TESTDATA;
}

std::vector<std::byte> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

void WriteFile(const std::string& path, const std::vector<std::byte>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

// The inputs, generated only when regenerating: the checked-in .bin files are the reference.
std::vector<std::byte> MakeInput(const GoldenCase& c) {
  const std::string name = c.name;
  if (name == "bf16_special") {
    // Specials (zeros, NaN payloads, infinities, -0, denormals), then a constant run, then
    // random bits: Huffman, constant and stored chunks in one frame, last chunk partial.
    std::vector<uint16_t> v;
    for (int rep = 0; rep < 86; ++rep) {
      for (uint16_t x : {0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0x0001, 0x807F,
                         0x3F80, 0xBF80, 0x4049}) {
        v.push_back(x);
      }
    }
    v.resize(1024);          // chunk 0: Huffman
    v.resize(2048, 0x3C00);  // chunk 1: constant
    std::mt19937_64 rng(42);
    for (int i = 0; i < 1100; ++i) v.push_back(static_cast<uint16_t>(rng()));
    std::vector<std::byte> b(2 * v.size());
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  }
  testing::KvLikeOptions o;
  o.dtype = c.dtype;
  o.keys = name.find("keys") != std::string::npos || name == "raw_int8";
  o.tokens = 50;  // 6400 elements: a full chunk and a partial one at chunk_log2 12
  o.heads = 2;
  o.head_dim = 64;
  o.seed = 2024;
  return testing::GenerateKvLike(o);
}

TEST(GoldenTest, FramesAreStable) {
  const bool update = std::getenv("KVTIER_UPDATE_GOLDEN") != nullptr;
  for (const GoldenCase& c : kCases) {
    SCOPED_TRACE(c.name);
    const std::string base = Dir() + "/" + c.name;
    const CodecOptions options{.dtype = c.dtype, .chunk_log2 = c.chunk_log2};
    if (update) {
      const std::vector<std::byte> input = MakeInput(c);
      absl::StatusOr<std::vector<std::byte>> frame = Compress(input, options);
      ASSERT_TRUE(frame.ok());
      WriteFile(base + ".bin", input);
      WriteFile(base + ".kvz", *frame);
      continue;
    }
    const std::vector<std::byte> input = ReadFile(base + ".bin");
    const std::vector<std::byte> golden = ReadFile(base + ".kvz");
    ASSERT_FALSE(golden.empty());
    absl::StatusOr<std::vector<std::byte>> decoded = Decompress(golden);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == input) << "golden frame no longer decodes to its input";
    absl::StatusOr<std::vector<std::byte>> frame = Compress(input, options);
    ASSERT_TRUE(frame.ok());
    EXPECT_TRUE(*frame == golden) << "the encoder no longer writes the golden bytes";
  }
}

}  // namespace
}  // namespace kvtier
