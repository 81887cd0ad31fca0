// NvmeTier's per-namespace limits on the in-memory device: quotas (the namespace's oldest records
// dropped first, other namespaces untouched, lowered quotas, blocks larger than the quota,
// pinned records, writes pipelined together), priorities deciding which hot blocks a reclaimed
// region rewrites, and per-namespace usage recomputed at a restart.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "kvtier/tiers/nvme_tier.h"
#include "tiers/src/nvme/tier_test_util.h"

namespace kvtier::tiers::nvme::testing {
namespace {

constexpr uint32_t kOther = 2;
constexpr uint32_t kFiller = 3;
// 60 KiB payloads take 64 KiB records (one 4 KiB header unit): 16 to a 1 MiB region.
constexpr size_t kBlock = 60 << 10;
constexpr uint64_t kRecord = 64 << 10;

const NamespaceSnapshot* FindNs(const NvmeTierSnapshot& s, uint32_t ns) {
  for (const NamespaceSnapshot& n : s.tier.namespaces) {
    if (n.namespace_id == ns) return &n;
  }
  return nullptr;
}

// Which of blocks [begin, end) of `ns` the tier holds; each one held must read back exactly.
std::vector<int> Held(NvmeTier& tier, uint32_t ns, int begin, int end, size_t length = kBlock) {
  std::vector<int> held;
  for (int i = begin; i < end; ++i) {
    if (!tier.Contains(ns, TestKey(i))) continue;
    absl::StatusOr<std::vector<std::byte>> got = Get(tier, i, 256 << 10, false, ns);
    EXPECT_TRUE(got.ok()) << "block " << i << ": " << got.status();
    if (got.ok()) {
      EXPECT_EQ(*got, TestPayload(i, 1, length)) << "block " << i;
    }
    held.push_back(i);
  }
  return held;
}

std::vector<int> Range(int begin, int end) {
  std::vector<int> out;
  for (int i = begin; i < end; ++i) out.push_back(i);
  return out;
}

class NvmeLimitsTest : public ::testing::Test {
 protected:
  void Open(uint32_t regions = 8) {
    harness_ = std::make_unique<TierHarness>(regions);
    ASSERT_TRUE(harness_->Open().ok());
    ASSERT_TRUE(tier().AddNamespace(kOther, 256 << 10).ok());
    ASSERT_TRUE(tier().AddNamespace(kFiller, 256 << 10).ok());
  }
  NvmeTier& tier() { return harness_->tier(); }
  void Quota(uint32_t ns, uint64_t bytes, int32_t priority = 0) {
    ASSERT_TRUE(tier().SetNamespaceLimits(ns, {.quota_bytes = bytes, .priority = priority}).ok());
  }
  void Write(uint32_t ns, int begin, int end, size_t length = kBlock,
             const NvmeWriteOptions& options = {}) {
    for (int i = begin; i < end; ++i) {
      ASSERT_TRUE(Put(tier(), i, 1, length, options, ns).ok()) << "ns " << ns << " block " << i;
    }
  }
  NamespaceSnapshot Ns(uint32_t ns) {
    const NvmeTierSnapshot s = tier().Snapshot();
    const NamespaceSnapshot* n = FindNs(s, ns);
    EXPECT_NE(n, nullptr) << ns;
    return n != nullptr ? *n : NamespaceSnapshot{};
  }

