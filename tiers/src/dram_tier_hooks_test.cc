// The DRAM tier's hooks for the tiers below it: eviction listener, persisted flag, put-lease
// blocks, Present/ListBlocks, commit lengths, ExtendRead, pins.
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/tiers/dram_tier.h"
#include "tiers/src/dram_tier_test_fixture.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::SizeIs;

class RecordingListener : public EvictionListener {
 public:
  struct Seen {
    NamespaceId ns;
    BlockKey key;
    std::vector<std::byte> bytes;
    uint32_t hits;
    bool persisted;
  };
  void OnEvict(const EvictedBlock& b) override {
    seen.push_back({b.ns, b.key, {b.bytes.begin(), b.bytes.end()}, b.hits, b.persisted});
  }
  std::vector<Seen> seen;
};

TEST_F(DramTierTest, EvictionListenerSeesEvictedBytesHitsAndPersistedFlag) {
  Make(2, 2);
  RecordingListener listener;
  tier_->SetEvictionListener(&listener);
  Put({0});
  // Block 1 arrives flagged as persisted (a promotion from a lower tier).
  {
    std::vector<BlockKey> keys = Keys({1});
    std::vector<uint64_t> lengths = {kPage};
    LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths, {.persisted = true});
    ASSERT_THAT(g.codes, ElementsAre(Code::kOk));
    Write(1, g.slots[0]);
    ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  }
  for (int i = 0; i < 3; ++i) {
    LeaseGrant r = Read({0});
    ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  }
  // LRU: 1 is older than 0 (read since), so 1 goes first, then 0.
  Put({2});
  Put({3});
  ASSERT_THAT(listener.seen, SizeIs(2));
  EXPECT_EQ(listener.seen[0].key, Key(1));
  EXPECT_TRUE(listener.seen[0].persisted);
  EXPECT_EQ(listener.seen[0].hits, 0u);
  EXPECT_EQ(listener.seen[1].key, Key(0));
  EXPECT_FALSE(listener.seen[1].persisted);
  EXPECT_EQ(listener.seen[1].hits, 3u);
  EXPECT_EQ(listener.seen[1].ns, kNs);
  ASSERT_THAT(listener.seen[1].bytes, SizeIs(kPage));
  for (uint64_t i = 0; i < kPage; ++i) ASSERT_EQ(listener.seen[1].bytes[i], Pattern(0, i));
  // Remove is not an eviction.
  EXPECT_THAT(tier_->Remove(kNs, Keys({2})), ElementsAre(Code::kOk));
  EXPECT_THAT(listener.seen, SizeIs(2));
  tier_->SetEvictionListener(nullptr);
}

TEST_F(DramTierTest, CommitPutCanMarkBlocksPersisted) {
  Make(2, 2);
  RecordingListener listener;
  tier_->SetEvictionListener(&listener);
  std::vector<BlockKey> keys = Keys({7});
  std::vector<uint64_t> lengths = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, ElementsAre(Code::kOk));
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id, {.persisted = true}).ok());
  Put({8});
  Put({9});
  ASSERT_THAT(listener.seen, SizeIs(1));
  EXPECT_TRUE(listener.seen[0].persisted);
  tier_->SetEvictionListener(nullptr);
}

TEST_F(DramTierTest, PutLeaseBlocksPresentAndListBlocks) {
  Make(8, 8);
  std::vector<BlockKey> keys = Keys({1, 2});
  std::vector<uint64_t> lengths = {kPage, 100};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  auto blocks = tier_->GetPutLeaseBlocks(kAlice, g.lease_id);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ(blocks->ns, kNs);
  EXPECT_THAT(blocks->keys, ElementsAre(Key(1), Key(2)));
  ASSERT_THAT(blocks->slots, SizeIs(2));
  EXPECT_EQ(blocks->slots[0].offset, g.slots[0].offset);
  EXPECT_EQ(blocks->slots[1].length, 100u);
  Write(1, blocks->slots[0]);
  Write(2, blocks->slots[1]);
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kBob, g.lease_id).status().code(), Code::kNotFound);
  // Reserved but not committed: not present.
  EXPECT_THAT(tier_->Present(kNs, keys), ElementsAre(false, false));
  ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kAlice, g.lease_id).status().code(), Code::kNotFound);
  EXPECT_THAT(tier_->Present(kNs, Keys({1, 3, 2})), ElementsAre(true, false, true));
  EXPECT_THAT(tier_->Present(kNs + 7, keys), ElementsAre(false, false));

  clock_.Advance(10);
  Put({3});
  clock_.Advance(10);
  LeaseGrant r = Read({1});
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  // Most recently used first: 1 (read last), 3, 2.
  std::vector<BlockListing> list = tier_->ListBlocks();
  ASSERT_THAT(list, SizeIs(3));
  EXPECT_EQ(list[0].key, Key(1));
  EXPECT_EQ(list[0].hits, 1u);
  EXPECT_EQ(list[1].key, Key(3));
  EXPECT_EQ(list[2].key, Key(2));
  EXPECT_EQ(list[2].length, 100u);
  EXPECT_TRUE(Holds(1, SlotRef{list[0].offset, list[0].length, 0}));
}

