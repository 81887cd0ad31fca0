// bench_block_hash: CPU cost of kvtier's chained block keys, in ns per token, for typical block
// sizes. Run: build/bin/bench_block_hash. The number to compare is the "ns/token" counter
// (vLLM's Python prefix hashing costs roughly 100-200 ns per token).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kvtier/kernels/block_hash.h"

namespace kvtier {
namespace {

std::vector<uint32_t> Tokens(size_t n) {
  std::mt19937 rng(42);
  std::vector<uint32_t> tokens(n);
  for (uint32_t& t : tokens) t = rng() % 128256;  // Llama-3 vocabulary
  return tokens;
}

// A 32K-token prompt hashed from scratch, as on a prefill request.
void BM_HashPrefix(benchmark::State& state) {
  const uint32_t block_tokens = static_cast<uint32_t>(state.range(0));
  const std::vector<uint32_t> tokens = Tokens(32768);
  const BlockKey seed = NamespaceSeed(NamespaceDescriptor{.model_id = "m", .block_tokens = 16});
  for (auto _ : state) {
    std::vector<BlockKey> keys = HashPrefix(seed, tokens, block_tokens);
    benchmark::DoNotOptimize(keys.data());
  }
  state.counters["ns/token"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * tokens.size(),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * tokens.size() * 4);
}
BENCHMARK(BM_HashPrefix)->Arg(1)->Arg(16)->Arg(32)->Arg(64)->Arg(256)->Arg(512);

// The seed is hashed once per request (descriptor encoding + one SHA-256).
void BM_NamespaceSeed(benchmark::State& state) {
  NamespaceDescriptor d{.model_id = "meta-llama/Llama-3.1-8B-Instruct",
                        .dtype = "bf16",
                        .kv_layout = "vllm-nhd",
                        .block_tokens = 16,
                        .tenant_salt = "tenant-42",
                        .block_bytes = 2 << 20};
  for (auto _ : state) benchmark::DoNotOptimize(NamespaceSeed(d));
}
BENCHMARK(BM_NamespaceSeed);

}  // namespace
}  // namespace kvtier

BENCHMARK_MAIN();
