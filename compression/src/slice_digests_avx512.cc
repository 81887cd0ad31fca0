// AVX-512 slice digests (slice_digests_avx512.h).
#include "slice_digests_avx512.h"

#include "xxh64.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace kvtier::kvz {

__attribute__((target("avx512f,avx512dq,avx512vl"))) void SliceDigestsAvx512(const uint8_t* data,
                                                                             size_t slice_bytes,
                                                                             uint64_t* digests) {
  const __m256i prime1 = _mm256_set1_epi64x(static_cast<long long>(kXxPrime1));
  const __m256i prime2 = _mm256_set1_epi64x(static_cast<long long>(kXxPrime2));
  const __m256i start = _mm256_setr_epi64x(static_cast<long long>(kXxPrime1 + kXxPrime2),
                                           static_cast<long long>(kXxPrime2), 0,
                                           static_cast<long long>(0 - kXxPrime1));
  constexpr int kGroup = 16;
  for (int l0 = 0; l0 < kLanes; l0 += kGroup) {
    __m256i acc[kGroup];
    for (int g = 0; g < kGroup; ++g) acc[g] = start;
    for (size_t s = 0; s < slice_bytes; s += 32) {
#pragma GCC unroll 16
      for (int g = 0; g < kGroup; ++g) {
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + (l0 + g) * slice_bytes + s));
        const __m256i sum = _mm256_add_epi64(acc[g], _mm256_mullo_epi64(x, prime2));
        acc[g] = _mm256_mullo_epi64(_mm256_rol_epi64(sum, 31), prime1);
      }
    }
    for (int g = 0; g < kGroup; ++g) {
      alignas(32) uint64_t a[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(a), acc[g]);
      const uint64_t h = XxConverge(a[0], a[1], a[2], a[3]) + slice_bytes;
      digests[l0 + g] = XxFinish<HostLoads>(h, data, data);  // no bytes left
    }
  }
}

}  // namespace kvtier::kvz

#else  // not x86-64 with GCC or Clang

namespace kvtier::kvz {
void SliceDigestsAvx512(const uint8_t*, size_t, uint64_t*) {}
}  // namespace kvtier::kvz

#endif
