// AVX2 lane decoder (lane_decoder_avx2.h). Each 8-lane vector holds two aligned 32-bit words of
// every lane's stream, takes two codes from them per step pair (at most 22 bits), and looks each
// code up with a table gather; the word after them is gathered at the start of the step pair,
// off the chain of lookups. The four vectors of a step are independent, so their gathers
// overlap. A first version gathered a dword at byte p / 8 and shifted it by p % 8, which split a
// cache line for about a third of its gathers and ran slower than the scalar decoder.
#include "lane_decoder_avx2.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace kvtier::kvz {

#define KVTIER_AVX2 __attribute__((target("avx2,bmi2")))
#define KVTIER_AVX2_INLINE __attribute__((target("avx2,bmi2"), always_inline)) inline

namespace {

// The symbols (each < 256, one per 32-bit slot) of lanes 0..31, as 32 bytes in lane order.
KVTIER_AVX2_INLINE __m256i PackSymbols(const __m256i (&s)[4]) {
  const __m256i a = _mm256_packus_epi32(s[0], s[1]);  // per 128 bits: s0 | s1, four each
  const __m256i b = _mm256_packus_epi32(s[2], s[3]);
  // Dwords: s0[0..3] s1[0..3] s2[0..3] s3[0..3] | s0[4..7] s1[4..7] s2[4..7] s3[4..7].
  const __m256i c = _mm256_packus_epi16(a, b);
  return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Stores the row of 32 elements at `row` (element 32k): the symbols themselves, or joined with
// their 32 raw bytes into 16-bit elements (format.h's Join16: low byte = coded bit 0 << 7 | raw
// bits 0..6, high byte = raw bit 7 | coded bits 1..7).
template <int kElementBytes>
KVTIER_AVX2_INLINE void StoreRow(__m256i sym, const uint8_t* raw, uint8_t* out) {
  if constexpr (kElementBytes == 1) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), sym);
  } else {
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(raw));
    const __m256i low7 = _mm256_set1_epi8(0x7F);
    const __m256i top = _mm256_set1_epi8(static_cast<char>(0x80));
    // 16-bit shifts move bits across bytes; the masks keep only each byte's own.
    const __m256i lo = _mm256_or_si256(_mm256_and_si256(r, low7),
                                       _mm256_and_si256(_mm256_slli_epi16(sym, 7), top));
    const __m256i hi = _mm256_or_si256(_mm256_and_si256(r, top),
                                       _mm256_and_si256(_mm256_srli_epi16(sym, 1), low7));
    const __m256i x0 = _mm256_unpacklo_epi8(lo, hi);  // elements 0-7 | 16-23
    const __m256i x1 = _mm256_unpackhi_epi8(lo, hi);  // elements 8-15 | 24-31
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permute2x128_si256(x0, x1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32),
                        _mm256_permute2x128_si256(x0, x1, 0x31));
  }
}

// Lane state: p, the position in bits from `lanes`; lo and hi, the words p / 32 and p / 32 + 1
// counted from `lanes`. Two codes take at most 22 bits, so a step crosses at most one word
// boundary, and the word after hi is gathered at the start of the step, off the chain of the
// step's two table lookups. `lanes` is 4-byte aligned in memory when its frame is, and aligned
// dword gathers never split a cache line (a gather with one split element costs about six times
// as much, measured); an unaligned frame decodes correctly, about 3% slower.
template <int kElementBytes>
KVTIER_AVX2 void DecodeRows(const uint8_t* lanes, uint32_t* bits, uint32_t steps,
                            const uint32_t* table, const uint8_t* raw, uint8_t* out) {
  const __m256i low5 = _mm256_set1_epi32(31);
  const __m256i thirty_two = _mm256_set1_epi32(32);
  const __m256i window = _mm256_set1_epi32((1 << 11) - 1);
  const __m256i byte = _mm256_set1_epi32(0xFF);
  const int* words = reinterpret_cast<const int*>(lanes);
  const int* entries = reinterpret_cast<const int*>(table);
  __m256i p[4];
  __m256i lo[4];
  __m256i hi[4];
  for (int v = 0; v < 4; ++v) {
    p[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 * v));
    const __m256i j = _mm256_srli_epi32(p[v], 5);
    lo[v] = _mm256_i32gather_epi32(words, j, 4);
    hi[v] = _mm256_i32gather_epi32(words, _mm256_add_epi32(j, _mm256_set1_epi32(1)), 4);
  }
  for (uint32_t k = 0; k < steps; k += 2) {
    __m256i first[4];
    __m256i second[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m256i j = _mm256_srli_epi32(p[v], 5);
      const __m256i next =
          _mm256_i32gather_epi32(words, _mm256_add_epi32(j, _mm256_set1_epi32(2)), 4);
      const __m256i s = _mm256_and_si256(p[v], low5);
      // sllv by 32 gives 0, as hi's share must be when s is 0.
      const __m256i w = _mm256_or_si256(_mm256_srlv_epi32(lo[v], s),
                                        _mm256_sllv_epi32(hi[v], _mm256_sub_epi32(thirty_two, s)));
      const __m256i e0 = _mm256_i32gather_epi32(entries, _mm256_and_si256(w, window), 4);
      const __m256i len0 = _mm256_srli_epi32(e0, 8);
      const __m256i w1 = _mm256_srlv_epi32(w, len0);
      const __m256i e1 = _mm256_i32gather_epi32(entries, _mm256_and_si256(w1, window), 4);
      const __m256i q = _mm256_add_epi32(p[v], _mm256_add_epi32(len0, _mm256_srli_epi32(e1, 8)));
      const __m256i crossed = _mm256_cmpgt_epi32(_mm256_srli_epi32(q, 5), j);
      lo[v] = _mm256_blendv_epi8(lo[v], hi[v], crossed);
      hi[v] = _mm256_blendv_epi8(hi[v], next, crossed);
      p[v] = q;
      first[v] = _mm256_and_si256(e0, byte);
      second[v] = _mm256_and_si256(e1, byte);
    }
    const size_t row = size_t{k} * 32;
    StoreRow<kElementBytes>(PackSymbols(first), raw + row, out + row * kElementBytes);
    StoreRow<kElementBytes>(PackSymbols(second), raw + row + 32, out + (row + 32) * kElementBytes);
  }
  for (int v = 0; v < 4; ++v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(bits + 8 * v), p[v]);
  }
}

}  // namespace

void DecodeLanesAvx2(const uint8_t* lanes, uint32_t* bits, uint32_t steps, const uint32_t* table,
                     const uint8_t* raw, int element_bytes, uint8_t* out) {
  if (element_bytes == 2) {
    DecodeRows<2>(lanes, bits, steps, table, raw, out);
  } else {
    DecodeRows<1>(lanes, bits, steps, table, raw, out);
  }
}

}  // namespace kvtier::kvz

#else  // not x86-64 with GCC or Clang

namespace kvtier::kvz {
void DecodeLanesAvx2(const uint8_t*, uint32_t*, uint32_t, const uint32_t*, const uint8_t*, int,
                     uint8_t*) {}
}  // namespace kvtier::kvz

#endif
