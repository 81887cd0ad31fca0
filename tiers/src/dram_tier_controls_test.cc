// The DRAM tier's memory controls: TTLs (expiry, reaping, never demoted, pins), per-namespace
// quotas and priorities (SetNamespaceLimits), and the counters that show them.
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/tiers/dram_tier.h"
#include "tiers/src/dram_tier_test_fixture.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int64_t kMilli = 1'000'000;
constexpr NamespaceId kOther = 2;

class Demotions : public EvictionListener {
 public:
  void OnEvict(const EvictedBlock& b) override {
    keys.push_back(b.key);
    ttl_left.push_back(b.ttl_left_nanos);
  }
  std::vector<BlockKey> keys;
  std::vector<int64_t> ttl_left;
};

class DramTierControlsTest : public DramTierTest {
 protected:
  // Reserves and commits `ids` in `ns` with a TTL (0: none); expects success.
  void PutWithTtl(std::initializer_list<uint64_t> ids, int64_t ttl_nanos, NamespaceId ns = kNs) {
    std::vector<BlockKey> keys = Keys(ids);
    std::vector<uint64_t> lengths(keys.size(), kPage);
    LeaseGrant g = tier_->ReservePut(kAlice, ns, keys, lengths, {.ttl_nanos = ttl_nanos});
    ASSERT_THAT(g.codes, Each(Code::kOk));
    for (size_t k = 0; k < keys.size(); ++k) Write(*(ids.begin() + k), g.slots[k]);
    auto codes = tier_->CommitPut(kAlice, g.lease_id);
    ASSERT_TRUE(codes.ok()) << codes.status();
  }

  // What a put of one new key in `ns` gets.
  Code TryPut(uint64_t id, NamespaceId ns = kNs) {
    std::vector<BlockKey> keys = Keys({id});
    LeaseGrant g = tier_->ReservePut(kBob, ns, keys, std::vector<uint64_t>{kPage});
    if (g.codes[0] == Code::kOk) {
      Write(id, g.slots[0]);
      EXPECT_TRUE(tier_->CommitPut(kBob, g.lease_id).ok());
    }
    return g.codes[0];
  }

  std::vector<bool> In(std::initializer_list<uint64_t> ids, NamespaceId ns) {
    return tier_->Present(ns, Keys(ids));
  }

  const NamespaceSnapshot& Ns(const TierSnapshot& s, NamespaceId id) {
    for (const NamespaceSnapshot& n : s.namespaces) {
      if (n.namespace_id == id) return n;
    }
    ADD_FAILURE() << "no namespace " << id;
    return s.namespaces.front();
  }
};

TEST_F(DramTierControlsTest, BlocksPastTheirTtlAreMissesEverywhere) {
  Make(8, 8);
  PutWithTtl({0, 1}, 100 * kMilli);
  Put({2});  // no TTL
  clock_.Advance(50 * kMilli);
  EXPECT_THAT(Cached({0, 1, 2}), ElementsAre(true, true, true));
  clock_.Advance(60 * kMilli);
  EXPECT_THAT(Cached({0, 1, 2}), ElementsAre(false, false, true));
  EXPECT_THAT(tier_->Present(kNs, Keys({0, 1, 2})), ElementsAre(false, false, true));
  LeaseGrant r = Read({0, 1, 2});
  EXPECT_THAT(r.codes, ElementsAre(Code::kNotFound, Code::kNotFound, Code::kOk));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.expirations, 2u);
  EXPECT_EQ(s.counters.evictions, 0u);
  EXPECT_EQ(s.blocks, 1u);
  // The key can be put again, fresh.
  EXPECT_EQ(TryPut(0), Code::kOk);
  EXPECT_THAT(Cached({0}), ElementsAre(true));
  ExpectInvariants();
}

