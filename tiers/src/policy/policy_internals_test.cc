// The pieces the policies are built from: EntryList, GhostFilter, GhostList, FrequencySketch.
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tiers/src/policy/entry_list.h"
#include "tiers/src/policy/frequency_sketch.h"
#include "tiers/src/policy/ghost_filter.h"
#include "tiers/src/policy/ghost_list.h"

namespace kvtier::tiers::policy {
namespace {

struct Node {
  Links links;
};
using List = EntryList<Node>;

std::vector<uint32_t> ColdToHot(const List& list) {
  std::vector<uint32_t> out;
  for (uint32_t id = list.cold(); id != kNoEntry; id = list.Hotter(id)) out.push_back(id);
  return out;
}

TEST(EntryListTest, PushUnlinkAndInsertColderThan) {
  std::vector<Node> nodes(10);
  List list(&nodes);
  EXPECT_TRUE(list.empty());
  list.PushHot(1);
  list.PushHot(2);
  list.PushCold(0);
  list.InsertColderThan(5, 2);
  EXPECT_EQ(ColdToHot(list), (std::vector<uint32_t>{0, 1, 5, 2}));
  list.Unlink(0);
  list.Unlink(2);
  EXPECT_EQ(ColdToHot(list), (std::vector<uint32_t>{1, 5}));
  EXPECT_EQ(list.cold(), 1u);
  EXPECT_EQ(list.hot(), 5u);
  list.InsertColderThan(7, 1);
  EXPECT_EQ(ColdToHot(list), (std::vector<uint32_t>{7, 1, 5}));
  EXPECT_EQ(list.size(), 3u);
}

TEST(EntryListTest, ListsShareOneNodeTable) {
  std::vector<Node> nodes(4);
  List a(&nodes), b(&nodes);
  a.PushHot(0);
  b.PushHot(1);
  a.PushHot(2);
  a.Unlink(0);
  b.PushHot(0);
  EXPECT_EQ(ColdToHot(a), (std::vector<uint32_t>{2}));
  EXPECT_EQ(ColdToHot(b), (std::vector<uint32_t>{1, 0}));
}

TEST(GhostFilterTest, RemembersRecentFingerprintsAndForgetsOldOnes) {
  GhostFilter ghost(1000);
  for (uint64_t fp = 1; fp <= 500; ++fp) ghost.Insert(fp);
  for (uint64_t fp = 1; fp <= 500; ++fp) ASSERT_TRUE(ghost.Contains(fp)) << fp;
  // Two more generations later the first 500 are gone (bar false positives).
  for (uint64_t fp = 501; fp <= 1500; ++fp) ghost.Insert(fp);
  int still = 0;
  for (uint64_t fp = 1; fp <= 500; ++fp) still += ghost.Contains(fp) ? 1 : 0;
  EXPECT_LT(still, 25);
  for (uint64_t fp = 1001; fp <= 1500; ++fp) ASSERT_TRUE(ghost.Contains(fp)) << fp;
}

TEST(GhostFilterTest, FalsePositivesStayNearTwoPercent) {
  GhostFilter ghost(100000);
  for (uint64_t fp = 1; fp <= 100000; ++fp) ghost.Insert(fp);
  int false_positives = 0;
  for (uint64_t fp = 1'000'000; fp < 1'100'000; ++fp) false_positives += ghost.Contains(fp);
  EXPECT_LT(false_positives, 3000);  // 3 % of 100,000 probes
}

TEST(GhostFilterTest, PrefetchChangesNothing) {
  // Prefetch only starts loads: a filter given hints for every fingerprint, extremes included,
  // answers exactly as one never given any (and ASan builds check the lines it names).
  GhostFilter hinted(5000), plain(5000);
  for (uint64_t fp : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}, uint64_t{1} << 63}) {
    hinted.Prefetch(fp);
  }
  for (uint64_t fp = 1; fp <= 8000; ++fp) {
    hinted.Prefetch(fp * 0x9E3779B97F4A7C15ULL);
    hinted.Insert(fp * 0x9E3779B97F4A7C15ULL);
    plain.Insert(fp * 0x9E3779B97F4A7C15ULL);
  }
  for (uint64_t fp = 1; fp <= 20000; ++fp) {
    hinted.Prefetch(fp * 0x9E3779B97F4A7C15ULL);
    ASSERT_EQ(hinted.Contains(fp * 0x9E3779B97F4A7C15ULL),
              plain.Contains(fp * 0x9E3779B97F4A7C15ULL))
        << fp;
  }
}

TEST(GhostListTest, FifoSetSemantics) {
  GhostList g;
  g.Push(1);
  g.Push(2);
  g.Push(3);
  EXPECT_TRUE(g.Erase(2));
  EXPECT_FALSE(g.Erase(2));
  g.Push(1);  // moves to newest
  EXPECT_EQ(g.size(), 2u);
  g.PopOldest();
  EXPECT_FALSE(g.Contains(3));
  EXPECT_TRUE(g.Contains(1));
  g.PopOldest();
  EXPECT_EQ(g.size(), 0u);
}

TEST(GhostListTest, ChurnDoesNotGrowWithoutBound) {
  GhostList g;
  for (uint64_t i = 0; i < 100000; ++i) {
    g.Push(i);
    if (i >= 10) g.Erase(i - 10);
  }
  EXPECT_EQ(g.size(), 10u);
  for (uint64_t i = 99990; i < 100000; ++i) EXPECT_TRUE(g.Contains(i));
}

TEST(FrequencySketchTest, EstimatesAreUpperBoundsThatAge) {
  FrequencySketch sketch(1024);
  for (int i = 0; i < 5; ++i) sketch.Increment(42);
  EXPECT_GE(sketch.Estimate(42), 5u);
  EXPECT_LE(sketch.Estimate(42), 6u);
  EXPECT_LE(sketch.Estimate(7), 1u);
  for (int i = 0; i < 100; ++i) sketch.Increment(43);
  EXPECT_EQ(sketch.Estimate(43), 15u);  // 4-bit counters saturate
  // 10 x width increments halve every counter.
  for (uint64_t k = 1000; k < 1000 + 10 * 1024; ++k) sketch.Increment(k);
  EXPECT_LE(sketch.Estimate(43), 8u);
}

}  // namespace
}  // namespace kvtier::tiers::policy
