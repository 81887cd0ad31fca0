// Deterministic keys and block bytes for the daemon-level tests: any mix-up of blocks shows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kvtier/common/block_key.h"

namespace kvtier::testing {

// A key made of the random stream of `seed`.
inline BlockKey SeededKey(uint64_t seed) {
  BlockKey k;
  std::mt19937_64 rng(seed);
  for (size_t j = 0; j < k.bytes.size(); j += 8) {
    const uint64_t v = rng();
    std::memcpy(k.bytes.data() + j, &v, 8);
  }
  return k;
}

// `length` bytes of the random stream of `seed`.
inline std::vector<std::byte> SeededBytes(uint64_t seed, size_t length) {
  std::vector<std::byte> out(length);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < length; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, length - i));
  }
  return out;
}

}  // namespace kvtier::testing
