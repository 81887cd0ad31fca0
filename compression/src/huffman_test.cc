// The pieces both encoders share: XXH64 against libxxhash and known values, and the code
// construction against brute-force optimal Huffman costs.
#include "huffman.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <queue>
#include <random>
#include <vector>

#include "xxh64.h"
#ifdef KVTIER_HAVE_LIBXXHASH
#include <xxhash.h>
#endif

namespace kvtier::kvz {
namespace {

TEST(Xxh64Test, KnownValues) {
  EXPECT_EQ(Xxh64("", 0, 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(Xxh64("a", 1, 0), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(Xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL);
}

#ifdef KVTIER_HAVE_LIBXXHASH
TEST(Xxh64Test, MatchesLibxxhashOnEveryLengthAndSeeds) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> data(4096);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  for (size_t len = 0; len <= 300; ++len) {
    for (uint64_t seed : {uint64_t{0}, uint64_t{1}, rng()}) {
      const size_t offset = rng() % 64;  // unaligned starts too
      ASSERT_EQ(Xxh64(data.data() + offset, len, seed), XXH64(data.data() + offset, len, seed))
          << "len " << len << " seed " << seed;
    }
  }
  EXPECT_EQ(Xxh64(data.data(), data.size(), 5), XXH64(data.data(), data.size(), 5));
}
#endif

// Optimal (unlimited) Huffman cost sum(count * length) by the textbook priority queue.
uint64_t OptimalCost(const std::vector<uint32_t>& counts) {
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> q;
  for (uint32_t c : counts) {
    if (c > 0) q.push(c);
  }
  uint64_t cost = 0;
  while (q.size() > 1) {
    const uint64_t a = q.top();
    q.pop();
    const uint64_t b = q.top();
    q.pop();
    cost += a + b;
    q.push(a + b);
  }
  return cost;
}

struct Built {
  uint8_t lengths[256] = {};
  int max_len = 0;
  int present = 0;
};

Built Build(const std::vector<uint32_t>& counts) {
  Built b;
  std::vector<uint32_t> keys;
  for (int s = 0; s < 256; ++s) {
    if (counts[s] > 0) keys.push_back(SortKey(counts[s], s));
  }
  std::sort(keys.begin(), keys.end());
  b.present = static_cast<int>(keys.size());
  std::vector<uint32_t> work(keys.size());
  b.max_len = LengthsFromSorted(keys.data(), b.present, work.data(), b.lengths);
  return b;
}

void ExpectValidCode(const Built& b, const std::vector<uint32_t>& counts) {
  uint32_t kraft = 0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s] == 0) {
      EXPECT_EQ(b.lengths[s], 0) << s;
      continue;
    }
    ASSERT_GE(b.lengths[s], 1);
    ASSERT_LE(b.lengths[s], kMaxCodeLength);
    kraft += 1u << (kMaxCodeLength - b.lengths[s]);
  }
  EXPECT_EQ(kraft, 1u << kMaxCodeLength) << "code must be complete";
  // Canonical codes are prefix-free: no code is a prefix of another (checked LSB-first).
  uint16_t codes[256];
  CanonicalCodes(b.lengths, codes);
  for (int a = 0; a < 256; ++a) {
    for (int c = 0; c < 256; ++c) {
      if (a == c || b.lengths[a] == 0 || b.lengths[c] == 0 || b.lengths[a] > b.lengths[c]) continue;
      const uint32_t mask = (1u << b.lengths[a]) - 1;
      EXPECT_NE(codes[c] & mask, codes[a]) << a << " is a prefix of " << c;
    }
  }
}

TEST(HuffmanTest, MatchesOptimalCostWhenNoLimitIsNeeded) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<uint32_t> counts(256, 0);
    const int symbols = 2 + static_cast<int>(rng() % 60);
    for (int k = 0; k < symbols; ++k) counts[rng() % 256] += 1 + rng() % 400;
    const Built b = Build(counts);
    ExpectValidCode(b, counts);
    if (b.max_len < kMaxCodeLength) {
      uint64_t cost = 0;
      for (int s = 0; s < 256; ++s) cost += uint64_t{counts[s]} * b.lengths[s];
      EXPECT_EQ(cost, OptimalCost(counts)) << "trial " << trial;
    }
  }
}