TEST_F(DramTierControlsTest, TheNamespaceDefaultTtlAppliesToPutsThatAskForNone) {
  Make(8, 8);
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {.default_ttl_nanos = 100 * kMilli}).ok());
  EXPECT_EQ(Ns(tier_->Snapshot(), kNs).default_ttl_nanos, 100 * kMilli);
  Put({0});                        // the default
  PutWithTtl({1}, 1000 * kMilli);  // its own
  // A promotion sets each block's remaining TTL at commit (0: none, not the default).
  LeaseGrant g = tier_->ReservePut(kBob, kNs, Keys({5, 6}), std::vector<uint64_t>{kPage, kPage},
                                   {.persisted = true});
  ASSERT_THAT(g.codes, Each(Code::kOk));
  const std::vector<int64_t> wrong = {1};
  auto bad = tier_->CommitPut(kBob, g.lease_id, {.ttls = wrong});
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(*bad, Each(Code::kInvalidArgument));  // and the lease stays open
  const std::vector<int64_t> ttls = {50 * kMilli, 0};
  ASSERT_TRUE(tier_->CommitPut(kBob, g.lease_id, {.ttls = ttls}).ok());
  clock_.Advance(60 * kMilli);
  EXPECT_THAT(Cached({0, 1, 5, 6}), ElementsAre(true, true, false, true));
  clock_.Advance(60 * kMilli);
  EXPECT_THAT(Cached({0, 1, 5, 6}), ElementsAre(false, true, false, true));
}

TEST_F(DramTierControlsTest, ExpiredBlocksAreReapedAndNeverDemoted) {
  Make(4, 4);
  Demotions listener;
  tier_->SetEvictionListener(&listener);
  PutWithTtl({0, 1}, 100 * kMilli);
  PutWithTtl({2}, 10'000 * kMilli);
  clock_.Advance(200 * kMilli);
  tier_->ExpireLeases();  // the periodic reaper
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.blocks, 1u);
  EXPECT_EQ(s.used_bytes, kPage);  // the slots are free again
  EXPECT_EQ(s.counters.expirations, 2u);
  EXPECT_THAT(listener.keys, IsEmpty());
  // A block evicted before its TTL runs out takes the time it has left down with it.
  Put({3, 4, 5});
  EXPECT_EQ(TryPut(6), Code::kOk);
  ASSERT_THAT(listener.keys, SizeIs(1));
  EXPECT_EQ(listener.keys[0], Key(2));
  EXPECT_EQ(listener.ttl_left[0], 9'800 * kMilli);
}

TEST_F(DramTierControlsTest, ExpiredBlocksGoFirstWhenSpaceIsNeeded) {
  Make(3, 3);
  Demotions listener;
  tier_->SetEvictionListener(&listener);
  Put({0});
  PutWithTtl({1}, 100 * kMilli);
  Put({2});
  LeaseGrant r = Read({0});  // 0 is the LRU victim otherwise
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  clock_.Advance(200 * kMilli);
  EXPECT_EQ(TryPut(3), Code::kOk);  // takes 1's slot, not LRU's choice
  EXPECT_THAT(listener.keys, IsEmpty());
  EXPECT_THAT(Cached({0, 2, 3}), ElementsAre(true, true, true));
  EXPECT_EQ(tier_->Snapshot().counters.expirations, 1u);
}

TEST_F(DramTierControlsTest, PinnedBlocksDoNotExpireWhilePinned) {
  Make(4, 4);
  PutWithTtl({0, 1}, 100 * kMilli);
  ASSERT_THAT(tier_->SetPinned(kNs, Keys({0}), true), ElementsAre(Code::kOk));
  clock_.Advance(200 * kMilli);
  tier_->ExpireLeases();
  EXPECT_THAT(Cached({0, 1}), ElementsAre(true, false));
  ASSERT_THAT(tier_->SetPinned(kNs, Keys({0}), false), ElementsAre(Code::kOk));
  EXPECT_THAT(Cached({0}), ElementsAre(false));  // its TTL had run out meanwhile
}

TEST_F(DramTierControlsTest, AReaderKeepsTheBytesOfABlockThatExpiresUnderIt) {
  Make(4, 4);
  PutWithTtl({0}, 100 * kMilli);
  LeaseGrant r = Read({0});
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  clock_.Advance(200 * kMilli);
  tier_->ExpireLeases();
  EXPECT_THAT(Cached({0}), ElementsAre(false));
  EXPECT_EQ(tier_->Snapshot().used_bytes, kPage);  // still held for the reader
  EXPECT_TRUE(Holds(0, r.slots[0]));
  auto expired = tier_->Release(kAlice, r.lease_id);
  ASSERT_TRUE(expired.ok());
  EXPECT_FALSE(*expired);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 0u);
}

