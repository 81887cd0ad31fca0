// Internal: the raw CUDA launcher behind HashPrefixBatchAsync. Kept free of Abseil so that nvcc
// compiles only the kernel's own translation unit (nvcc is slow, and Abseil's headers add
// nothing on the device). Arguments are validated by the caller (cuda_prefix_hash.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kvtier::internal {

// Launches one thread per sequence on `stream`; returns cudaGetLastError() after the launch.
// REQUIRES: num_sequences >= 1, 1 <= block_tokens <= 2^24, parents and keys_out 4-byte aligned.
cudaError_t LaunchPrefixHashKernel(const uint32_t* tokens, const uint64_t* token_offsets,
                                   const uint8_t* parents, const uint64_t* key_offsets,
                                   uint8_t* keys_out, uint32_t block_tokens, size_t num_sequences,
                                   cudaStream_t stream);

}  // namespace kvtier::internal