TEST(HuffmanTest, LimitsSkewedDistributionsTo11Bits) {
  // Fibonacci-like counts force a deep unlimited tree (depth ~23 for 2^16 occurrences).
  std::vector<uint32_t> counts(256, 0);
  uint32_t a = 1, b = 1;
  for (int s = 0; s < 24; ++s) {
    counts[s] = a;
    const uint32_t next = a + b;
    a = b;
    b = next;
  }
  const Built built = Build(counts);
  EXPECT_EQ(built.max_len, kMaxCodeLength);
  ExpectValidCode(built, counts);
  // Limiting costs little even on this worst case: within 2% of the unlimited optimum.
  uint64_t cost = 0;
  for (int s = 0; s < 256; ++s) cost += uint64_t{counts[s]} * built.lengths[s];
  EXPECT_LT(cost, OptimalCost(counts) * 102 / 100);
}

TEST(HuffmanTest, AllSymbolsAndTwoSymbols) {
  std::vector<uint32_t> all(256);
  std::iota(all.begin(), all.end(), 1);
  ExpectValidCode(Build(all), all);
  std::vector<uint32_t> flat(256, 64);
  const Built f = Build(flat);
  for (int s = 0; s < 256; ++s) EXPECT_EQ(f.lengths[s], 8);
  std::vector<uint32_t> two(256, 0);
  two[3] = 1000;
  two[200] = 1;
  const Built t = Build(two);
  EXPECT_EQ(t.lengths[3], 1);
  EXPECT_EQ(t.lengths[200], 1);
}

TEST(HuffmanTest, TiesAreBrokenBySymbol) {
  // Three equal counts: the first in (count, symbol) order is the least frequent, so the
  // smallest symbol gets one of the two long codes and the largest the short one.
  std::vector<uint32_t> counts(256, 0);
  counts[10] = counts[20] = counts[30] = 5;
  const Built b = Build(counts);
  EXPECT_EQ(b.lengths[10], 2);
  EXPECT_EQ(b.lengths[20], 2);
  EXPECT_EQ(b.lengths[30], 1);
}

// The textbook in-place form of Moffat-Katajainen's phase 1 (one array: weights, then parents),
// the reference HuffmanParents must agree with.
void InPlaceParents(const uint32_t* keys, int n, uint32_t* a) {
  for (int i = 0; i < n; ++i) a[i] = keys[i] >> 8;
  a[0] += a[1];
  int root = 0;
  int leaf = 2;
  for (int next = 1; next < n - 1; ++next) {
    if (leaf >= n || a[root] < a[leaf]) {
      a[next] = a[root];
      a[root++] = static_cast<uint32_t>(next);
    } else {
      a[next] = a[leaf++];
    }
    if (leaf >= n || (root < next && a[root] < a[leaf])) {
      a[next] += a[root];
      a[root++] = static_cast<uint32_t>(next);
    } else {
      a[next] += a[leaf++];
    }
  }
}

// HuffmanParents, with its queue heads in registers, builds the textbook tree: the same parents
// for every internal node, on skewed, flat, tied and tiny distributions of 2 to 256 symbols.
TEST(HuffmanTest, MergeBuildsTheTextbookTree) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20000; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 255);
    std::vector<uint32_t> counts(n);
    const int shape = trial % 4;
    for (int i = 0; i < n; ++i) {
      switch (shape) {
        case 0:
          counts[i] = 1 + rng() % 4;
          break;  // many ties
        case 1:
          counts[i] = 1 + (rng() % 65536) / (1 + i * i);
          break;  // skewed
        case 2:
          counts[i] = 1u << (rng() % 12);
          break;  // powers of two
        default:
          counts[i] = 1 + rng() % 256;
          break;
      }
    }
    std::vector<uint32_t> keys(n);
    for (int i = 0; i < n; ++i) keys[i] = SortKey(counts[i], i);
    std::sort(keys.begin(), keys.end());
    std::vector<uint32_t> in_place(n), parents(n, 0), weights(n);
    InPlaceParents(keys.data(), n, in_place.data());
    HuffmanParents(keys.data(), n, parents.data(), weights.data());
    for (int i = 0; i + 2 < n; ++i) {
      ASSERT_EQ(parents[i], in_place[i]) << "trial " << trial << ", n " << n << ", node " << i;
    }
    ASSERT_EQ(weights[n - 2], in_place[n - 2]) << "the root's weight, trial " << trial;
  }
}

}  // namespace
}  // namespace kvtier::kvz
