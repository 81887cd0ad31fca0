// KV-like block content for a compressed online replay (kvtier-bench replay --online
// --compress DTYPE), so that the daemon's DRAM holds frames of the size real KV blocks compress
// to, not incompressible noise (FillTraceBlock's SplitMix64 bytes, which kvz stores as they are).
//
// The content of a key is one of a pool of KV-like tensors (compression/testing/kv_like_data.h:
// keys and values of varying magnitude, as the layers of a model differ), picked by the key, with
// the key stamped into the low mantissa bits of its first elements. The stamp makes every key's
// bytes its own, so a block served for the wrong key fails the replay's byte check, and it
// leaves the high bytes alone: kvz entropy-codes bf16's exponents and fp16's high bytes and
// keeps the rest raw, so a stamped block compresses exactly as its pool tensor does.
//
// Thread-safe after construction (Fill is const).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"
#include "kvtier/compression/kv_codec.h"

namespace kvtier::bench {

class KvTraceContent {
 public:
  static constexpr size_t kPoolSize = 32;

  // A pool of kPoolSize KV-like tensors of `block_bytes` each. bf16 and fp16 only (the 16-bit
  // KV dtypes, whose low byte kvz keeps raw); InvalidArgument otherwise, or when block_bytes is
  // odd or too small to hold the stamp.
  static absl::StatusOr<KvTraceContent> Make(KvDtype dtype, size_t block_bytes);

  // Fills `out` (block_bytes long) with the content of `key`: a pure function of the key.
  void Fill(const BlockKey& key, std::span<std::byte> out) const;

  KvDtype dtype() const { return dtype_; }
  size_t block_bytes() const { return block_bytes_; }

 private:
  KvTraceContent(KvDtype dtype, size_t block_bytes, std::vector<std::byte> pool)
      : dtype_(dtype), block_bytes_(block_bytes), pool_(std::move(pool)) {}

  KvDtype dtype_;
  size_t block_bytes_;
  std::vector<std::byte> pool_;  // kPoolSize tensors of block_bytes, back to back
};

}  // namespace kvtier::bench
