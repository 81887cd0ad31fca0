#include "workload.h"

#include <gtest/gtest.h>

#include "absl/container/flat_hash_set.h"
#include "kvtier/kernels/block_hash.h"
#include "report.h"

namespace kvtier::bench {
namespace {

TEST(Workload, ContentIsDeterministicAndDistinct) {
  std::vector<std::byte> a(1001), b(1001), c(1001);
  FillBlock(7, 0, 3, a);
  FillBlock(7, 0, 3, b);
  FillBlock(7, 0, 4, c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  FillBlock(8, 0, 3, c);
  EXPECT_NE(a, c);
}

TEST(Workload, ChainedKeysArePrefixesOfLongerChains) {
  const BlockKey seed = NamespaceSeed(BenchNamespace(4096));
  const auto short_chain = ChainedKeys(seed, 1, 0, 5);
  const auto long_chain = ChainedKeys(seed, 1, 0, 9);
  ASSERT_EQ(short_chain.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(short_chain[i], long_chain[i]);
  EXPECT_NE(ChainedKeys(seed, 2, 0, 1)[0], short_chain[0]);
}

TEST(Workload, IndependentKeysDoNotCollide) {
  const BlockKey seed = NamespaceSeed(BenchNamespace(4096));
  absl::flat_hash_set<BlockKey> keys;
  for (uint64_t stream = 0; stream < 4; ++stream) {
    for (uint64_t i = 0; i < 1000; ++i) keys.insert(IndependentKey(seed, 1, stream, i));
  }
  EXPECT_EQ(keys.size(), 4000u);
}

TEST(Workload, TraceBlocksAreOneKeyPerIdAndContentFollowsTheKey) {
  const BlockKey seed = NamespaceSeed(TraceReplayNamespace(4096, "run-1"));
  absl::flat_hash_set<BlockKey> keys;
  for (uint64_t id = 0; id < 1000; ++id) keys.insert(TraceBlockKey(seed, id));
  keys.insert(TraceBlockKey(seed, uint64_t{1} << 32));  // the high half counts too
  EXPECT_EQ(keys.size(), 1001u);
  EXPECT_EQ(TraceBlockKey(seed, 7), TraceBlockKey(seed, 7));
  // Another run's salt gives other keys for the same ids.
  EXPECT_NE(TraceBlockKey(NamespaceSeed(TraceReplayNamespace(4096, "run-2")), 7),
            TraceBlockKey(seed, 7));

  std::vector<std::byte> a(4096), b(4096), c(4096);
  FillTraceBlock(TraceBlockKey(seed, 7), a);
  FillTraceBlock(TraceBlockKey(seed, 7), b);
  FillTraceBlock(TraceBlockKey(seed, 8), c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Report, NearestRankPercentiles) {
  std::vector<uint64_t> ns;
  for (uint64_t i = 1000; i >= 1; --i) ns.push_back(i * 1000);  // 1..1000 us, reversed
  const LatencySummary s = Summarize(ns);
  EXPECT_EQ(s.count, 1000u);
  EXPECT_DOUBLE_EQ(s.p50_us, 500);
  EXPECT_DOUBLE_EQ(s.p99_us, 990);
  EXPECT_DOUBLE_EQ(s.p999_us, 999);
  EXPECT_DOUBLE_EQ(s.max_us, 1000);
  EXPECT_DOUBLE_EQ(s.mean_us, 500.5);
}

}  // namespace
}  // namespace kvtier::bench
