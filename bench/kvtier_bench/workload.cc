#include "workload.h"

#include <cstring>
#include <utility>

#include "kvtier/kernels/block_hash.h"

namespace kvtier::bench {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

NamespaceDescriptor BenchNamespace(uint64_t block_bytes) {
  NamespaceDescriptor d;
  d.model_id = "kvtier-bench";
  d.dtype = "bytes";
  d.kv_layout = "opaque";
  d.block_tokens = kBlockTokens;
  d.block_bytes = block_bytes;
  return d;
}

uint64_t MixSeed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t state = seed;
  uint64_t h = SplitMix64(&state);
  state = h ^ stream;
  h = SplitMix64(&state);
  state = h ^ index;
  return SplitMix64(&state);
}

void FillBlock(uint64_t seed, uint64_t stream, uint64_t index, std::span<std::byte> out) {
  uint64_t state = MixSeed(seed, stream, index);
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    const uint64_t v = SplitMix64(&state);
    std::memcpy(out.data() + i, &v, 8);
  }
  if (i < out.size()) {
    const uint64_t v = SplitMix64(&state);
    std::memcpy(out.data() + i, &v, out.size() - i);
  }
}

void AppendBlockTokens(uint64_t seed, uint64_t stream, uint64_t index, std::vector<uint32_t>* out) {
  // A different stream of the generator than the content's, so tokens and bytes are unrelated.
  uint64_t state = MixSeed(seed ^ 0x746f6b656e73ull, stream, index);
  for (uint32_t t = 0; t < kBlockTokens; ++t) {
    out->push_back(static_cast<uint32_t>(SplitMix64(&state)));
  }
}

std::vector<BlockKey> ChainedKeys(const BlockKey& key_seed, uint64_t seed, uint64_t stream,
                                  uint64_t count) {
  std::vector<uint32_t> tokens;
  tokens.reserve(count * kBlockTokens);
  for (uint64_t i = 0; i < count; ++i) AppendBlockTokens(seed, stream, i, &tokens);
  return HashPrefix(key_seed, tokens, kBlockTokens);
}

BlockKey IndependentKey(const BlockKey& key_seed, uint64_t seed, uint64_t stream, uint64_t index) {
  std::vector<uint32_t> tokens;
  tokens.reserve(kBlockTokens);
  AppendBlockTokens(seed, stream, index, &tokens);
  return ChainBlockKey(key_seed, tokens);
}

NamespaceDescriptor TraceReplayNamespace(uint64_t block_bytes, std::string salt) {
  NamespaceDescriptor d;
  d.model_id = "kvtier-bench-replay";
  d.dtype = "bytes";
  d.kv_layout = "opaque";
  d.block_tokens = kTraceBlockTokens;
  d.block_bytes = block_bytes;
  d.tenant_salt = std::move(salt);
  return d;
}

BlockKey TraceBlockKey(const BlockKey& key_seed, uint64_t hash_id) {
  const uint32_t tokens[2] = {static_cast<uint32_t>(hash_id), static_cast<uint32_t>(hash_id >> 32)};
  return ChainBlockKey(key_seed, tokens);
}

void FillTraceBlock(const BlockKey& key, std::span<std::byte> out) {
  uint64_t words[3];
  std::memcpy(words, key.bytes.data(), sizeof(words));
  FillBlock(words[0], words[1], words[2], out);
}

}  // namespace kvtier::bench
