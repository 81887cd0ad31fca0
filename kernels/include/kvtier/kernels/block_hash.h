// Chained prefix hash: the block keys kvtier computes from a namespace and a token sequence.
//
//   key[-1] = NamespaceSeed(ns)        = SHA-256(CanonicalNamespaceEncoding(ns))
//   key[i]  = ChainBlockKey(key[i-1], block i) = SHA-256(key[i-1] || tokens of block i as u32 LE)
//
// Equal keys mean equal prefixes within equal namespaces, so a cache lookup on keys k0..kn-1 is
// a prefix lookup. The byte-exact definition, its rationale (SHA-256, after vLLM's
// CVE-2025-25183) and test vectors are in docs/keys.md; tools/keys_reference.py is an
// independent Python implementation, and the CUDA kernel (cuda_prefix_hash.h) produces
// byte-identical keys. Keys are deterministic: no per-process randomness, so every process,
// node and TP rank that hashes the same inputs gets the same keys.
//
// This is the production CPU path (the client and the daemon call it) and the reference for the
// CUDA kernel. SHA-256 comes from OpenSSL's libcrypto, which uses the SHA-NI / AVX2 / ARMv8
// crypto instructions where the CPU has them.
//
// Thread safety: every function is thread-safe and reentrant; nothing is shared between calls.
// None of them blocks or allocates beyond its returned vector. None can fail: inputs of any
// length are valid, and SHA-256 over memory has no runtime error path (an OpenSSL failure would
// mean a broken installation and aborts the process rather than return a wrong key).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvtier/common/block_key.h"
#include "kvtier/common/namespace_descriptor.h"

namespace kvtier {

// The bytes NamespaceSeed hashes: the domain prefix "kvtier.ns.v1\0", then model_id, dtype,
// kv_layout (each as u32 LE length + bytes), block_tokens, tp_rank, tp_size, pp_rank, pp_size
// (u32 LE; a size of 0 is encoded as 1), tenant_salt (u32 LE length + raw bytes), block_bytes
// (u64 LE). Exposed for tests, docs and debugging; see docs/keys.md for the byte layout.
// Does not validate the descriptor (limits such as the 64-byte salt are enforced where
// descriptors enter the system); every descriptor has exactly one encoding.
std::string CanonicalNamespaceEncoding(const NamespaceDescriptor& d);

// key[-1]: the parent of a sequence's first block. SHA-256 of CanonicalNamespaceEncoding(d),
// so descriptors that differ in any field (model, dtype, layout, block size, rank, salt) give
// unrelated seeds and their blocks never match. tp_size/pp_size 0 are treated as 1.
BlockKey NamespaceSeed(const NamespaceDescriptor& d);

// key[i] = SHA-256(parent's 32 bytes || each token as u32 little-endian). `block_tokens` is
// normally exactly one full block of the namespace (block_tokens tokens); the function hashes
// whatever span it is given, so callers must not pass a partial block as if it were full.
BlockKey ChainBlockKey(const BlockKey& parent, std::span<const uint32_t> block_tokens);

// Keys of every FULL block of `tokens`, chained from `seed` (normally NamespaceSeed(ns)):
// tokens.size() / block_tokens keys. A trailing partial block is not hashed: its KV cannot be
// reused as a block until it is full. Returns no keys when block_tokens == 0.
std::vector<BlockKey> HashPrefix(const BlockKey& seed, std::span<const uint32_t> tokens,
                                 uint32_t block_tokens);

// Same as HashPrefix(NamespaceSeed(ns), tokens, ns.block_tokens).
std::vector<BlockKey> HashPrefix(const NamespaceDescriptor& ns, std::span<const uint32_t> tokens);

// Appends the keys of the full blocks of `tokens` to *out, chained from `parent`: the seed if
// `tokens` starts the sequence, otherwise the key of the block just before tokens[0] (so tokens
// must start at a block boundary). Returns the number of keys appended; the tokens after the
// last full block (tokens.size() % block_tokens of them) are left for a later call.
// Appends nothing when block_tokens == 0. REQUIRES: out != nullptr.
size_t AppendBlockKeys(const BlockKey& parent, std::span<const uint32_t> tokens,
                       uint32_t block_tokens, std::vector<BlockKey>* out);

// Incremental form for engines that grow a sequence: `*keys` holds the keys already computed
// for the first keys->size() blocks of `tokens` (all of them from an earlier call on a prefix
// of the same sequence); hashes only the blocks that became full since, and returns how many
// keys it appended. Re-hashes nothing, so calling it after every decode step costs one SHA-256
// per completed block. REQUIRES: keys != nullptr and keys->size() * block_tokens <=
// tokens.size() (otherwise appends nothing and returns 0).
size_t ExtendPrefixKeys(const BlockKey& seed, std::span<const uint32_t> tokens,
                        uint32_t block_tokens, std::vector<BlockKey>* keys);

}  // namespace kvtier
