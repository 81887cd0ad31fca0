// GpuBlockClient against the real kvtierd: blocks put from device memory come back into device
// memory byte for byte, in a COMPRESSION_KVZ bf16 namespace and in a plain one; incompressible
// blocks go stored; the daemon's stats show the compression; frames written on the GPU decode on
// the CPU (Client::Get) and CPU frames decode on the GPU; damaged frames are DataLoss, never
// wrong bytes; many small blocks come back intact. Exits 77 (ctest SKIP) when there is no CUDA
// device or kvtierd is not built
// ($KVTIER_KVTIERD names another kvtierd).
#include "kvtier/client/gpu_blocks.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kv_like_data.h"
#include "kvtier/client/client.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "kvtier/kernels/cuda_status.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/daemon_test.h"
#include "tests/testing/seeded_blocks.h"
#include "tests/testing/stats_lookup.h"

namespace kvtier {
namespace {

using Bytes = std::vector<std::byte>;
using client::Client;
using client::DeviceBlock;
using client::DeviceBuffer;
using client::GetResult;
using client::GpuBlockClient;
using client::GpuBlockClientOptions;
using client::IsStored;
using client::NamespaceHandle;

constexpr uint64_t kBlockBytes = 256 << 10;
constexpr uint8_t kKvz = static_cast<uint8_t>(CodecId::kKvz);

// One block of a paged bf16 KV cache: 4 layers x K/V x 16 tokens x 8 heads x 128 dims.
Bytes KvBlock(uint64_t seed) {
  Bytes b = testing::GenerateKvBlock(KvDtype::kBf16, 4, 16, 8, 128, seed);
  EXPECT_EQ(b.size(), kBlockBytes);
  return b;
}

NamespaceDescriptor Descriptor(const std::string& model) {
  return kvtier::testing::TestDescriptor(model, kBlockBytes);
}

// Device memory holding a list of blocks, each at a 256-byte aligned offset.
class DeviceBlocks {
 public:
  explicit DeviceBlocks(const std::vector<Bytes>& blocks) : sizes_(blocks.size()) {
    size_t total = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      offsets_.push_back(total);
      sizes_[i] = blocks[i].size();
      total += (blocks[i].size() + 255) / 256 * 256;
    }
    Check(cudaMalloc(&base_, std::max<size_t>(total, 256)));
    Check(cudaMemset(base_, 0xA5, std::max<size_t>(total, 256)));
    for (size_t i = 0; i < blocks.size(); ++i) {
      Check(cudaMemcpy(ptr(i), blocks[i].data(), blocks[i].size(), cudaMemcpyHostToDevice));
    }
    // GpuBlockClient's streams do not wait for the legacy default stream.
    Check(cudaDeviceSynchronize());
  }
  // `count` buffers of `bytes` each, filled with 0xA5.
  DeviceBlocks(size_t count, size_t bytes) : DeviceBlocks(std::vector<Bytes>(count, Bytes(bytes))) {
    Check(cudaMemset(base_, 0xA5, offsets_.empty() ? 256 : offsets_.back() + bytes));
    Check(cudaDeviceSynchronize());
  }
  ~DeviceBlocks() { cudaFree(base_); }

  std::byte* ptr(size_t i) const { return static_cast<std::byte*>(base_) + offsets_[i]; }
  std::vector<DeviceBlock> AsBlocks() const {
    std::vector<DeviceBlock> out;
    for (size_t i = 0; i < sizes_.size(); ++i) out.push_back({ptr(i), sizes_[i]});
    return out;
  }
  std::vector<DeviceBuffer> AsBuffers() const {
    std::vector<DeviceBuffer> out;
    for (size_t i = 0; i < sizes_.size(); ++i) out.push_back({ptr(i), sizes_[i]});
    return out;
  }
  Bytes Read(size_t i, size_t length) const {
    Bytes b(length);
    Check(cudaMemcpy(b.data(), ptr(i), length, cudaMemcpyDeviceToHost));
    return b;
  }

 private:
  static void Check(cudaError_t e) { ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e); }
  void* base_ = nullptr;
  std::vector<size_t> offsets_;
  std::vector<size_t> sizes_;
};

