// The x86 vector paths against their scalar references, on inputs chosen to reach their edges.
// (The codec's round-trip, golden and corruption tests cover them as well, once with them and
// once without: the *_portable_test ctest entries.)
#include <cstdint>
#include <random>
#include <vector>

#include "cpu_features.h"
#include "gtest/gtest.h"
#include "slice_digests_avx512.h"
#include "symbol_count_avx512.h"
#include "xxh64.h"

namespace kvtier::kvz {
namespace {

std::vector<uint32_t> ScalarCount(const std::vector<uint8_t>& sym) {
  std::vector<uint32_t> hist(256, 0);
  for (uint8_t s : sym) ++hist[s];
  return hist;
}

TEST(CountNarrowAvx512, MatchesAScalarCountWithOutliersAnywhere) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "this CPU has no AVX-512 (or KVTIER_KVZ_PORTABLE)";
  std::mt19937 rng(7);
  for (int base : {0, 100, 240}) {
    for (uint32_t n : {4096u, 16384u + 17u, 65536u}) {
      std::vector<uint8_t> sym(n);
      for (uint32_t i = 0; i < n; ++i) {
        // 1 in 50 outside the window, including the values just past either end.
        sym[i] = static_cast<uint8_t>(rng() % 50 == 0 ? rng() : base + rng() % 16);
      }
      sym[n - 1] = static_cast<uint8_t>(base + 16);  // the tail, outside
      std::vector<uint32_t> hist(256, 0xDEAD);
      ASSERT_TRUE(CountNarrowAvx512(sym.data(), n, hist.data())) << base << " " << n;
      EXPECT_EQ(hist, ScalarCount(sym)) << base << " " << n;
    }
  }
}

TEST(CountNarrowAvx512, CountsOneSymbolPastEveryByteCounterFlush) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "this CPU has no AVX-512 (or KVTIER_KVZ_PORTABLE)";
  const std::vector<uint8_t> sym(65536, 0x7F);  // every row adds 32 to one value's counters
  std::vector<uint32_t> hist(256);
  ASSERT_TRUE(CountNarrowAvx512(sym.data(), 65536, hist.data()));
  EXPECT_EQ(hist, ScalarCount(sym));
}

TEST(CountNarrowAvx512, DeclinesAWideAlphabet) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "this CPU has no AVX-512 (or KVTIER_KVZ_PORTABLE)";
  std::vector<uint8_t> sym(16384);
  for (size_t i = 0; i < sym.size(); ++i) sym[i] = static_cast<uint8_t>(i * 37);
  uint32_t hist[256];
  EXPECT_FALSE(CountNarrowAvx512(sym.data(), 16384, hist));
}

TEST(SliceDigestsAvx512, EqualsXxh64OfEachSlice) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "this CPU has no AVX-512 (or KVTIER_KVZ_PORTABLE)";
  std::mt19937_64 rng(3);
  for (size_t slice : {32u, 96u, 1024u, 4096u}) {
    std::vector<uint8_t> data(32 * slice + 1);  // +1: the slices start unaligned below
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    const uint8_t* p = data.data() + 1;
    uint64_t digests[32];
    SliceDigestsAvx512(p, slice, digests);
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(digests[l], Xxh64(p + l * slice, slice, 0)) << slice << " slice " << l;
    }
  }
}

}  // namespace
}  // namespace kvtier::kvz
