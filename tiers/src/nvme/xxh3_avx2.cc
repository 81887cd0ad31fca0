// Compiled with -mavx2 (tiers/CMakeLists.txt), so that xxhash.h picks its AVX2 code path.
// Called only where the CPU has AVX2 (xxh3.cc).
#define XXH_INLINE_ALL
#include "xxhash.h"

namespace kvtier::tiers::nvme {

uint64_t Xxh3Avx2(const void* data, size_t length, uint64_t seed) {
  return XXH3_64bits_withSeed(data, length, seed);
}

}  // namespace kvtier::tiers::nvme