  std::unique_ptr<TierHarness> harness_;
};

TEST_F(NvmeLimitsTest, AQuotaDropsTheNamespacesOldestRecordsAndNoOneElses) {
  Open();
  Quota(kNs, 5 * kRecord);
  // Interleaved with the other namespace, so the quota's records span two regions.
  Write(kNs, 100, 108);
  Write(kOther, 0, 10);
  Write(kNs, 108, 120);
  const NvmeTierSnapshot s = tier().Snapshot();
  EXPECT_EQ(s.nvme.region_evictions, 0u);  // what went, went for the quota
  EXPECT_EQ(s.nvme.quota_drops, 15u);
  EXPECT_EQ(s.nvme.quota_rejections, 0u);
  const NamespaceSnapshot* n = FindNs(s, kNs);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->blocks, 5u);
  EXPECT_EQ(n->used_bytes, 5 * kRecord);
  EXPECT_EQ(n->quota_bytes, 5 * kRecord);
  EXPECT_EQ(n->counters.quota_evictions, 15u);
  EXPECT_EQ(n->counters.puts, 20u);
  EXPECT_EQ(Held(tier(), kNs, 100, 120), Range(115, 120));  // the newest five
  EXPECT_EQ(Held(tier(), kOther, 0, 10), Range(0, 10));     // all of the other's
  EXPECT_EQ(Ns(kOther).counters.quota_evictions, 0u);
  // Capacity the quota freed is dead space until its region is recycled, not live bytes.
  EXPECT_EQ(s.tier.used_bytes, 15 * kRecord);
}

TEST_F(NvmeLimitsTest, ALoweredQuotaDropsDownToItAtOnceAndZeroLifts) {
  Open();
  Write(kNs, 0, 10);
  Write(kOther, 50, 55);
  Quota(kNs, 3 * kRecord + 100);  // not a whole number of records: rounds down to three
  EXPECT_EQ(Ns(kNs).blocks, 3u);
  EXPECT_EQ(Ns(kNs).counters.quota_evictions, 7u);
  EXPECT_EQ(Held(tier(), kNs, 0, 10), Range(7, 10));
  EXPECT_EQ(Held(tier(), kOther, 50, 55), Range(50, 55));
  Quota(kNs, 0);
  Write(kNs, 10, 20);
  EXPECT_EQ(Ns(kNs).blocks, 13u);
  EXPECT_EQ(tier().Snapshot().nvme.quota_drops, 7u);
  EXPECT_TRUE(absl::IsNotFound(tier().SetNamespaceLimits(99, {.quota_bytes = 1})));
}

TEST_F(NvmeLimitsTest, ABlockLargerThanTheQuotaIsRefusedAndSoIsWhatAWriteCannotFit) {
  Open();
  Quota(kNs, 32 << 10);
  const uint64_t written_before = tier().Snapshot().nvme.flash_bytes_written;
  const absl::Status big = Put(tier(), 1, 1, kBlock);
  EXPECT_TRUE(absl::IsResourceExhausted(big)) << big;
  EXPECT_NE(big.message().find("quota"), std::string::npos) << big;
  EXPECT_EQ(tier().Snapshot().nvme.flash_bytes_written, written_before);  // refused unwritten
  EXPECT_FALSE(tier().Contains(kNs, TestKey(1)));
  ASSERT_TRUE(Put(tier(), 2, 1, 20000).ok());  // a 24 KiB record fits
  EXPECT_EQ(Ns(kNs).counters.quota_rejections, 1u);

  // One write of eight blocks under a quota of five: its last five stay.
  Quota(kNs, 5 * kRecord);
  std::vector<BlockKey> keys;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<std::span<const std::byte>> blocks;
  for (int i = 10; i < 18; ++i) {
    keys.push_back(TestKey(i));
    payloads.push_back(TestPayload(i, 1, kBlock));
  }
  for (auto& p : payloads) blocks.emplace_back(p);
  const std::vector<absl::Status> statuses = tier().Write(kNs, keys, blocks);
  for (int j = 0; j < 8; ++j) {
    EXPECT_EQ(statuses[j].ok(), j >= 3) << j << ": " << statuses[j];
    if (!statuses[j].ok()) {
      EXPECT_TRUE(absl::IsResourceExhausted(statuses[j])) << statuses[j];
    }
  }
  EXPECT_EQ(Held(tier(), kNs, 10, 18), Range(13, 18));
  EXPECT_FALSE(tier().Contains(kNs, TestKey(2)));  // the older record made room
  const NamespaceSnapshot n = Ns(kNs);
  EXPECT_EQ(n.counters.quota_rejections, 4u);
  EXPECT_EQ(n.counters.quota_evictions, 1u);
  EXPECT_EQ(tier().Snapshot().nvme.quota_rejections, 4u);
  EXPECT_LE(n.used_bytes, 5 * kRecord);
}

TEST_F(NvmeLimitsTest, PinnedRecordsStayAndANewPinnedBlockTheyCrowdOutIsRefused) {
  Open();
  Quota(kNs, 3 * kRecord);
  NvmeWriteOptions pinned;
  pinned.pinned = true;
  Write(kNs, 0, 1, kBlock, pinned);
  Write(kNs, 1, 6);
  EXPECT_EQ(Held(tier(), kNs, 0, 6), (std::vector<int>{0, 4, 5}));
  Write(kNs, 10, 12, kBlock, pinned);  // each drops the oldest unpinned one
  EXPECT_EQ(Held(tier(), kNs, 0, 12), (std::vector<int>{0, 10, 11}));
  const absl::Status crowded = Put(tier(), 12, 1, kBlock, pinned);
  EXPECT_TRUE(absl::IsResourceExhausted(crowded)) << crowded;
  EXPECT_EQ(Held(tier(), kNs, 0, 13), (std::vector<int>{0, 10, 11}));
  const NamespaceSnapshot n = Ns(kNs);
  EXPECT_EQ(n.counters.quota_rejections, 1u);
  EXPECT_EQ(n.counters.quota_evictions, 5u);  // 1..5
  EXPECT_EQ(n.used_bytes, 3 * kRecord);
  // Unpinned, the oldest record is the next to go.
  const BlockKey first = TestKey(0);
  ASSERT_TRUE(tier().SetPinned(kNs, {&first, 1}, false)[0].ok());
  Write(kNs, 13, 14);
  EXPECT_EQ(Held(tier(), kNs, 0, 14), (std::vector<int>{10, 11, 13}));
  // Lowering the quota under pinned blocks drops what is not pinned, and still succeeds.
  Quota(kNs, kRecord);
  EXPECT_EQ(Held(tier(), kNs, 0, 14), (std::vector<int>{10, 11}));
}

TEST_F(NvmeLimitsTest, AWalkLongerThanOneIndexScanStillGoesOldestFirst) {
  // 8 KiB records, 128 to a region, two namespaces interleaved: dropping 90 of the first's
  // takes several chunks of locators in one walk.
  Open();
  constexpr uint64_t kSmallRecord = 8 << 10;
  for (int i = 0; i < 100; ++i) {
    Write(kNs, i, i + 1, 4096);
    Write(kOther, 1000 + i, 1000 + i + 1, 4096);
  }
  Quota(kNs, 10 * kSmallRecord);
  EXPECT_EQ(Held(tier(), kNs, 0, 100, 4096), Range(90, 100));
  Write(kNs, 100, 105, 4096);  // the next walk starts where the last one stopped
  EXPECT_EQ(Held(tier(), kNs, 0, 105, 4096), Range(95, 105));
  EXPECT_EQ(Held(tier(), kOther, 1000, 1100, 4096), Range(1000, 1100));
  EXPECT_EQ(Ns(kNs).counters.quota_evictions, 95u);
}

TEST_F(NvmeLimitsTest, WritesPipelinedTogetherKeepTheNewestWhateverTheirGrouping) {
  Open();
  Quota(kNs, 3 * kRecord);
  constexpr int kCalls = 10, kPerCall = 2;
  std::vector<std::vector<std::byte>> payloads;
  for (int i = 0; i < kCalls * kPerCall; ++i) payloads.push_back(TestPayload(i, 1, kBlock));
  std::vector<std::vector<std::span<const std::byte>>> blocks(kCalls);
  std::atomic<int> done{0}, ok{0};
  for (int c = 0; c < kCalls; ++c) {
    std::vector<BlockKey> keys;
    for (int k = 0; k < kPerCall; ++k) {
      keys.push_back(TestKey(c * kPerCall + k));
      blocks[c].emplace_back(payloads[c * kPerCall + k]);
    }
    // Queued back to back: the commit stage takes several calls in one group.
    tier().WriteAsync(kNs, keys, blocks[c], {}, [&](std::vector<absl::Status> statuses) {
      for (const absl::Status& s : statuses) ok += s.ok();
      ++done;
    });
  }
  while (done.load() < kCalls) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(ok.load(), kCalls * kPerCall);
  EXPECT_EQ(Held(tier(), kNs, 0, kCalls * kPerCall), Range(17, 20));
  const NamespaceSnapshot n = Ns(kNs);
  EXPECT_EQ(n.blocks, 3u);
  EXPECT_EQ(n.used_bytes, 3 * kRecord);
  EXPECT_EQ(n.counters.quota_evictions, 17u);
}

TEST_F(NvmeLimitsTest, UsageIsRecomputedAtARestartAndQuotasAreSetAgain) {
  Open();
  Write(kNs, 0, 12);
  Write(kOther, 100, 107, 20000);
  Write(kNs, 12, 20);
  Quota(kNs, 6 * kRecord);
  const NvmeTierSnapshot before = tier().Snapshot();
  ASSERT_TRUE(harness_->Open().ok());  // restart
  ASSERT_TRUE(tier().AddNamespace(kOther, 256 << 10).ok());
  const NvmeTierSnapshot after = tier().Snapshot();
  for (uint32_t ns : {kNs, kOther}) {
    const NamespaceSnapshot* b = FindNs(before, ns);
    const NamespaceSnapshot* a = FindNs(after, ns);
    ASSERT_NE(b, nullptr);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->blocks, b->blocks) << ns;
    EXPECT_EQ(a->used_bytes, b->used_bytes) << ns;
  }
  EXPECT_EQ(FindNs(after, kNs)->used_bytes, 6 * kRecord);
  EXPECT_EQ(FindNs(after, kOther)->used_bytes, 7 * 24576u);
  // Limits are not persisted.
  EXPECT_EQ(FindNs(after, kNs)->quota_bytes, 0u);
  EXPECT_EQ(tier().Limits(kNs).quota_bytes, 0u);
  // Set again, one record lower: the recovered per-region usage finds the oldest survivor.
  Quota(kNs, 5 * kRecord);
  EXPECT_EQ(Held(tier(), kNs, 0, 20), Range(15, 20));
  Write(kNs, 20, 22);
  EXPECT_EQ(Held(tier(), kNs, 0, 22), Range(17, 22));
  EXPECT_EQ(Held(tier(), kOther, 100, 107, 20000), Range(100, 107));
}