TEST_F(DramTierTest, CommitCanShortenTheReservedLengths) {
  Make(4, 4);
  std::vector<BlockKey> keys = Keys({1, 2});
  std::vector<uint64_t> lengths = {kPage, kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  ASSERT_THAT(g.codes, Each(Code::kOk));
  const std::vector<uint64_t> too_long = {kPage, kPage + 1};
  auto bad = tier_->CommitPut(kAlice, g.lease_id, {.lengths = too_long});
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(*bad, Each(Code::kInvalidArgument));
  const std::vector<uint64_t> zero = {0, 5};
  EXPECT_THAT(*tier_->CommitPut(kAlice, g.lease_id, {.lengths = zero}),
              Each(Code::kInvalidArgument));
  // The lease is still open after a refused commit.
  const std::vector<uint64_t> final_lengths = {10, kPage};
  auto ok = tier_->CommitPut(kAlice, g.lease_id, {.lengths = final_lengths});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(*ok, Each(Code::kOk));
  LeaseGrant r = Read({1, 2});
  EXPECT_EQ(r.slots[0].length, 10u);
  EXPECT_EQ(r.slots[1].length, kPage);
  EXPECT_EQ(tier_->Snapshot().namespaces[0].used_bytes, 10 + kPage);
}

TEST_F(DramTierTest, ExtendReadTurnsAGetsMissesIntoHitsUnderItsLease) {
  Make(4, 4);
  Put({0});
  LeaseGrant r = Read({0, 1, 2});  // 1 and 2 miss
  ASSERT_NE(r.lease_id, 0u);
  Put({1});
  LeaseGrant more = tier_->ExtendRead(kAlice, r.lease_id, kNs, Keys({1, 2}));
  EXPECT_EQ(more.lease_id, r.lease_id);
  EXPECT_THAT(more.codes, ElementsAre(Code::kOk, Code::kNotFound));
  EXPECT_TRUE(Holds(1, more.slots[0]));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.hits, 2u);
  EXPECT_EQ(s.counters.misses, 1u);  // hits + misses == keys asked for
  // Both blocks are pinned by the one lease: a full tier cannot evict them.
  Put({2, 3});
  LeaseGrant g = tier_->ReservePut(kBob, kNs, Keys({4, 5}), std::vector<uint64_t>{kPage, kPage});
  EXPECT_THAT(g.codes, ElementsAre(Code::kOk, Code::kOk));
  EXPECT_THAT(Cached({0, 1}), ElementsAre(true, true));
  ASSERT_TRUE(tier_->Release(kBob, g.lease_id).ok());
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  // Another owner's lease, or a lease that is gone: nothing.
  EXPECT_THAT(tier_->ExtendRead(kBob, r.lease_id, kNs, Keys({0})).codes,
              ElementsAre(Code::kNotFound));
  // No lease yet: a new one.
  LeaseGrant fresh = tier_->ExtendRead(kBob, 0, kNs, Keys({0}));
  EXPECT_NE(fresh.lease_id, 0u);
  EXPECT_THAT(fresh.codes, ElementsAre(Code::kOk));
  EXPECT_TRUE(tier_->Release(kBob, fresh.lease_id).ok());
}

