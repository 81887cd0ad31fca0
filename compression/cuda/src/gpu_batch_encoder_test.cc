// The GPU batch encoder against the CPU codec: every frame byte for byte, over batches that
// take several groups in flight, every dtype, blocks that do not shrink, awkward and empty sizes,
// and bad jobs refused before anything runs. Exits 77 (ctest SKIP) without a CUDA device.
#include "kvtier/compression/gpu_batch_encoder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "kv_like_data.h"
#include "kvtier/compression/batch_encoder.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier {
namespace {

using Bytes = std::vector<std::byte>;

Bytes KvBlock(KvDtype dtype, size_t bytes, uint64_t seed) {
  testing::KvLikeOptions o;
  o.dtype = dtype;
  o.keys = seed % 2 == 0;
  o.tokens = static_cast<int>(bytes / 1024 + 1);
  o.seed = seed;
  Bytes kv = testing::GenerateKvLike(o);
  kv.resize(bytes);
  return kv;
}

// Encodes `inputs` with `encoder` and with the CPU codec and expects the same frames.
void ExpectCpuFrames(BatchEncoder& encoder, const std::vector<Bytes>& inputs,
                     const CodecOptions& options) {
  std::vector<Bytes> gpu_out, cpu_out;
  std::vector<CompressJob> gpu_jobs, cpu_jobs;
  for (const Bytes& in : inputs) {
    gpu_out.emplace_back(MaxCompressedSize(in.size(), options));
    cpu_out.emplace_back(MaxCompressedSize(in.size(), options));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    gpu_jobs.push_back({.input = inputs[i], .output = gpu_out[i]});
    cpu_jobs.push_back({.input = inputs[i], .output = cpu_out[i]});
  }
  ASSERT_TRUE(CompressBatch(cpu_jobs, options, 2).ok());
  const absl::Status s = encoder.Compress(gpu_jobs, options);
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE("job " + std::to_string(i) + " of " + std::to_string(inputs[i].size()) + " bytes");
    ASSERT_EQ(gpu_jobs[i].compressed_bytes, cpu_jobs[i].compressed_bytes);
    EXPECT_TRUE(std::equal(gpu_out[i].begin(), gpu_out[i].begin() + gpu_jobs[i].compressed_bytes,
                           cpu_out[i].begin()));
  }
}

TEST(GpuBatchEncoderTest, WritesTheCpuFramesOverManyGroups) {
  // 1 MiB groups: the 20 blocks below take several, and the 3 MiB block one of its own.
  absl::StatusOr<std::unique_ptr<BatchEncoder>> encoder =
      NewGpuBatchEncoder({.group_bytes = size_t{1} << 20});
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_EQ((*encoder)->Describe().rfind("gpu (", 0), 0u) << (*encoder)->Describe();
  std::mt19937_64 rng(7);
  for (KvDtype dtype : {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3, KvDtype::kRaw}) {
    SCOPED_TRACE(KvDtypeName(dtype));
    const size_t eb = KvDtypeBytes(dtype);
    std::vector<Bytes> inputs;
    for (int i = 0; i < 16; ++i) inputs.push_back(KvBlock(dtype, 256 << 10, rng()));
    Bytes random(100'000 * eb);  // does not shrink: a stored frame
    for (std::byte& b : random) b = static_cast<std::byte>(rng());
    inputs.push_back(std::move(random));
    inputs.push_back(KvBlock(dtype, 12'345 * eb, rng()));  // not a multiple of any chunk
    inputs.emplace_back();                                 // empty
    inputs.push_back(KvBlock(dtype, 3 << 20, rng()));      // larger than a group
    ExpectCpuFrames(**encoder, inputs, {.dtype = dtype});
  }
  // Other chunk sizes (the three-kernel GPU path) with the same encoder.
  std::vector<Bytes> inputs;
  for (int i = 0; i < 4; ++i) inputs.push_back(KvBlock(KvDtype::kBf16, 256 << 10, rng()));
  ExpectCpuFrames(**encoder, inputs, {.dtype = KvDtype::kBf16, .chunk_log2 = 12});
  ExpectCpuFrames(**encoder, inputs, {.dtype = KvDtype::kBf16, .chunk_log2 = 16});
}

TEST(GpuBatchEncoderTest, RefusesBadJobsBeforeRunning) {
  absl::StatusOr<std::unique_ptr<BatchEncoder>> encoder = NewGpuBatchEncoder();
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  const CodecOptions fp16{.dtype = KvDtype::kFp16};
  Bytes good = KvBlock(KvDtype::kFp16, 4096, 1);
  Bytes odd(4097);
  Bytes out(MaxCompressedSize(4097, fp16));
  Bytes good_out(MaxCompressedSize(good.size(), fp16));
  std::vector<CompressJob> jobs = {{.input = good, .output = good_out},
                                   {.input = odd, .output = out}};
  absl::Status s = (*encoder)->Compress(jobs, fp16);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("job 1"), std::string::npos) << s;
  EXPECT_EQ(jobs[0].compressed_bytes, 0u);  // nothing ran

  Bytes small(16);
  jobs = {{.input = good, .output = small}};
  s = (*encoder)->Compress(jobs, fp16);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("MaxCompressedSize"), std::string::npos) << s;

  // The encoder still works after refusing.
  ExpectCpuFrames(**encoder, {good}, fp16);
}

TEST(CpuBatchEncoderTest, IsCompressBatch) {
  std::unique_ptr<BatchEncoder> encoder = NewCpuBatchEncoder(3);
  EXPECT_EQ(encoder->Describe(), "cpu (3 threads)");
  std::vector<Bytes> inputs;
  for (int i = 0; i < 5; ++i) inputs.push_back(KvBlock(KvDtype::kBf16, 64 << 10, i));
  ExpectCpuFrames(*encoder, inputs, {.dtype = KvDtype::kBf16});
}

}  // namespace
}  // namespace kvtier
