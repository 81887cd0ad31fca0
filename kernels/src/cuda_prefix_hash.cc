#include "kvtier/kernels/cuda_prefix_hash.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/kernels/cuda_status.h"
#include "prefix_hash_kernel.h"

namespace kvtier {
namespace {

bool Aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

absl::Status Validate(const PrefixHashBatchView& b) {
  if (b.block_tokens == 0 || b.block_tokens > kMaxCudaBlockTokens) {
    return absl::InvalidArgumentError(absl::StrCat("block_tokens must be in [1, ",
                                                   kMaxCudaBlockTokens, "], got ", b.block_tokens));
  }
  if (b.tokens == nullptr || b.token_offsets == nullptr || b.parents == nullptr ||
      b.key_offsets == nullptr || b.keys_out == nullptr) {
    return absl::InvalidArgumentError(
        "tokens, token_offsets, parents, key_offsets and keys_out must all be device pointers");
  }
  if (!Aligned4(b.parents) || !Aligned4(b.keys_out)) {
    return absl::InvalidArgumentError("parents and keys_out must be 4-byte aligned");
  }
  // One thread per sequence in a 1-D grid of 128-thread blocks.
  if (b.num_sequences > static_cast<size_t>(INT32_MAX) * 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most 2^31 * 128 sequences per launch, got ", b.num_sequences));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<uint64_t> KeyOffsetsForBatch(std::span<const uint64_t> token_offsets,
                                         uint32_t block_tokens) {
  std::vector<uint64_t> key_offsets = {0};
  for (size_t s = 1; s < token_offsets.size(); ++s) {
    key_offsets.push_back(key_offsets.back() +
                          (token_offsets[s] - token_offsets[s - 1]) / block_tokens);
  }
  return key_offsets;
}

absl::Status HashPrefixBatchAsync(const PrefixHashBatchView& batch, cudaStream_t stream) {
  if (batch.num_sequences == 0) return absl::OkStatus();
  KVTIER_RETURN_IF_ERROR(Validate(batch));
  KVTIER_CUDA_RETURN_IF_ERROR(internal::LaunchPrefixHashKernel(
      batch.tokens, batch.token_offsets, reinterpret_cast<const uint8_t*>(batch.parents),
      batch.key_offsets, reinterpret_cast<uint8_t*>(batch.keys_out), batch.block_tokens,
      batch.num_sequences, stream));
  return absl::OkStatus();
}

absl::Status HashPrefixBatch(const PrefixHashBatchView& batch, cudaStream_t stream) {
  KVTIER_RETURN_IF_ERROR(HashPrefixBatchAsync(batch, stream));
  if (batch.num_sequences == 0) return absl::OkStatus();
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

}  // namespace kvtier
