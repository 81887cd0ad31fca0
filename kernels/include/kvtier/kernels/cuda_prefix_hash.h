// Chained prefix hash on the GPU: the block keys of kvtier/kernels/block_hash.h for a batch of
// sequences whose tokens are already in device memory, byte-identical to the CPU functions
// (which are this kernel's reference; see docs/keys.md).
//
// The chain is sequential within a sequence (key[i] needs key[i-1]), so the kernel runs one
// thread per sequence and parallelism comes only from the batch. Measured on an H100: 8e10
// tokens/s for 131072 sequences of 1024 tokens (16 per block), 1.4e11 at 256 tokens per block,
// but a single chain advances at only ~280 ns/token (one warp's instruction issue), against
// 3-20 ns/token for one CPU core. Use it for thousands of sequences already on the device; hash
// one long prompt on the CPU.
//
// Thread safety: the functions are thread-safe; concurrent launches on different streams are
// independent. The caller owns all memory and keeps it alive until the work is complete (the
// _async form returns once the kernel is queued on `stream`).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kvtier/common/block_key.h"

namespace kvtier {

// Largest block_tokens the kernel accepts; far above any real block (16-512 tokens), and low
// enough that its index arithmetic stays in 32 bits.
inline constexpr uint32_t kMaxCudaBlockTokens = 1u << 24;

// A batch of sequences in device memory. Non-owning and trivially copyable (a view, passed by
// value to the launcher). All pointers are device pointers.
struct PrefixHashBatchView {
  // All sequences' tokens, concatenated. Sequence s is tokens[token_offsets[s],
  // token_offsets[s + 1]).
  const uint32_t* tokens = nullptr;
  // num_sequences + 1 non-decreasing entries.
  const uint64_t* token_offsets = nullptr;
  // num_sequences keys: each sequence's parent, i.e. NamespaceSeed(ns) if the sequence starts at
  // token 0, or the key of the block just before its first token (the incremental form).
  // Sequences may come from different namespaces. 4-byte aligned (cudaMalloc gives 256).
  const BlockKey* parents = nullptr;
  // num_sequences + 1 entries: sequence s writes its full-block keys to keys_out[key_offsets[s],
  // key_offsets[s + 1]). KeyOffsetsForBatch() computes them; a sequence whose range is shorter
  // than its number of full blocks writes only that many keys, never past its range.
  const uint64_t* key_offsets = nullptr;
  // key_offsets[num_sequences] keys; 4-byte aligned.
  BlockKey* keys_out = nullptr;
  // Tokens per block, in [1, kMaxCudaBlockTokens]. Trailing partial blocks are not hashed.
  uint32_t block_tokens = 0;
  size_t num_sequences = 0;
};

// Host-side helper: key_offsets for a batch with the given (host copy of) token_offsets, i.e.
// the running sum of floor(sequence length / block_tokens). Returns token_offsets.size()
// entries (one when token_offsets is empty). REQUIRES: block_tokens >= 1 and token_offsets
// non-decreasing.
std::vector<uint64_t> KeyOffsetsForBatch(std::span<const uint64_t> token_offsets,
                                         uint32_t block_tokens);

// Queues the hash of every full block of every sequence on `stream` and returns without
// waiting. keys_out[key_offsets[s] + i] becomes HashPrefix(parents[s], sequence s,
// block_tokens)[i]. Returns OK without launching when num_sequences == 0; InvalidArgument for
// null pointers, block_tokens outside [1, kMaxCudaBlockTokens] or misaligned parents/keys_out
// (offsets in device memory cannot be checked from the host); other errors as
// CudaErrorToStatus (launch errors included). Errors from the kernel's execution surface at the
// caller's next synchronisation.
absl::Status HashPrefixBatchAsync(const PrefixHashBatchView& batch, cudaStream_t stream);

// Same, then blocks until `stream` has finished, so execution errors are reported here.
absl::Status HashPrefixBatch(const PrefixHashBatchView& batch, cudaStream_t stream);

}  // namespace kvtier