TEST_F(DramTierControlsTest, ANamespaceAtItsQuotaEvictsOnlyItsOwnBlocks) {
  Make(8, 8);
  ASSERT_TRUE(tier_->AddNamespace(kOther, kPage).ok());
  Demotions listener;
  tier_->SetEvictionListener(&listener);
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {.quota_bytes = 2 * kPage}).ok());
  EXPECT_EQ(TryPut(100, kOther), Code::kOk);
  EXPECT_EQ(TryPut(0), Code::kOk);
  EXPECT_EQ(TryPut(1), Code::kOk);
  EXPECT_EQ(TryPut(2), Code::kOk);  // at the quota: its own coldest (0) goes, and is demoted
  EXPECT_THAT(In({0, 1, 2}, kNs), ElementsAre(false, true, true));
  EXPECT_THAT(In({100}, kOther), ElementsAre(true));
  ASSERT_THAT(listener.keys, SizeIs(1));
  EXPECT_EQ(listener.keys[0], Key(0));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(Ns(s, kNs).quota_bytes, 2 * kPage);
  EXPECT_EQ(Ns(s, kNs).slot_bytes, 2 * kPage);
  EXPECT_EQ(Ns(s, kNs).counters.quota_evictions, 1u);
  EXPECT_EQ(Ns(s, kNs).counters.evictions, 1u);
  EXPECT_EQ(Ns(s, kOther).counters.evictions, 0u);
  // Every block it holds is in use: the put is refused, though the tier has free space.
  LeaseGrant r = Read({1, 2});
  EXPECT_EQ(TryPut(3), Code::kResourceExhausted);
  EXPECT_EQ(TryPut(101, kOther), Code::kOk);
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  EXPECT_EQ(TryPut(3), Code::kOk);
  ExpectInvariants();
}

TEST_F(DramTierControlsTest, ALoweredQuotaTakesEffectAtOnce) {
  Make(8, 8);
  Put({0, 1, 2, 3});
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {.quota_bytes = 2 * kPage + 1}).ok());
  EXPECT_EQ(tier_->Snapshot().blocks, 2u);
  EXPECT_THAT(Cached({0, 1, 2, 3}), ElementsAre(false, false, true, true));  // coldest first
  EXPECT_EQ(tier_->Snapshot().counters.quota_evictions, 2u);
  // Lifting it lets the namespace grow again.
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {}).ok());
  for (uint64_t i = 10; i < 14; ++i) EXPECT_EQ(TryPut(i), Code::kOk);
  EXPECT_EQ(tier_->Snapshot().blocks, 6u);
}

TEST_F(DramTierControlsTest, LowerPriorityNamespacesGiveUpTheirBlocksFirst) {
  Make(4, 4);
  ASSERT_TRUE(tier_->AddNamespace(kOther, kPage).ok());
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {.priority = 10}).ok());
  EXPECT_EQ(TryPut(0), Code::kOk);  // the oldest blocks are kNs's
  EXPECT_EQ(TryPut(1), Code::kOk);
  EXPECT_EQ(TryPut(100, kOther), Code::kOk);
  EXPECT_EQ(TryPut(101, kOther), Code::kOk);
  // Two more for kNs: LRU alone would take 0 and 1; the priorities take kOther's.
  EXPECT_EQ(TryPut(2), Code::kOk);
  EXPECT_EQ(TryPut(3), Code::kOk);
  EXPECT_THAT(In({0, 1, 2, 3}, kNs), Each(true));
  EXPECT_THAT(In({100, 101}, kOther), Each(false));
  EXPECT_EQ(Ns(tier_->Snapshot(), kNs).priority, 10);
  // Within one priority, the policy decides: kNs's own oldest goes next.
  EXPECT_EQ(TryPut(4), Code::kOk);
  EXPECT_THAT(In({0, 1, 2, 3, 4}, kNs), ElementsAre(false, true, true, true, true));
}

