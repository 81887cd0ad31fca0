// The bench's deterministic workload: which namespace, which keys, which bytes.
//
// Everything is a pure function of (seed, stream, index), so a later run (or another process)
// can recompute exactly what an earlier run stored and check it byte for byte:
//   - Namespace: model_id "kvtier-bench", dtype "bytes", kv_layout "opaque", block_tokens 16,
//     block_bytes = --block-bytes. Different block sizes are different namespaces.
//   - Tokens of block i of stream s: 16 u32 values from SplitMix64 seeded by (seed, s, i).
//   - Chained keys (putget, verify, lookup): HashPrefix(key_seed, tokens of blocks 0..n-1), so
//     keys 0..n-1 form one prefix and key i names the prefix up to block i, as an engine's would.
//   - Independent keys (throughput): ChainBlockKey(key_seed, tokens of block i of stream s),
//     each the first block of its own sequence, so writers never collide or wait on a chain.
//   - Content of block i of stream s: SplitMix64 output seeded by (seed, s, i), fast to generate
//     and to recompute for verification.
//   - Trace replay (replay --online): namespace model_id "kvtier-bench-replay", 512 tokens per
//     block (the Mooncake traces' block), block_bytes = --block-bytes, tenant_salt = a per-run
//     nonce. A trace hash id names its prefix block by itself (equal ids, equal prefix), so its
//     key is one chained step from the namespace seed over the id (TraceBlockKey), and its
//     content is SplitMix64 seeded by the key's first 24 bytes (FillTraceBlock).
// Thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvtier/common/block_key.h"
#include "kvtier/common/namespace_descriptor.h"

namespace kvtier::bench {

inline constexpr uint32_t kBlockTokens = 16;

NamespaceDescriptor BenchNamespace(uint64_t block_bytes);

// The next output of the SplitMix64 generator whose state is *state (advances it).
uint64_t SplitMix64(uint64_t* state);

// A 64-bit mix of its inputs, used to seed the generators below.
uint64_t MixSeed(uint64_t seed, uint64_t stream, uint64_t index);

// Fills `out` with the content of block `index` of `stream`.
void FillBlock(uint64_t seed, uint64_t stream, uint64_t index, std::span<std::byte> out);

// The kBlockTokens tokens of block `index` of `stream`, appended to *out.
void AppendBlockTokens(uint64_t seed, uint64_t stream, uint64_t index, std::vector<uint32_t>* out);

// Keys of blocks [0, count) of one chained sequence.
std::vector<BlockKey> ChainedKeys(const BlockKey& key_seed, uint64_t seed, uint64_t stream,
                                  uint64_t count);

// The independent key of block `index` of `stream`.
BlockKey IndependentKey(const BlockKey& key_seed, uint64_t seed, uint64_t stream, uint64_t index);

inline constexpr uint32_t kTraceBlockTokens = 512;

// The namespace of one online replay run; `salt` (at most 64 bytes) keeps runs apart.
NamespaceDescriptor TraceReplayNamespace(uint64_t block_bytes, std::string salt);

// Key of the block a trace names `hash_id`: ChainBlockKey(key_seed, {low 32 bits, high 32 bits}).
BlockKey TraceBlockKey(const BlockKey& key_seed, uint64_t hash_id);

// Fills `out` with the content of the block whose key is `key`.
void FillTraceBlock(const BlockKey& key, std::span<std::byte> out);

}  // namespace kvtier::bench