TEST_F(DramTierTest, CommitCanHandTheBlocksToAReadLeaseBeforeAnyEviction) {
  Make(3, 3);
  Put({0});
  LeaseGrant r = Read({0, 1, 2});  // a get: 1 and 2 miss, then are promoted from NVMe
  ASSERT_NE(r.lease_id, 0u);
  LeaseGrant p = tier_->ReservePut(kBob, kNs, Keys({1, 2}), std::vector<uint64_t>{kPage, kPage});
  ASSERT_THAT(p.codes, Each(Code::kOk));
  Write(1, p.slots[0]);
  Write(2, p.slots[1]);
  ReadHandoff handoff{.owner = kAlice, .lease = r.lease_id};
  auto codes = tier_->CommitPut(kBob, p.lease_id, {.read = &handoff});
  ASSERT_TRUE(codes.ok()) << codes.status();
  EXPECT_THAT(*codes, Each(Code::kOk));
  EXPECT_EQ(handoff.lease, r.lease_id);
  ASSERT_EQ(handoff.slots.size(), 2u);
  EXPECT_TRUE(Holds(1, handoff.slots[0]));
  EXPECT_TRUE(Holds(2, handoff.slots[1]));
  EXPECT_EQ(tier_->Snapshot().counters.hits, 3u);  // the get's misses became hits
  EXPECT_EQ(tier_->Snapshot().counters.misses, 0u);
  // The tier is full and every block is pinned by the get: nothing can be evicted.
  LeaseGrant g = tier_->ReservePut(kBob, kNs, Keys({3}), std::vector<uint64_t>{kPage});
  EXPECT_THAT(g.codes, ElementsAre(Code::kResourceExhausted));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  EXPECT_THAT(tier_->ReservePut(kBob, kNs, Keys({3}), std::vector<uint64_t>{kPage}).codes,
              ElementsAre(Code::kOk));

  // No read lease yet: a new one holds them.
  Make(3, 3);
  LeaseGrant q = tier_->ReservePut(kBob, kNs, Keys({5}), std::vector<uint64_t>{kPage});
  ReadHandoff fresh{.owner = kAlice};
  ASSERT_TRUE(tier_->CommitPut(kBob, q.lease_id, {.read = &fresh}).ok());
  EXPECT_NE(fresh.lease, 0u);
  EXPECT_EQ(fresh.slots.size(), 1u);
  EXPECT_TRUE(tier_->Release(kAlice, fresh.lease).ok());

  // Another owner's read lease cannot take them: committed, unpinned, lease unchanged.
  LeaseGrant mine = Read({5});
  LeaseGrant s = tier_->ReservePut(kBob, kNs, Keys({6}), std::vector<uint64_t>{kPage});
  ReadHandoff foreign{.owner = kBob, .lease = mine.lease_id};
  ASSERT_TRUE(tier_->CommitPut(kBob, s.lease_id, {.read = &foreign}).ok());
  EXPECT_TRUE(foreign.slots.empty());
  EXPECT_EQ(foreign.lease, mine.lease_id);
  EXPECT_THAT(Cached({6}), ElementsAre(true));
}

TEST_F(DramTierTest, PinnedBlocksAreNeverEvictedUntilUnpinned) {
  Make(3, 3);
  Put({0, 1, 2});
  EXPECT_THAT(tier_->SetPinned(kNs, Keys({0, 1, 9}), true),
              ElementsAre(Code::kOk, Code::kOk, Code::kNotFound));
  EXPECT_THAT(tier_->SetPinned(kNs, Keys({0}), true), ElementsAre(Code::kOk));  // idempotent
  EXPECT_EQ(tier_->Snapshot().namespaces[0].pinned_blocks, 2u);
  // LRU would take 0 first; the pins leave only 2, then each new block, to evict.
  for (uint64_t k = 3; k < 8; ++k) Put({k});
  EXPECT_THAT(Cached({0, 1, 7}), ElementsAre(true, true, true));
  // Everything pinned: a put gets ResourceExhausted instead of taking a pinned block.
  ASSERT_THAT(tier_->SetPinned(kNs, Keys({7}), true), ElementsAre(Code::kOk));
  LeaseGrant full = tier_->ReservePut(kAlice, kNs, Keys({8}), std::vector<uint64_t>{kPage});
  EXPECT_THAT(full.codes, ElementsAre(Code::kResourceExhausted));
  // Unpinned, 0 is evictable again; one unpin undoes any number of pins.
  ASSERT_THAT(tier_->SetPinned(kNs, Keys({0}), false), ElementsAre(Code::kOk));
  Put({8});
  EXPECT_THAT(Cached({0, 1, 7, 8}), ElementsAre(false, true, true, true));
  // Remove takes a pinned block and its pin with it.
  EXPECT_THAT(tier_->Remove(kNs, Keys({1})), ElementsAre(Code::kOk));
  EXPECT_EQ(tier_->Snapshot().namespaces[0].pinned_blocks, 1u);
  ExpectInvariants();
}

TEST_F(DramTierTest, PutLeaseBlocksOfAnExpiredLeaseIsDeadlineExceeded) {
  Make(4, 4);
  std::vector<BlockKey> keys = Keys({1});
  std::vector<uint64_t> lengths = {kPage};
  LeaseGrant g = tier_->ReservePut(kAlice, kNs, keys, lengths);
  clock_.Advance(kTimeout);
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kAlice, g.lease_id).status().code(), Code::kDeadlineExceeded);
  LeaseGrant r = tier_->AcquireRead(kAlice, kNs, keys);
  EXPECT_EQ(tier_->GetPutLeaseBlocks(kAlice, r.lease_id).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace kvtier::tiers
