// GPU keys against the CPU reference (block_hash.h), byte for byte, on the checked-in vectors
// and on random batches of awkward sizes; then a throughput measurement on large batches.
// Exits 77 (ctest SKIP) with a message when the machine has no usable CUDA device.
#include "kvtier/kernels/cuda_prefix_hash.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "key_vectors.h"
#include "kvtier/kernels/block_hash.h"
#include "kvtier/kernels/cuda_status.h"
#include "nlohmann/json.hpp"

namespace kvtier {
namespace {

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};

// A device copy of a host vector (or `count` uninitialised elements when host is empty).
template <typename T>
std::unique_ptr<T, CudaFree> ToDevice(const std::vector<T>& host, size_t count = 0) {
  const size_t n = host.empty() ? count : host.size();
  void* p = nullptr;
  const absl::Status alloc =
      CudaErrorToStatus(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
  EXPECT_TRUE(alloc.ok()) << alloc;
  if (!host.empty()) {
    const absl::Status copy = CudaErrorToStatus(
        cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    EXPECT_TRUE(copy.ok()) << copy;
  }
  return std::unique_ptr<T, CudaFree>(static_cast<T*>(p));
}

template <typename T>
std::vector<T> ToHost(const T* device, size_t n) {
  std::vector<T> host(n);
  const absl::Status copy = CudaErrorToStatus(
      cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  EXPECT_TRUE(copy.ok()) << copy;
  return host;
}

// A batch on the host: sequences, their parents, and what the CPU computes for them.
struct HostBatch {
  std::vector<uint32_t> tokens;
  std::vector<uint64_t> token_offsets = {0};
  std::vector<BlockKey> parents;
  uint32_t block_tokens = 0;

  void Add(const BlockKey& parent, std::span<const uint32_t> seq) {
    parents.push_back(parent);
    tokens.insert(tokens.end(), seq.begin(), seq.end());
    token_offsets.push_back(tokens.size());
  }
  std::span<const uint32_t> Sequence(size_t s) const {
    return std::span(tokens).subspan(token_offsets[s], token_offsets[s + 1] - token_offsets[s]);
  }
  std::vector<BlockKey> CpuKeys() const {
    std::vector<BlockKey> keys;
    for (size_t s = 0; s < parents.size(); ++s) {
      AppendBlockKeys(parents[s], Sequence(s), block_tokens, &keys);
    }
    return keys;
  }
};

// Device copies of a HostBatch and the view over them.
struct DeviceBatch {
  explicit DeviceBatch(const HostBatch& h)
      : tokens(ToDevice(h.tokens)),
        token_offsets(ToDevice(h.token_offsets)),
        parents(ToDevice(h.parents)),
        key_offsets_host(KeyOffsetsForBatch(h.token_offsets, h.block_tokens)),
        key_offsets(ToDevice(key_offsets_host)),
        keys(ToDevice(std::vector<BlockKey>(), key_offsets_host.back())) {
    view = {.tokens = tokens.get(),
            .token_offsets = token_offsets.get(),
            .parents = parents.get(),
            .key_offsets = key_offsets.get(),
            .keys_out = keys.get(),
            .block_tokens = h.block_tokens,
            .num_sequences = h.parents.size()};
  }
  size_t num_keys() const { return key_offsets_host.back(); }

  std::unique_ptr<uint32_t, CudaFree> tokens;
  std::unique_ptr<uint64_t, CudaFree> token_offsets;
  std::unique_ptr<BlockKey, CudaFree> parents;
  std::vector<uint64_t> key_offsets_host;
  std::unique_ptr<uint64_t, CudaFree> key_offsets;
  std::unique_ptr<BlockKey, CudaFree> keys;
  PrefixHashBatchView view;
};

BlockKey RandomSeed(std::mt19937_64& rng) {
  NamespaceDescriptor d;
  d.model_id = "model-" + std::to_string(rng());
  d.dtype = "bf16";
  d.block_tokens = 16;
  d.tenant_salt = std::to_string(rng() % 3);
  return NamespaceSeed(d);
}

HostBatch RandomBatch(uint32_t block_tokens, size_t sequences, size_t max_blocks, uint64_t seed) {
  std::mt19937_64 rng(seed);
  HostBatch b;
  b.block_tokens = block_tokens;
  std::vector<uint32_t> seq;
  for (size_t s = 0; s < sequences; ++s) {
    // Lengths hit 0, partial-only, exact multiples and multiples plus a partial block.
    const size_t blocks = rng() % (max_blocks + 1);
    const size_t extra = (rng() % 3 == 0) ? 0 : rng() % block_tokens;
    seq.resize(blocks * block_tokens + extra);
    for (uint32_t& t : seq) t = static_cast<uint32_t>(rng());
    b.Add(RandomSeed(rng), seq);
  }
  return b;
}

// Compares GPU keys with the CPU's; on a mismatch prints the inputs that reproduce it.
void ExpectSameKeys(const HostBatch& h, const DeviceBatch& d, const std::vector<BlockKey>& gpu) {
  const std::vector<BlockKey> cpu = h.CpuKeys();
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t s = 0; s < h.parents.size(); ++s) {
    for (uint64_t k = d.key_offsets_host[s]; k < d.key_offsets_host[s + 1]; ++k) {
      if (gpu[k] == cpu[k]) continue;
      std::string tokens;
      for (uint32_t t : h.Sequence(s)) tokens += std::to_string(t) + ",";
      FAIL() << "sequence " << s << " block " << k - d.key_offsets_host[s]
             << " block_tokens=" << h.block_tokens << "\n  gpu " << gpu[k].ToHex() << "\n  cpu "
             << cpu[k].ToHex() << "\n  parent " << h.parents[s].ToHex() << "\n  tokens [" << tokens
             << "]";
    }
  }
}

TEST(CudaPrefixHashTest, MatchesCpuOnRandomBatchesOfAwkwardSizes) {
  // 5, 6 and 8 tokens straddle SHA-256's one-chunk padding limit (52, 56, 64-byte messages).
  for (uint32_t bt :
       {1u, 2u, 5u, 6u, 7u, 8u, 13u, 14u, 15u, 16u, 17u, 31u, 32u, 100u, 256u, 512u}) {
    for (size_t sequences : {1, 3, 127, 128, 129, 1000}) {
      SCOPED_TRACE(testing::Message() << "block_tokens=" << bt << " sequences=" << sequences);
      const HostBatch h = RandomBatch(bt, sequences, bt >= 256 ? 4 : 9, bt * 7919 + sequences);
      DeviceBatch d(h);
      ASSERT_TRUE(HashPrefixBatch(d.view, nullptr).ok());
      ExpectSameKeys(h, d, ToHost(d.keys.get(), d.num_keys()));
    }
  }
}

TEST(CudaPrefixHashTest, MatchesCheckedInVectors) {
  const char* env = std::getenv("KVTIER_KEY_VECTORS");
  std::ifstream in(env != nullptr ? env : KVTIER_KEY_VECTORS);
  ASSERT_TRUE(in.good()) << "cannot open the vectors; set KVTIER_KEY_VECTORS to their path";
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(text.str());
  for (const nlohmann::json& c : doc["cases"]) {
    SCOPED_TRACE(c.value("name", "?"));
    absl::StatusOr<NamespaceDescriptor> ns = DescriptorFromJson(c["descriptor"]);
    absl::StatusOr<std::vector<uint32_t>> tokens = TokensFromJson(c["tokens"]);
    ASSERT_TRUE(ns.ok() && tokens.ok());
    HostBatch h;
    h.block_tokens = ns->block_tokens;
    h.Add(NamespaceSeed(*ns), *tokens);
    DeviceBatch d(h);
    ASSERT_TRUE(HashPrefixBatch(d.view, nullptr).ok());
    const std::vector<BlockKey> gpu = ToHost(d.keys.get(), d.num_keys());
    ASSERT_EQ(gpu.size(), c["keys"].size());
    for (size_t i = 0; i < gpu.size(); ++i) EXPECT_EQ(gpu[i].ToHex(), c["keys"][i]);
  }
}

TEST(CudaPrefixHashTest, EmptyBatchAndBadArguments) {
  PrefixHashBatchView empty;
  EXPECT_TRUE(HashPrefixBatch(empty, nullptr).ok());  // n == 0: nothing launched

  HostBatch h = RandomBatch(16, 4, 3, 1);
  DeviceBatch d(h);
  PrefixHashBatchView bad = d.view;
  bad.block_tokens = 0;
  EXPECT_EQ(HashPrefixBatchAsync(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = d.view;
  bad.block_tokens = kMaxCudaBlockTokens + 1;
  EXPECT_EQ(HashPrefixBatchAsync(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = d.view;
  bad.tokens = nullptr;
  EXPECT_EQ(HashPrefixBatchAsync(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = d.view;
  bad.keys_out = reinterpret_cast<BlockKey*>(reinterpret_cast<char*>(d.keys.get()) + 1);
  EXPECT_EQ(HashPrefixBatchAsync(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaPrefixHashTest, NeverWritesPastASequencesKeyRange) {
  // Offsets that give sequence 0 one slot fewer than its full blocks: it must stop there.
  HostBatch h;
  h.block_tokens = 4;
  std::vector<uint32_t> seq(12, 7);
  h.Add(BlockKey{}, seq);  // 3 full blocks
  h.Add(BlockKey{}, seq);
  DeviceBatch d(h);
  const std::vector<uint64_t> short_offsets = {0, 2, 5};
  auto offsets = ToDevice(short_offsets);
  BlockKey sentinel;
  sentinel.bytes.fill(0xAB);
  auto keys = ToDevice(std::vector<BlockKey>(6, sentinel));
  PrefixHashBatchView view = d.view;
  view.key_offsets = offsets.get();
  view.keys_out = keys.get();
  ASSERT_TRUE(HashPrefixBatch(view, nullptr).ok());
  const std::vector<BlockKey> got = ToHost(keys.get(), 6);
  const std::vector<BlockKey> cpu = HashPrefix(BlockKey{}, seq, 4);
  EXPECT_EQ(got[0], cpu[0]);
  EXPECT_EQ(got[1], cpu[1]);
  EXPECT_EQ(got[2], cpu[0]);  // sequence 1 starts at its own offset
  EXPECT_EQ(got[4], cpu[2]);
  EXPECT_EQ(got[5], sentinel);  // beyond key_offsets[2]
}

TEST(CudaPrefixHashTest, ThroughputOnLargeBatches) {
  struct Shape {
    uint32_t block_tokens;
    size_t sequences;
    size_t blocks;
  };
  // Many decode-sized chains (fills the GPU) and fewer long prefill prompts.
  for (const Shape& shape : {Shape{16, 131072, 64}, Shape{16, 8192, 1024}, Shape{256, 65536, 8},
                             Shape{16, 1024, 2048}}) {
    HostBatch h;
    h.block_tokens = shape.block_tokens;
    std::mt19937_64 rng(shape.sequences);
    std::vector<uint32_t> seq(shape.blocks * shape.block_tokens);
    for (size_t s = 0; s < shape.sequences; ++s) {
      for (uint32_t& t : seq) t = static_cast<uint32_t>(rng() % 128256);
      h.Add(RandomSeed(rng), seq);
    }
    DeviceBatch d(h);
    ASSERT_TRUE(HashPrefixBatch(d.view, nullptr).ok());  // warm-up
    cudaEvent_t start, stop;
    ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
    ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
    constexpr int kReps = 5;
    ASSERT_EQ(cudaEventRecord(start, nullptr), cudaSuccess);
    for (int i = 0; i < kReps; ++i) ASSERT_TRUE(HashPrefixBatchAsync(d.view, nullptr).ok());
    ASSERT_EQ(cudaEventRecord(stop, nullptr), cudaSuccess);
    ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
    float ms = 0;
    ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    const double tokens = static_cast<double>(h.tokens.size());
    const double seconds = ms / 1e3 / kReps;

    // Spot-check correctness of this batch and time the CPU on the same sequences.
    const std::vector<BlockKey> gpu = ToHost(d.keys.get(), d.num_keys());
    const size_t sample = std::min<size_t>(shape.sequences, 64);
    const auto cpu_start = std::chrono::steady_clock::now();
    for (size_t s = 0; s < sample; ++s) {
      const std::vector<BlockKey> cpu = HashPrefix(h.parents[s], h.Sequence(s), h.block_tokens);
      ASSERT_TRUE(std::equal(cpu.begin(), cpu.end(), gpu.begin() + d.key_offsets_host[s]))
          << "sequence " << s;
    }
    const double cpu_ns_per_token =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - cpu_start)
            .count() /
        (static_cast<double>(sample) * seq.size());
    std::printf(
        "[ THROUGHPUT ] block_tokens=%u sequences=%zu tokens/sequence=%zu: GPU %.3f ms, "
        "%.3g tokens/s (%.4f ns/token); CPU one thread %.2f ns/token\n",
        shape.block_tokens, shape.sequences, seq.size(), seconds * 1e3, tokens / seconds,
        seconds * 1e9 / tokens, cpu_ns_per_token);
  }
}

}  // namespace
}  // namespace kvtier