// Four regions and a reinsertion budget of `fraction` of a region (OpenFour); region 0 filled
// with `layout` (namespace, id, length; each block read once, so hot by the default rule), then
// unread filler written until region 0 is reclaimed (Reclaim).
class NvmePriorityTest : public NvmeLimitsTest {
 protected:
  struct Block {
    uint32_t ns;
    int id;
    size_t length;
  };
  void OpenFour(double fraction) {
    harness_ = std::make_unique<TierHarness>(4);
    harness_->options().max_reinsert_fraction = fraction;
    ASSERT_TRUE(harness_->Open().ok());
    ASSERT_TRUE(tier().AddNamespace(kOther, 256 << 10).ok());
    ASSERT_TRUE(tier().AddNamespace(kFiller, 256 << 10).ok());
  }
  void Reclaim(const std::vector<Block>& layout, bool read = true) {
    for (const Block& b : layout) ASSERT_TRUE(Put(tier(), b.id, 1, b.length, {}, b.ns).ok());
    if (read) {
      for (const Block& b : layout) ASSERT_TRUE(Get(tier(), b.id, 256 << 10, false, b.ns).ok());
    }
    for (int i = 10000; tier().Snapshot().nvme.region_evictions == 0; ++i) {
      ASSERT_LT(i, 10100);
      ASSERT_TRUE(Put(tier(), i, 1, kBlock, {}, kFiller).ok());
    }
  }
  // Sixteen 64 KiB records, alternating kNs and kOther.
  static std::vector<Block> Alternating() {
    std::vector<Block> layout;
    for (int i = 0; i < 8; ++i) {
      layout.push_back({kNs, i, kBlock});
      layout.push_back({kOther, 100 + i, kBlock});
    }
    return layout;
  }
  // Five 64 KiB records of kOther, then four 8 KiB ones of kNs.
  static std::vector<Block> BigThenSmall() {
    std::vector<Block> layout;
    for (int i = 0; i < 5; ++i) layout.push_back({kOther, 100 + i, kBlock});
    for (int i = 0; i < 4; ++i) layout.push_back({kNs, i, 4096});
    return layout;
  }
};