// The blocks the round trips use: KV-like blocks, random bytes (do not shrink: stored), a
// shorter KV-like block, and an odd-length one (not whole bf16 elements: stored).
std::vector<Bytes> TestBlocks(uint64_t seed) {
  std::vector<Bytes> blocks;
  for (int i = 0; i < 20; ++i) blocks.push_back(KvBlock(seed * 1000 + i));
  blocks.push_back(testing::SeededBytes(seed, kBlockBytes));
  Bytes shorter = KvBlock(seed * 1000 + 999);
  shorter.resize(100'000);
  blocks.push_back(shorter);
  Bytes odd = KvBlock(seed * 1000 + 998);
  odd.resize(12'345);
  blocks.push_back(odd);
  return blocks;
}
constexpr size_t kRandomBlock = 20;

std::vector<BlockKey> Keys(uint64_t seed, size_t n) {
  std::vector<BlockKey> keys;
  for (size_t i = 0; i < n; ++i) keys.push_back(testing::SeededKey(seed * 100'000 + i));
  return keys;
}

// Every test runs twice: copying straight to and from the daemon's arena (zero copy), and
// through pinned staging buffers.
class GpuBlocksTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    testing::DaemonOptions options;
    options.dram_capacity = "256MiB";
    auto d = testing::DaemonProcess::Start(options);
    if (absl::IsNotFound(d.status())) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    auto c = Client::Connect(daemon_->unix_uri(), {});
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
    // Small stages, so that a batch of 23 blocks runs through several.
    auto g = GpuBlockClient::Create(
        client_.get(), GpuBlockClientOptions{.stage_bytes = 1 << 20, .zero_copy = GetParam()});
    ASSERT_TRUE(g.ok()) << g.status();
    gpu_ = std::move(*g);
    ASSERT_EQ(gpu_->zero_copy(), GetParam());
    proto::NamespaceOptions kvz;
    kvz.set_compression(proto::COMPRESSION_KVZ);
    auto ns = client_->OpenNamespace(Descriptor("gpu-test-kvz"), kvz);
    ASSERT_TRUE(ns.ok()) << ns.status();
    compressed_ = *ns;
    ns = client_->OpenNamespace(Descriptor("gpu-test-plain"));
    ASSERT_TRUE(ns.ok()) << ns.status();
    plain_ = *ns;
  }

  // Puts `blocks` from device memory, gets them back into fresh device memory and compares.
  void RoundTrip(const NamespaceHandle& ns, uint64_t seed) {
    const std::vector<Bytes> blocks = TestBlocks(seed);
    const std::vector<BlockKey> keys = Keys(seed, blocks.size());
    DeviceBlocks src(blocks);
    auto put = gpu_->PutFromDevice(ns, keys, src.AsBlocks());
    ASSERT_TRUE(put.ok()) << put.status();
    for (size_t i = 0; i < put->size(); ++i) EXPECT_TRUE((*put)[i].ok()) << i << ": " << (*put)[i];

    DeviceBlocks dst(blocks.size(), kBlockBytes);
    auto got = gpu_->GetToDevice(ns, keys, dst.AsBuffers());
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < blocks.size(); ++i) {
      const GetResult& r = (*got)[i];
      ASSERT_TRUE(r.status.ok()) << i << ": " << r.status;
      EXPECT_EQ(r.codec, 0);
      ASSERT_EQ(r.length, blocks[i].size()) << i;
      EXPECT_TRUE(dst.Read(i, r.length) == blocks[i]) << "block " << i << " differs";
    }
  }

  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<GpuBlockClient> gpu_;
  NamespaceHandle compressed_;
  NamespaceHandle plain_;
};

TEST_P(GpuBlocksTest, RoundTripCompressed) {
  RoundTrip(compressed_, 1);
  const client::GpuTransferCounters& c = gpu_->counters();
  EXPECT_EQ(c.put_blocks, 23u);
  EXPECT_EQ(c.put_kvz_blocks, 21u);  // all but the random and the odd-length block
  EXPECT_LT(c.put_sent_bytes, c.put_raw_bytes);
  EXPECT_EQ(c.get_kvz_blocks, 21u);
  if (GetParam()) {
    EXPECT_EQ(c.zero_copy_blocks, 2 * 23u);  // every block, put and got
    EXPECT_GT(c.arena_granules_registered, 0u);
    EXPECT_EQ(c.arena_granules_failed, 0u);
  } else {
    EXPECT_EQ(c.zero_copy_blocks, 0u);
  }
  std::printf("kvz frames: %llu raw bytes sent as %llu (ratio %.3f)\n",
              static_cast<unsigned long long>(c.put_raw_bytes),
              static_cast<unsigned long long>(c.put_sent_bytes),
              static_cast<double>(c.put_raw_bytes) / static_cast<double>(c.put_sent_bytes));
}

TEST_P(GpuBlocksTest, RoundTripPlain) {
  RoundTrip(plain_, 2);
  EXPECT_EQ(gpu_->counters().put_kvz_blocks, 0u);
  EXPECT_EQ(gpu_->counters().put_sent_bytes, gpu_->counters().put_raw_bytes);
}

// Many small blocks (16 KiB, 300 in a batch over several stages): their frames and the plain
// blocks move as hundreds of small pieces (by the copy kernel where zero copy is on) and
// come back byte for byte, compressed or not.
TEST_P(GpuBlocksTest, SmallBlocksRoundTrip) {
  constexpr uint64_t kSmall = 16 << 10;
  std::vector<Bytes> blocks;
  for (int i = 0; i < 300; ++i) {
    blocks.push_back(testing::GenerateKvBlock(KvDtype::kBf16, 1, 8, 4, 128, 5000 + i));
    ASSERT_EQ(blocks.back().size(), kSmall);
  }
  blocks[7] = testing::SeededBytes(7, kSmall);  // does not shrink: stored
  proto::NamespaceOptions kvz;
  kvz.set_compression(proto::COMPRESSION_KVZ);
  for (bool compressed : {true, false}) {
    auto ns = client_->OpenNamespace(
        kvtier::testing::TestDescriptor(compressed ? "gpu-small-kvz" : "gpu-small", kSmall),
        compressed ? kvz : proto::NamespaceOptions{});
    ASSERT_TRUE(ns.ok()) << ns.status();
    const std::vector<BlockKey> keys = Keys(compressed ? 8 : 9, blocks.size());
    DeviceBlocks src(blocks);
    auto put = gpu_->PutFromDevice(*ns, keys, src.AsBlocks());
    ASSERT_TRUE(put.ok()) << put.status();
    for (size_t i = 0; i < put->size(); ++i) ASSERT_TRUE((*put)[i].ok()) << i << ": " << (*put)[i];
    DeviceBlocks dst(blocks.size(), kSmall);
    auto got = gpu_->GetToDevice(*ns, keys, dst.AsBuffers());
    ASSERT_TRUE(got.ok()) << got.status();
    for (size_t i = 0; i < blocks.size(); ++i) {
      ASSERT_TRUE((*got)[i].status.ok()) << i << ": " << (*got)[i].status;
      ASSERT_EQ((*got)[i].length, kSmall);
      ASSERT_TRUE(dst.Read(i, kSmall) == blocks[i])
          << (compressed ? "kvz" : "plain") << " block " << i << " differs";
    }
  }
  EXPECT_EQ(gpu_->counters().put_kvz_blocks, 299u);
  EXPECT_EQ(gpu_->counters().get_kvz_blocks, 299u);
}

// Two GpuBlockClients on one Client share the arena's registration: when the first goes, the
// second's copies (the kernel's among them) still find the arena registered.
TEST_P(GpuBlocksTest, ASecondGpuClientOutlivesTheFirst) {
  auto first = GpuBlockClient::Create(
      client_.get(), GpuBlockClientOptions{.stage_bytes = 1 << 20, .zero_copy = GetParam()});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<Bytes> blocks = TestBlocks(10);
  const std::vector<BlockKey> keys = Keys(10, blocks.size());
  DeviceBlocks src(blocks);
  auto put = (*first)->PutFromDevice(compressed_, keys, src.AsBlocks());
  ASSERT_TRUE(put.ok()) << put.status();
  for (size_t i = 0; i < put->size(); ++i) ASSERT_TRUE((*put)[i].ok()) << i;
  DeviceBlocks dst(blocks.size(), kBlockBytes);
  ASSERT_TRUE(gpu_->GetToDevice(compressed_, keys, dst.AsBuffers()).ok());
  first->reset();  // gpu_ goes on alone
  DeviceBlocks again(blocks.size(), kBlockBytes);
  auto got = gpu_->GetToDevice(compressed_, keys, again.AsBuffers());
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE((*got)[i].status.ok()) << i << ": " << (*got)[i].status;
    EXPECT_TRUE(again.Read(i, blocks[i].size()) == blocks[i]) << "block " << i;
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// What the daemon holds: frames for KV blocks, the random block as it was; stats show it.
TEST_P(GpuBlocksTest, DaemonHoldsFramesAndCountsThem) {
  RoundTrip(compressed_, 3);
  const std::vector<BlockKey> keys = Keys(3, 23);
  std::vector<Bytes> bufs(keys.size(), Bytes(kBlockBytes));
  std::vector<std::span<std::byte>> out(bufs.begin(), bufs.end());
  auto got = client_->Get(compressed_, keys, out, client::GetOptions{.decode = false});
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE((*got)[i].status.ok()) << i;
    const bool stored = i == kRandomBlock || i == 22;
    EXPECT_EQ((*got)[i].codec, stored ? 0 : kKvz) << i;
    if (!stored) {
      EXPECT_LT((*got)[i].length, (*got)[i].raw_length) << i;
    }
  }

  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const proto::NamespaceStats* found = testing::FindNamespaceStats(*stats, compressed_.id);
  ASSERT_NE(found, nullptr);
  const proto::NamespaceStats& ns = *found;
  EXPECT_EQ(ns.blocks(), 23u);
  EXPECT_GT(ns.raw_bytes(), ns.used_bytes());
  std::printf("daemon DRAM: %llu raw bytes in %llu (ratio %.3f)\n",
              static_cast<unsigned long long>(ns.raw_bytes()),
              static_cast<unsigned long long>(ns.used_bytes()),
              static_cast<double>(ns.raw_bytes()) / static_cast<double>(ns.used_bytes()));
}

// GPU frames decode on the CPU; CPU frames (cpu_compress) decode on the GPU.
TEST_P(GpuBlocksTest, CpuAndGpuCodecsAgreeThroughTheDaemon) {
  const std::vector<Bytes> blocks = TestBlocks(4);
  const std::vector<BlockKey> keys = Keys(4, blocks.size());
  DeviceBlocks src(blocks);
  auto put = gpu_->PutFromDevice(compressed_, keys, src.AsBlocks());
  ASSERT_TRUE(put.ok()) << put.status();
  std::vector<Bytes> bufs(keys.size(), Bytes(kBlockBytes));
  std::vector<std::span<std::byte>> out(bufs.begin(), bufs.end());
  auto got = client_->Get(compressed_, keys, out);  // decoded on the CPU
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE((*got)[i].status.ok()) << i << ": " << (*got)[i].status;
    ASSERT_EQ((*got)[i].length, blocks[i].size());
    EXPECT_TRUE(std::equal(blocks[i].begin(), blocks[i].end(), bufs[i].begin())) << i;
  }

  const std::vector<BlockKey> cpu_keys = Keys(5, blocks.size());
  std::vector<std::span<const std::byte>> spans(blocks.begin(), blocks.end());
  auto cpu_put =
      client_->Put(compressed_, cpu_keys, spans, client::PutOptions{.cpu_compress = true});
  ASSERT_TRUE(cpu_put.ok()) << cpu_put.status();
  for (const absl::Status& s : *cpu_put) ASSERT_TRUE(s.ok()) << s;
  DeviceBlocks dst(blocks.size(), kBlockBytes);
  auto gpu_got = gpu_->GetToDevice(compressed_, cpu_keys, dst.AsBuffers());
  ASSERT_TRUE(gpu_got.ok()) << gpu_got.status();
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE((*gpu_got)[i].status.ok()) << i << ": " << (*gpu_got)[i].status;
    EXPECT_TRUE(dst.Read(i, blocks[i].size()) == blocks[i]) << i;
  }
  EXPECT_EQ(gpu_->counters().get_kvz_blocks, 21u);
}

