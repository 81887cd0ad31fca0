#include "tiers/src/nvme/xxh3.h"

#define XXH_INLINE_ALL
#include "xxhash.h"

namespace kvtier::tiers::nvme {

#if defined(KVTIER_NVME_XXH3_AVX2)
uint64_t Xxh3Avx2(const void* data, size_t length, uint64_t seed);  // xxh3_avx2.cc
#endif

uint64_t Xxh3Baseline(const void* data, size_t length, uint64_t seed) {
  return XXH3_64bits_withSeed(data, length, seed);
}

uint64_t Xxh3(const void* data, size_t length, uint64_t seed) {
#if defined(KVTIER_NVME_XXH3_AVX2)
  static const auto impl = __builtin_cpu_supports("avx2") ? &Xxh3Avx2 : &Xxh3Baseline;
  return impl(data, length, seed);
#else
  return Xxh3Baseline(data, length, seed);
#endif
}

}  // namespace kvtier::tiers::nvme