TEST_F(NvmePriorityTest, HigherPrioritiesHotBlocksAreRewrittenFirst) {
  OpenFour(0.25);  // the budget rewrites four of the sixteen hot blocks
  Quota(kNs, 0, -1);
  Quota(kOther, 0, 5);
  Reclaim(Alternating());
  EXPECT_EQ(tier().Snapshot().nvme.reinserted_blocks, 4u);
  EXPECT_EQ(Held(tier(), kOther, 100, 108), Range(100, 104));  // in write order
  EXPECT_TRUE(Held(tier(), kNs, 0, 8).empty());
  EXPECT_EQ(tier().Limits(kOther).priority, 5);
  EXPECT_EQ(Ns(kOther).priority, 5);
}

TEST_F(NvmePriorityTest, WithoutPrioritiesTheBudgetGoesInWriteOrder) {
  OpenFour(0.25);  // the control for the test above: no limits
  Reclaim(Alternating());
  EXPECT_EQ(tier().Snapshot().nvme.reinserted_blocks, 4u);
  EXPECT_EQ(Held(tier(), kNs, 0, 8), (std::vector<int>{0, 1}));
  EXPECT_EQ(Held(tier(), kOther, 100, 108), (std::vector<int>{100, 101}));
}

TEST_F(NvmePriorityTest, ALowerPriorityNeverTakesRewriteSpaceAHigherOneWanted) {
  // kOther wants five 64 KiB rewrites; the budget (300 KiB) holds four and leaves room for
  // kNs's 8 KiB ones, which must still not be rewritten.
  OpenFour(300.0 / 1024);
  Quota(kOther, 0, 1);
  Reclaim(BigThenSmall());
  EXPECT_EQ(Held(tier(), kOther, 100, 105), Range(100, 104));
  EXPECT_TRUE(Held(tier(), kNs, 0, 4, 4096).empty());
  EXPECT_EQ(tier().Snapshot().nvme.reinserted_blocks, 4u);
}