// A frame damaged in its body fails the GPU's checks, one with a broken header the host's:
// both DataLoss, while their neighbours in the batch arrive intact; misses are NotFound.
TEST_P(GpuBlocksTest, DamagedFramesAreDataLossAndMissesNotFound) {
  std::vector<Bytes> blocks = {KvBlock(61), KvBlock(62), KvBlock(63), KvBlock(64)};
  std::vector<Bytes> frames;
  for (const Bytes& b : blocks) {
    auto f = Compress(b, CodecOptions{});
    ASSERT_TRUE(f.ok()) << f.status();
    frames.push_back(*f);
  }
  frames[1][frames[1].size() / 2] ^= std::byte{0x10};  // body
  frames[2][5] ^= std::byte{0x01};                     // header
  const std::vector<BlockKey> keys = Keys(6, 5);       // the fifth is never put
  std::vector<std::span<const std::byte>> spans(frames.begin(), frames.end());
  const std::vector<uint8_t> codecs(4, kKvz);
  const std::vector<uint64_t> raw(4, kBlockBytes);
  auto put = client_->Put(compressed_, std::span(keys).first(4), spans,
                          client::PutOptions{.codecs = codecs, .raw_lengths = raw});
  ASSERT_TRUE(put.ok()) << put.status();
  for (const absl::Status& s : *put) ASSERT_TRUE(s.ok()) << s;

  DeviceBlocks dst(5, kBlockBytes);
  auto got = gpu_->GetToDevice(compressed_, keys, dst.AsBuffers());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].status.ok()) << (*got)[0].status;
  EXPECT_TRUE(absl::IsDataLoss((*got)[1].status)) << (*got)[1].status;
  EXPECT_TRUE(absl::IsDataLoss((*got)[2].status)) << (*got)[2].status;
  EXPECT_TRUE((*got)[3].status.ok()) << (*got)[3].status;
  EXPECT_TRUE(absl::IsNotFound((*got)[4].status)) << (*got)[4].status;
  EXPECT_TRUE(dst.Read(0, kBlockBytes) == blocks[0]);
  EXPECT_TRUE(dst.Read(3, kBlockBytes) == blocks[3]);
}

