// BlockKey: the 32-byte identity of one cached KV block.
//
// Keys are either computed by kvtier's chained prefix hash (kernels/block_hash.h,
// docs/keys.md) or passed through opaquely by an engine that hashes its own blocks. Either way
// the cache treats them as 32 opaque bytes: equal keys (within one namespace) mean equal KV.
// Trivially copyable; hashes with absl::Hash using the first 8 bytes, which are already uniform.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier {

struct BlockKey {
  static constexpr size_t kSize = 32;
  std::array<uint8_t, kSize> bytes{};

  // Reads exactly kSize bytes. REQUIRES: data.size() >= kSize.
  static BlockKey FromBytes(const void* data) {
    BlockKey k;
    std::memcpy(k.bytes.data(), data, kSize);
    return k;
  }
  // Parses 64 hex digits; InvalidArgument otherwise.
  static absl::StatusOr<BlockKey> FromHex(std::string_view hex);
  std::string ToHex() const;

  friend bool operator==(const BlockKey& a, const BlockKey& b) { return a.bytes == b.bytes; }
  friend bool operator!=(const BlockKey& a, const BlockKey& b) { return !(a == b); }

  template <typename H>
  friend H AbslHashValue(H h, const BlockKey& k) {
    uint64_t prefix;
    std::memcpy(&prefix, k.bytes.data(), sizeof(prefix));
    return H::combine(std::move(h), prefix);
  }
};
static_assert(sizeof(BlockKey) == BlockKey::kSize);

// Views a packed array of keys (N * 32 bytes, as on the wire) without copying.
inline std::span<const BlockKey> KeysFromPacked(std::string_view packed) {
  return {reinterpret_cast<const BlockKey*>(packed.data()), packed.size() / BlockKey::kSize};
}
inline std::string_view PackedFromKeys(std::span<const BlockKey> keys) {
  return {reinterpret_cast<const char*>(keys.data()), keys.size() * BlockKey::kSize};
}

}  // namespace kvtier