// Priorities hold across size classes: a namespace of another block size (or a compressed
// one, spread over several classes) gives up its slabs by priority before age. Slabs of two
// pages: kNs (priority 10) has one-page blocks, kOther (priority 0) two-page ones.
TEST_F(DramTierControlsTest, PrioritiesHoldAcrossSizeClasses) {
  Make(8, 2);
  ASSERT_TRUE(tier_->AddNamespace(kOther, 2 * kPage).ok());
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {.priority = 10}).ok());
  auto put = [&](uint64_t id, NamespaceId ns) {
    clock_.Advance(1'000);  // every block a distinct last use: age alone would be decisive
    std::vector<BlockKey> keys = Keys({id});
    const uint64_t length = ns == kNs ? kPage : 2 * kPage;
    LeaseGrant g = tier_->ReservePut(kBob, ns, keys, std::vector<uint64_t>{length});
    if (g.codes[0] != Code::kOk) return g.codes[0];
    Write(id, g.slots[0]);
    EXPECT_TRUE(tier_->CommitPut(kBob, g.lease_id).ok());
    return g.codes[0];
  };
  for (uint64_t id : {0, 1, 2, 3}) ASSERT_EQ(put(id, kNs), Code::kOk);   // the oldest: kNs's
  for (uint64_t id : {100, 101}) ASSERT_EQ(put(id, kOther), Code::kOk);  // the tier is full
  // kNs needs a slot: its own victim (0) is older than kOther's (100), but kOther ranks lower,
  // so kOther's slab goes; by age alone kNs would have evicted its own block 0.
  EXPECT_EQ(put(4, kNs), Code::kOk);
  EXPECT_THAT(In({0, 1, 2, 3, 4}, kNs), Each(true));
  EXPECT_THAT(In({100, 101}, kOther), ElementsAre(false, true));
  // kOther needs a slot: kNs's blocks are older, but kOther's own block goes, not a slab of
  // the higher priority's.
  EXPECT_EQ(put(102, kOther), Code::kOk);
  EXPECT_THAT(In({0, 1, 2, 3, 4}, kNs), Each(true));
  EXPECT_THAT(In({101, 102}, kOther), ElementsAre(false, true));
  // With equal priorities, age decides across classes again: kNs's oldest slab (0, 1) goes to
  // kOther; block 1 moves to the free slot beside block 4, and only block 0 is lost.
  ASSERT_TRUE(tier_->SetNamespaceLimits(kNs, {.priority = 0}).ok());
  EXPECT_EQ(put(103, kOther), Code::kOk);
  EXPECT_THAT(In({0, 1, 2, 3, 4}, kNs), ElementsAre(false, true, true, true, true));
  EXPECT_THAT(In({102, 103}, kOther), Each(true));
  ExpectInvariants();
}

TEST_F(DramTierControlsTest, BadLimitsAreRefusedAndChangeNothing) {
  Make(4, 4);
  EXPECT_TRUE(absl::IsNotFound(tier_->SetNamespaceLimits(99, {.priority = 1})));
  for (NamespaceId ns = 10; ns < 17; ++ns) {
    ASSERT_TRUE(tier_->AddNamespace(ns, kPage).ok());
    ASSERT_TRUE(tier_->SetNamespaceLimits(ns, {.priority = static_cast<int32_t>(ns)}).ok());
  }
  // 0 plus seven others make eight levels; a ninth is one too many.
  absl::Status s = tier_->SetNamespaceLimits(kNs, {.quota_bytes = kPage, .priority = -5});
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_EQ(Ns(tier_->Snapshot(), kNs).quota_bytes, 0u);
  EXPECT_EQ(Ns(tier_->Snapshot(), kNs).priority, 0);
}

}  // namespace
}  // namespace kvtier::tiers
