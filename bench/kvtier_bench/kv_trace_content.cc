#include "kv_trace_content.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_format.h"
#include "kv_like_data.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

// Elements whose low 7 bits carry the stamp: 40 x 7 = 280 bits, more than the key's 256.
constexpr size_t kStampElements = 40;
constexpr uint8_t kStampMask = 0x7f;  // bf16: mantissa bits 0-6 (bit 7 is the exponent's)

}  // namespace

absl::StatusOr<KvTraceContent> KvTraceContent::Make(KvDtype dtype, size_t block_bytes) {
  if (dtype != KvDtype::kBf16 && dtype != KvDtype::kFp16) {
    return absl::InvalidArgumentError(
        absl::StrFormat("KV-like replay content is bf16 or fp16 (the 16-bit KV dtypes), not %s",
                        KvDtypeName(dtype)));
  }
  if (block_bytes % 2 != 0 || block_bytes < 2 * kStampElements) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KV-like replay content needs an even block size of at least %u bytes, not %u",
        2 * kStampElements, block_bytes));
  }
  // Half keys (RoPE, outlier channels), half values; magnitudes spread over 1.5 decades across
  // the pool, as the generator spreads them across a model's layers (kv_like_data.h).
  constexpr int kHeads = 8, kHeadDim = 128;
  const size_t elements = block_bytes / 2;
  const int tokens = static_cast<int>((elements + kHeads * kHeadDim - 1) / (kHeads * kHeadDim));
  std::vector<std::byte> pool(kPoolSize * block_bytes);
  for (size_t i = 0; i < kPoolSize; ++i) {
    testing::KvLikeOptions o;
    o.dtype = dtype;
    o.keys = i % 2 == 0;
    o.tokens = tokens;
    o.heads = kHeads;
    o.head_dim = kHeadDim;
    o.seed = 0x6b767472 + i;
    o.magnitude = std::pow(10.0, -0.75 + 1.5 * static_cast<double>(i / 2) / (kPoolSize / 2 - 1));
    const std::vector<std::byte> tensor = testing::GenerateKvLike(o);
    std::memcpy(pool.data() + i * block_bytes, tensor.data(), block_bytes);
  }
  return KvTraceContent(dtype, block_bytes, std::move(pool));
}

void KvTraceContent::Fill(const BlockKey& key, std::span<std::byte> out) const {
  uint64_t words[4];
  std::memcpy(words, key.bytes.data(), sizeof(words));
  uint64_t state = words[0] ^ (words[1] * 0x9e3779b97f4a7c15ull) ^ (words[2] >> 7) ^ words[3];
  const size_t pick = SplitMix64(&state) % kPoolSize;
  std::memcpy(out.data(), pool_.data() + pick * block_bytes_, block_bytes_);
  // Little-endian 16-bit elements: byte 2e is element e's low byte.
  uint64_t bits = 0;
  int left = 0;
  for (size_t e = 0; e < kStampElements; ++e) {
    if (left < 7) {
      bits = SplitMix64(&state);
      left = 64;
    }
    out[2 * e] ^= static_cast<std::byte>(bits & kStampMask);
    bits >>= 7;
    left -= 7;
  }
}

}  // namespace kvtier::bench