TEST_F(NvmePriorityTest, WithinOnePriorityWhatFitsIsStillRewritten) {
  OpenFour(300.0 / 1024);  // the control for the test above: equal priorities
  Reclaim(BigThenSmall());
  EXPECT_EQ(Held(tier(), kOther, 100, 105), Range(100, 104));
  EXPECT_EQ(Held(tier(), kNs, 0, 4, 4096), Range(0, 4));
  EXPECT_EQ(tier().Snapshot().nvme.reinserted_blocks, 8u);
}

TEST_F(NvmePriorityTest, PriorityDoesNotMakeColdBlocksHot) {
  OpenFour(0.25);
  Quota(kOther, 0, 7);
  Reclaim(Alternating(), /*read=*/false);
  // Nothing was read: nothing is rewritten, whatever the priority.
  EXPECT_EQ(tier().Snapshot().nvme.reinserted_blocks, 0u);
  EXPECT_TRUE(Held(tier(), kOther, 100, 108).empty());
}

TEST_F(NvmePriorityTest, PinnedBlocksAreRewrittenWhateverTheirPriority) {
  OpenFour(0.25);
  Quota(kNs, 0, -5);
  Quota(kOther, 0, 5);
  std::vector<Block> layout = Alternating();
  layout.pop_back();  // with the pinned block, region 0 holds the rest
  NvmeWriteOptions pinned;
  pinned.pinned = true;
  ASSERT_TRUE(Put(tier(), 50, 1, kBlock, pinned).ok());  // low priority, pinned, unread
  Reclaim(layout);
  EXPECT_EQ(Held(tier(), kNs, 0, 100), (std::vector<int>{50}));
  // Pinned records do not use the budget (unless they crowd the region): four still fit.
  EXPECT_EQ(Held(tier(), kOther, 100, 107), Range(100, 104));
  EXPECT_EQ(tier().Snapshot().nvme.reinserted_blocks, 5u);
}

}  // namespace
}  // namespace kvtier::tiers::nvme::testing
