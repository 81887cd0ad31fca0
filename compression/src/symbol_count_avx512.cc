// AVX-512 histogram of a narrow alphabet (symbol_count_avx512.h).
#include "symbol_count_avx512.h"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace kvtier::kvz {

namespace {

constexpr int kWindow = 16;
constexpr uint32_t kSample = 128;  // symbols counted first, to place the window
// Below this share of the sample inside the window, the scalar count is faster.
constexpr uint32_t kMinInside = kSample * 15 / 16;

}  // namespace

__attribute__((target("avx2,avx512f,avx512vl,avx512bw"))) bool CountNarrowAvx512(const uint8_t* sym,
                                                                                 uint32_t n,
                                                                                 uint32_t* hist) {
  if (n < 8 * kSample) return false;
  // Four tables: one would chain each increment on the last when neighbours repeat a symbol.
  uint16_t sample[4][256] = {};
  for (uint32_t i = 0; i < kSample; i += 4) {
    for (int j = 0; j < 4; ++j) ++sample[j][sym[i + j]];
  }
  const auto at = [&sample](int v) {
    return uint32_t{sample[0][v]} + sample[1][v] + sample[2][v] + sample[3][v];
  };
  uint32_t inside = 0;
  for (int v = 0; v < kWindow; ++v) inside += at(v);
  uint32_t best = inside;
  int base = 0;
  for (int b = 1; b + kWindow <= 256; ++b) {
    inside += at(b + kWindow - 1) - at(b - 1);
    if (inside > best) {
      best = inside;
      base = b;
    }
  }
  if (best < kMinInside) return false;
  std::memset(hist, 0, 256 * sizeof(uint32_t));

  const __m256i zero = _mm256_setzero_si256();
  const __m256i shift = _mm256_set1_epi8(static_cast<char>(base));
  const __m256i last = _mm256_set1_epi8(kWindow - 1);
  __m256i counters[kWindow];  // byte counters of value base + v, flushed before they wrap
  __m256i sums[kWindow];      // four 64-bit sums each
  for (int v = 0; v < kWindow; ++v) counters[v] = sums[v] = zero;
  uint32_t i = 0;
  int rows = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i d =
        _mm256_sub_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sym + i)), shift);
#pragma GCC unroll 16
    for (int v = 0; v < kWindow; ++v) {
      counters[v] = _mm256_sub_epi8(counters[v], _mm256_cmpeq_epi8(d, _mm256_set1_epi8(v)));
    }
    uint32_t outside = ~static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(d, last), d)));
    while (outside != 0) {
      ++hist[sym[i + static_cast<uint32_t>(__builtin_ctz(outside))]];
      outside &= outside - 1;
    }
    if (++rows == 255) {
      for (int v = 0; v < kWindow; ++v) {
        sums[v] = _mm256_add_epi64(sums[v], _mm256_sad_epu8(counters[v], zero));
        counters[v] = zero;
      }
      rows = 0;
    }
  }
  for (int v = 0; v < kWindow; ++v) {
    sums[v] = _mm256_add_epi64(sums[v], _mm256_sad_epu8(counters[v], zero));
    alignas(32) uint64_t s[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(s), sums[v]);
    hist[base + v] += static_cast<uint32_t>(s[0] + s[1] + s[2] + s[3]);
  }
  for (; i < n; ++i) ++hist[sym[i]];
  return true;
}

}  // namespace kvtier::kvz

#else  // not x86-64 with GCC or Clang

namespace kvtier::kvz {
bool CountNarrowAvx512(const uint8_t*, uint32_t, uint32_t*) { return false; }
}  // namespace kvtier::kvz

#endif