TEST_P(GpuBlocksTest, BadArgumentsAndSmallBuffers) {
  const std::vector<Bytes> blocks = {KvBlock(71), KvBlock(72)};
  const std::vector<BlockKey> keys = Keys(7, 2);
  DeviceBlocks src(blocks);
  std::vector<DeviceBlock> in = src.AsBlocks();
  EXPECT_TRUE(absl::IsInvalidArgument(
      gpu_->PutFromDevice(compressed_, std::span(keys).first(1), in).status()));
  std::vector<DeviceBlock> too_big = {{src.ptr(0), kBlockBytes + 2}};
  EXPECT_TRUE(absl::IsInvalidArgument(
      gpu_->PutFromDevice(compressed_, std::span(keys).first(1), too_big).status()));
  auto put = gpu_->PutFromDevice(compressed_, keys, in);
  ASSERT_TRUE(put.ok()) << put.status();

  // Too small for the decoded block, and (for the plain path) too small for the bytes.
  DeviceBlocks dst(2, kBlockBytes);
  std::vector<DeviceBuffer> out = dst.AsBuffers();
  out[1].bytes = kBlockBytes / 2;
  auto got = gpu_->GetToDevice(compressed_, keys, out);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].status.ok()) << (*got)[0].status;
  EXPECT_TRUE(absl::IsInvalidArgument((*got)[1].status)) << (*got)[1].status;
  EXPECT_TRUE(absl::IsInvalidArgument(
      gpu_->GetToDevice(compressed_, keys, std::span(out).first(1)).status()));
}

INSTANTIATE_TEST_SUITE_P(Copies, GpuBlocksTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "ZeroCopy" : "Staged";
                         });

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) {
  const absl::StatusOr<int> devices = kvtier::CudaDeviceCount();
  if (!devices.ok() || *devices == 0) {
    std::printf("SKIP: no CUDA device (%s)\n",
                devices.ok() ? "none found" : std::string(devices.status().message()).c_str());
    return 77;
  }
  const std::string daemon = kvtier::testing::DaemonProcess::BinaryPath();
  if (!std::filesystem::exists(daemon)) {
    std::printf("SKIP: %s is not built (set KVTIER_KVTIERD to another kvtierd)\n", daemon.c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
