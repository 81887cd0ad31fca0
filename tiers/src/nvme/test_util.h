// Helpers shared by the NVMe tier's tests: temporary directories, keys, deterministic payloads,
// aligned buffers. Test-only (header-only; included by *_test.cc).
#pragma once

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kvtier/common/block_key.h"
#include "kvtier/common/testing/temp_dir.h"
#include "tiers/src/nvme/io_util.h"

namespace kvtier::tiers::nvme::testing {

using kvtier::testing::TempDir;

inline BlockKey TestKey(uint64_t i, uint64_t salt = 0) {
  BlockKey k;
  std::mt19937_64 rng(i * 0x9e3779b97f4a7c15ull + salt + 1);
  for (size_t b = 0; b < BlockKey::kSize; b += 8) {
    const uint64_t v = rng();
    std::memcpy(k.bytes.data() + b, &v, 8);
  }
  return k;
}

// Bytes that depend on (key id, version, length), so that any mix-up shows.
inline std::vector<std::byte> TestPayload(uint64_t id, uint64_t version, size_t length) {
  std::vector<std::byte> out(length);
  std::mt19937_64 rng(id * 1000003 + version * 7919 + length);
  for (size_t i = 0; i < length; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, length - i));
  }
  return out;
}

// An aligned buffer with a span view, for direct reads.
struct AlignedBuffer {
  AlignedBuffer(size_t bytes, size_t alignment = 4096)
      : data(AllocateAligned(bytes, alignment)), size(bytes) {}
  std::span<std::byte> span() { return {data.get(), size}; }
  AlignedBytes data;
  size_t size;
};

}  // namespace kvtier::tiers::nvme::testing
