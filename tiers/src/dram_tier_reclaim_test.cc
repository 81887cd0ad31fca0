// Slabs moving between size classes: reclaim and one global recency order.
#include <functional>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/policies.h"
#include "tiers/src/dram_tier_test_fixture.h"

namespace kvtier::tiers {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;

TEST_F(DramTierTest, ClassesReclaimSlabsFromEachOther) {
  Make(8, 4);  // two slabs of four pages
  constexpr NamespaceId kBig = 2;
  ASSERT_TRUE(tier_->AddNamespace(kBig, 2 * kPage).ok());
  Put({0, 1, 2, 3, 4, 5, 6, 7});  // both slabs full of one-page blocks
  // Keys 4..7 sit in the second slab; pin one of them so the first slab is the one to go.
  LeaseGrant pin = Read({5});
  Put({100}, kBig, 2 * kPage);
  EXPECT_THAT(Cached({0, 1, 2, 3}), Each(false));
  EXPECT_THAT(Cached({4, 5, 6, 7}), Each(true));
  EXPECT_THAT(Cached({100}, kBig), ElementsAre(true));
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.counters.evictions, 4u);
  EXPECT_EQ(s.used_bytes, 6 * kPage);
  // The big class now has a slab of its own and evicts within it.
  Put({101}, kBig, 2 * kPage);
  Put({102}, kBig, 2 * kPage);
  EXPECT_THAT(Cached({100, 101, 102}, kBig), ElementsAre(false, true, true));
  EXPECT_THAT(Cached({4, 5, 6, 7}), Each(true));
  // A one-page block now evicts within its own class, skipping the pinned key 5.
  Put({8});
  EXPECT_THAT(Cached({4, 5, 6, 7, 8}), ElementsAre(false, true, true, true, true));
  ExpectInvariants();
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
}

TEST_F(DramTierTest, ReclaimFailsWhenEverySlabHoldsAPin) {
  Make(8, 4);
  constexpr NamespaceId kBig = 2;
  ASSERT_TRUE(tier_->AddNamespace(kBig, 2 * kPage).ok());
  Put({0, 1, 2, 3, 4, 5, 6, 7});
  LeaseGrant pin = Read({0, 7});
  std::vector<uint64_t> sizes = {2 * kPage};
  EXPECT_THAT(tier_->ReservePut(kAlice, kBig, Keys({100}), sizes).codes,
              ElementsAre(Code::kResourceExhausted));
  EXPECT_EQ(tier_->Snapshot().counters.evictions, 0u);  // nothing lost for nothing
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
  Put({100}, kBig, 2 * kPage);
}

// Slab calcification: a namespace that filled the arena first must not keep its slabs forever.
// 64 pages in slabs of 8: 8 slabs of eight one-page blocks, or of two four-page blocks.
class DramTierGlobalLruTest : public DramTierTest {
 protected:
  static constexpr NamespaceId kBig = 2;
  static constexpr uint64_t kBigBytes = 4 * kPage;

  void SetUp() override {
    Make(64, 8);
    ASSERT_TRUE(tier_->AddNamespace(kBig, kBigBytes).ok());
  }

  // Puts each key on its own, the clock one tick later each time; checks the capacity bound.
  void PutEach(uint64_t first, uint64_t count, NamespaceId ns) {
    for (uint64_t k = first; k < first + count; ++k) {
      clock_.Advance(1);
      Put({k}, ns, ns == kBig ? kBigBytes : kPage);
      ASSERT_LE(tier_->Snapshot().used_bytes, 64 * kPage);
    }
  }

  // Reads and releases each key (a use), one tick apart.
  void Touch(uint64_t first, uint64_t count) {
    for (uint64_t k = first; k < first + count; ++k) {
      clock_.Advance(1);
      LeaseGrant r = Read({k});
      ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
      ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
    }
  }

  NamespaceSnapshot Ns(NamespaceId id) {
    for (const NamespaceSnapshot& ns : tier_->Snapshot().namespaces) {
      if (ns.namespace_id == id) return ns;
    }
    return {};
  }

  size_t CountCached(uint64_t first, uint64_t count, NamespaceId ns) {
    size_t n = 0;
    for (uint64_t k = first; k < first + count; ++k) {
      BlockKey key = Key(k);
      n += tier_->LookupPrefix(ns, {&key, 1});
    }
    return n;
  }
};

TEST_F(DramTierGlobalLruTest, ANewBlockSizeTakesTheSlabsOfAnIdleOne) {
  PutEach(0, 64, kNs);  // the arena is full of one-page blocks, never read again
  PutEach(1000, 40, kBig);
  // Every slab moved to the four-page class: 16 blocks, the 16 most recent.
  EXPECT_EQ(Ns(kBig).blocks, 16u);
  EXPECT_EQ(Ns(kBig).used_bytes, 64 * kPage);
  EXPECT_EQ(Ns(kNs).blocks, 0u);
  std::vector<BlockKey> recent;
  for (uint64_t k = 1024; k < 1040; ++k) recent.push_back(Key(k));
  LeaseGrant r = tier_->AcquireRead(kAlice, kBig, recent);
  EXPECT_THAT(r.codes, Each(Code::kOk));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  EXPECT_EQ(CountCached(1000, 24, kBig), 0u);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.namespaces[0].counters.evictions, 64u);  // every small block, counted
  EXPECT_EQ(s.namespaces[1].counters.evictions, 24u);
  EXPECT_EQ(s.counters.evictions, 88u);
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, OnlyBlocksOlderThanTheOtherClassesVictimGo) {
  PutEach(0, 64, kNs);  // slab i holds keys 8i..8i+7, slab by slab in time
  // Slab 0 goes because the class had none, slabs 1 and 2 because their blocks are older than
  // the big class's.
  PutEach(1000, 6, kBig);
  EXPECT_EQ(CountCached(0, 24, kNs), 0u);
  EXPECT_EQ(CountCached(24, 40, kNs), 40u);
  // Keys 56..63 (slab 7) are used again, after every big block so far.
  Touch(56, 8);
  PutEach(1006, 10, kBig);
  // Slabs 3..6 went (older than every big block); then the big class's own oldest block was
  // older than slab 7's oldest one, so the big class evicted within itself.
  EXPECT_EQ(CountCached(0, 56, kNs), 0u);
  EXPECT_EQ(CountCached(56, 8, kNs), 8u);
  EXPECT_EQ(Ns(kBig).blocks, 14u);
  EXPECT_EQ(CountCached(1002, 14, kBig), 14u);
  EXPECT_EQ(CountCached(1000, 2, kBig), 0u);
  EXPECT_EQ(tier_->Snapshot().counters.evictions, 56u + 2);
  ExpectInvariants();
  // The big blocks are unused from here on; new small blocks take their slabs back as they age.
  PutEach(2000, 64, kNs);
  EXPECT_EQ(CountCached(2000, 64, kNs), 64u);
  EXPECT_EQ(Ns(kBig).blocks, 0u);
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, AYoungBlockInAReclaimedSlabMovesInsteadOfGoing) {
  PutEach(0, 64, kNs);     // slab i holds keys 8i..8i+7, slab by slab in time
  PutEach(1000, 2, kBig);  // the big class takes slab 0 (it had none) and fills it
  EXPECT_EQ(CountCached(0, 8, kNs), 0u);
  Touch(12, 1);  // key 12, in slab 1, is now the newest small block
  // The next big block's own victim (1000) is newer than the small class's (key 8): slab 1 goes
  // to the big class. Its keys but 12 are older than block 1000 and go; key 12 is newer and
  // moves to the slot the small class's next victim (key 16, slab 2) leaves.
  PutEach(1002, 1, kBig);
  EXPECT_EQ(Ns(kBig).blocks, 3u);
  EXPECT_THAT(Cached({8, 9, 10, 11, 13, 14, 15, 16}), Each(false));
  EXPECT_THAT(Cached({12, 17, 63}), Each(true));
  LeaseGrant r = Read({12});
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  EXPECT_TRUE(Holds(12, r.slots[0])) << "the moved block lost its bytes";
  EXPECT_GE(r.slots[0].offset, 16 * kPage) << "key 12 is still in slab 1";
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  const TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.blocks_moved, 1u);
  EXPECT_EQ(s.slab_reclaims, 2u);
  EXPECT_EQ(s.counters.evictions, 8u + 7 + 1);  // slab 0, slab 1 but key 12, key 16
  ExpectInvariants();
}

// A reclaim copies without the tier's lock (dram_tier_impl.h). These run the scenario above with
// the tier doing something to the moving block (key 12) while its copy is in flight.
class DramTierReclaimCopyTest : public DramTierGlobalLruTest {
 protected:
  void SetUp() override {
    Make(64, 8, nullptr, [this] {
      if (during_copy_ && !ran_) {
        ran_ = true;
        during_copy_();
      }
    });
    ASSERT_TRUE(tier_->AddNamespace(kBig, kBigBytes).ok());
    PutEach(0, 64, kNs);
    PutEach(1000, 2, kBig);  // slab 0 goes to the big class: nothing in it is newer, no copy
    Touch(12, 1);
  }
  std::function<void()> during_copy_;
  bool ran_ = false;
};

TEST_F(DramTierReclaimCopyTest, AGetThatPinsAMovingBlockKeepsItWhereItIs) {
  LeaseGrant pin;
  during_copy_ = [&] { pin = Read({12}); };
  PutEach(1002, 1, kBig);
  ASSERT_TRUE(ran_);
  ASSERT_THAT(pin.codes, ElementsAre(Code::kOk));
  // The put still got its slot (another slab went instead), and key 12 never left its place
  // while the get held it.
  EXPECT_THAT(Cached({1002}, kBig), ElementsAre(true));
  EXPECT_THAT(Cached({12}), ElementsAre(true));
  EXPECT_TRUE(Holds(12, pin.slots[0]));
  EXPECT_EQ(tier_->SlotGeneration(pin.slots[0].offset), pin.slots[0].generation);
  // The reclaim that met the pin failed, and another slab went instead.
  EXPECT_EQ(tier_->Snapshot().slab_reclaims, 3u);
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
  LeaseGrant r = Read({12});
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  EXPECT_TRUE(Holds(12, r.slots[0]));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  ExpectInvariants();
}

TEST_F(DramTierReclaimCopyTest, ABlockRemovedWhileMovingIsGoneAndItsSlotsFree) {
  during_copy_ = [&] { EXPECT_THAT(tier_->Remove(kNs, Keys({12})), ElementsAre(Code::kOk)); };
  PutEach(1002, 1, kBig);
  ASSERT_TRUE(ran_);
  EXPECT_THAT(Cached({1002}, kBig), ElementsAre(true));
  EXPECT_THAT(Cached({12}), ElementsAre(false));
  EXPECT_EQ(tier_->Snapshot().blocks_moved, 0u);
  ExpectInvariants();
  // Every slot is accounted for: the arena fills up again exactly.
  PutEach(2000, 64, kNs);
  EXPECT_EQ(tier_->Snapshot().used_bytes, 64 * kPage);
  ExpectInvariants();
}

TEST_F(DramTierReclaimCopyTest, PutsAndGetsGoOnWhileACopyIsInFlight) {
  during_copy_ = [&] {
    // A put of the small class evicts within its class (no second reclaim starts), and a get
    // of another block is served.
    Put({500});
    LeaseGrant r = Read({63});
    EXPECT_THAT(r.codes, ElementsAre(Code::kOk));
    EXPECT_TRUE(Holds(63, r.slots[0]));
    EXPECT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  };
  PutEach(1002, 1, kBig);
  ASSERT_TRUE(ran_);
  EXPECT_THAT(Cached({1002}, kBig), ElementsAre(true));
  EXPECT_THAT(Cached({12, 500, 63}), Each(true));
  EXPECT_EQ(tier_->Snapshot().blocks_moved, 1u);
  LeaseGrant r = Read({12, 500});
  ASSERT_THAT(r.codes, Each(Code::kOk));
  EXPECT_TRUE(Holds(12, r.slots[0])) << "the moved block lost its bytes";
  EXPECT_TRUE(Holds(500, r.slots[1]));
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, AReclaimMovesOnlyAsFarAsOlderBlocksLast) {
  PutEach(0, 64, kNs);
  PutEach(1000, 2, kBig);  // slab 0 to the big class
  Touch(8, 56);            // every small block newer than both big blocks, key 8 the oldest of them
  // Now the big class's own victim (1000) is older than every small block: no reclaim.
  PutEach(1002, 1, kBig);
  EXPECT_EQ(Ns(kBig).blocks, 2u);
  EXPECT_EQ(CountCached(8, 56, kNs), 56u);
  EXPECT_EQ(tier_->Snapshot().blocks_moved, 0u);
  ExpectInvariants();
}

TEST_F(DramTierTest, AProtectedBlockOutlivesNewerProbationBlocksOfItsClass) {
  // prefix-slru: a block read once is protected; across size classes the tier ranks by the
  // policy's segment before the last use, so a reclaimed slab's protected block is kept at
  // the price of probation blocks, even newer ones.
  auto policy = NewPolicy("prefix-slru");
  ASSERT_TRUE(policy.ok()) << policy.status();
  Make(8, 2, std::move(*policy));
  constexpr NamespaceId kBig = 2;
  ASSERT_TRUE(tier_->AddNamespace(kBig, 2 * kPage).ok());
  for (uint64_t k : {0, 1}) {  // slab A; one put each, so no prefix links
    clock_.Advance(1);
    Put({k});
  }
  clock_.Advance(1);
  LeaseGrant use = Read({0});  // block 0 is protected now, its last use older than 2..7's
  ASSERT_TRUE(tier_->Release(kAlice, use.lease_id).ok());
  for (uint64_t k = 2; k < 8; ++k) {  // slabs B, C, D, all on probation
    clock_.Advance(1);
    Put({k});
  }
  // Pin one block of B, C and D, so that slab A is the one the big class can take.
  LeaseGrant pins = Read({3, 5, 7});
  ASSERT_THAT(pins.codes, Each(Code::kOk));
  clock_.Advance(1);
  Put({100}, kBig, 2 * kPage);
  // Block 0 moved to slab B; probation's oldest, 1 (in A) and 2 (in B), paid for it. By last
  // use alone block 2 is newer than block 0 and 0 would have gone.
  EXPECT_THAT(Cached({0, 1, 2, 3, 4, 5, 6, 7}),
              ElementsAre(true, false, false, true, true, true, true, true));
  EXPECT_THAT(Cached({100}, kBig), ElementsAre(true));
  LeaseGrant r = Read({0});
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  EXPECT_TRUE(Holds(0, r.slots[0]));
  EXPECT_EQ(tier_->Snapshot().blocks_moved, 1u);
  ASSERT_TRUE(tier_->Release(kAlice, r.lease_id).ok());
  ASSERT_TRUE(tier_->Release(kAlice, pins.lease_id).ok());
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, ReclaimNeverTakesAPinnedBlock) {
  PutEach(0, 64, kNs);
  // Pin one block in slab 0 and one in slab 1 (a read also makes them recent).
  LeaseGrant pin = Read({0, 9});
  ASSERT_THAT(pin.codes, Each(Code::kOk));
  PutEach(1000, 30, kBig);
  // Slabs 2..7 went to the big class; slabs 0 and 1 hold pins and stay with the small class.
  // Their other blocks were its oldest, so they made room for the newest of the slabs that
  // went: the pinned keys 0 and 9 and the 14 newest small blocks are left.
  EXPECT_EQ(Ns(kBig).blocks, 12u);
  EXPECT_EQ(CountCached(0, 16, kNs), 2u);
  EXPECT_THAT(Cached({0, 9}), Each(true));
  EXPECT_EQ(CountCached(16, 34, kNs), 0u);
  EXPECT_EQ(CountCached(50, 14, kNs), 14u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(Holds(i == 0 ? 0 : 9, pin.slots[i]));
    EXPECT_EQ(tier_->SlotGeneration(pin.slots[i].offset), pin.slots[i].generation);
  }
  ExpectInvariants();
  ASSERT_TRUE(tier_->Release(kAlice, pin.lease_id).ok());
  // Unpinned, their slabs age out like the others.
  PutEach(1030, 4, kBig);
  EXPECT_EQ(Ns(kBig).blocks, 16u);
  EXPECT_EQ(Ns(kNs).blocks, 0u);
  ExpectInvariants();
}

TEST_F(DramTierGlobalLruTest, ATiedAgeStaysWithinTheClass) {
  // With the clock standing still, nothing is older than anything: the old per-class rule.
  Put({0, 1, 2, 3, 4, 5, 6, 7});
  for (uint64_t k = 8; k < 64; k += 8) {
    Put({k, k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7});
  }
  Put({1000}, kBig, kBigBytes);  // no slab: takes one
  Put({1001}, kBig, kBigBytes);
  Put({1002}, kBig, kBigBytes);  // full slab, tie: evicts its own
  EXPECT_EQ(Ns(kBig).blocks, 2u);
  EXPECT_EQ(Ns(kNs).blocks, 56u);
}

// ReclaimAhead: a class that keeps taking slabs gets its next one before a put needs it.
TEST_F(DramTierGlobalLruTest, AGrowingClassGetsItsNextSlabAhead) {
  using Ahead = DramTier::AheadResult;
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kIdle);  // nothing has needed a slab yet
  PutEach(0, 64, kNs);                             // full of old one-page blocks
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kIdle);
  PutEach(1000, 1, kBig);  // the put reclaims a slab itself: the cue
  EXPECT_EQ(tier_->Snapshot().slab_reclaims, 1u);
  // One of its two slots is free: not yet.
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kWaiting);
  EXPECT_EQ(tier_->Snapshot().slab_reclaims, 1u);
  PutEach(1001, 1, kBig);  // the slab is full
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kReclaimed);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.slab_reclaims, 2u);
  EXPECT_EQ(s.slab_reclaims_ahead, 1u);
  EXPECT_EQ(Ns(kNs).blocks, 48u);  // a slab's worth of the oldest small blocks went
  EXPECT_EQ(CountCached(0, 16, kNs), 0u);
  // A slab is free now: nothing more is due, and the next two puts reclaim nothing.
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kWaiting);
  PutEach(1002, 2, kBig);
  s = tier_->Snapshot();
  EXPECT_EQ(s.slab_reclaims, 2u);
  EXPECT_EQ(s.counters.evictions, 16u);
  EXPECT_EQ(CountCached(1000, 4, kBig), 4u);
  // Both slabs full again: the next one is taken ahead too.
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kReclaimed);
  EXPECT_EQ(tier_->Snapshot().slab_reclaims_ahead, 2u);
  ExpectInvariants();
  // A second later without a put needing a slab, the class is no longer growing.
  clock_.Advance(DramTier::kReclaimDemandWindowNs);
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kIdle);
}

TEST_F(DramTierGlobalLruTest, NothingIsTakenAheadWhenTheClassOwnVictimIsOldest) {
  using Ahead = DramTier::AheadResult;
  PutEach(0, 64, kNs);
  PutEach(1000, 2, kBig);  // a slab reclaimed by the first put, and full
  Touch(8, 56);            // every small block left is now newer than the big ones
  const uint64_t reclaims = tier_->Snapshot().slab_reclaims;
  EXPECT_EQ(tier_->ReclaimAhead(), Ahead::kWaiting);
  EXPECT_EQ(tier_->Snapshot().slab_reclaims, reclaims);
  EXPECT_EQ(Ns(kNs).blocks, 56u);
  // And the put that follows evicts within its class, as it would have anyway.
  PutEach(1002, 1, kBig);
  EXPECT_EQ(tier_->Snapshot().slab_reclaims, reclaims);
  EXPECT_EQ(CountCached(1000, 3, kBig), 2u);
}

TEST_F(DramTierTest, ReclaimWithMixedSlabSizesKeepsPinsAndCapacity) {
  // Slabs of 8 pages: one-page blocks get 8-page slabs, three-page blocks 6-page slabs, five-page
  // blocks 5-page slabs, so a freed slab does not always fit another class's slab and runs of
  // adjacent slabs are needed. Every pinned block must keep its bytes and generation.
  Make(64, 8);
  const std::vector<std::pair<NamespaceId, uint64_t>> spaces = {
      {kNs, kPage}, {2, 3 * kPage}, {3, 5 * kPage}};
  for (auto [ns, bytes] : spaces) ASSERT_TRUE(tier_->AddNamespace(ns, bytes).ok());
  struct Pin {
    LeaseId lease;
    NamespaceId ns;
    uint64_t key;
    SlotRef slot;
  };
  std::vector<Pin> pins;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 4000; ++step) {
    clock_.Advance(1 + rng() % 3);
    // Later namespaces get busier over time, so slabs must move.
    const size_t which = std::min<size_t>(2, (rng() % 4 + step / 1500) % 3);
    const auto [ns, bytes] = spaces[which];
    const uint64_t key = rng() % 64;
    BlockKey k = Key(key);
    if (rng() % 3 == 0) {
      LeaseGrant g = tier_->AcquireRead(kAlice, ns, {&k, 1});
      if (g.lease_id != 0) {
        if (rng() % 4 == 0 && pins.size() < 4) {
          pins.push_back({g.lease_id, ns, key, g.slots[0]});
        } else {
          ASSERT_TRUE(tier_->Release(kAlice, g.lease_id).ok());
        }
      }
    } else {
      const uint64_t length = bytes;
      LeaseGrant g = tier_->ReservePut(kAlice, ns, {&k, 1}, {&length, 1});
      if (g.lease_id != 0) {
        std::byte* p = tier_->arena_base() + g.slots[0].offset;
        for (uint64_t i = 0; i < length; ++i) p[i] = Pattern(key * 7 + ns, i);
        ASSERT_TRUE(tier_->CommitPut(kAlice, g.lease_id).ok());
      }
    }
    if (!pins.empty() && rng() % 8 == 0) {
      const size_t i = rng() % pins.size();
      ASSERT_TRUE(tier_->Release(kAlice, pins[i].lease).ok());
      pins.erase(pins.begin() + i);
    }
    for (const Pin& pin : pins) {
      const std::byte* p = tier_->arena_base() + pin.slot.offset;
      for (uint64_t i = 0; i < pin.slot.length; ++i) {
        ASSERT_EQ(p[i], Pattern(pin.key * 7 + pin.ns, i)) << "step " << step;
      }
      ASSERT_EQ(tier_->SlotGeneration(pin.slot.offset), pin.slot.generation);
    }
    TierSnapshot s = tier_->Snapshot();
    ASSERT_LE(s.used_bytes, s.capacity_bytes);
    uint64_t stored = 0;
    for (const NamespaceSnapshot& ns : s.namespaces) stored += ns.used_bytes;
    ASSERT_LE(stored, s.used_bytes);
    ExpectInvariants();
  }
  // The busiest namespace at the end holds a good share of the arena.
  TierSnapshot s = tier_->Snapshot();
  EXPECT_GE(s.namespaces[2].used_bytes, 20 * kPage);
  for (const Pin& pin : pins) ASSERT_TRUE(tier_->Release(kAlice, pin.lease).ok());
}

TEST_F(DramTierTest, BlocksLargerThanASlabGetDedicatedSlabs) {
  Make(16, 4);
  constexpr NamespaceId kHuge = 3;
  ASSERT_TRUE(tier_->AddNamespace(kHuge, 5 * kPage + 1).ok());  // 6 pages per slot
  Put({1}, kHuge, 5 * kPage + 1);
  Put({2}, kHuge, 5 * kPage + 1);
  TierSnapshot s = tier_->Snapshot();
  EXPECT_EQ(s.used_bytes, 12 * kPage);
  Put({3}, kHuge, 5 * kPage + 1);  // 4 pages left: the coldest huge block goes
  EXPECT_THAT(Cached({1, 2, 3}, kHuge), ElementsAre(false, true, true));
  // One-page blocks still fit in the remaining 4 pages.
  Put({10, 11, 12, 13});
  EXPECT_THAT(Cached({2, 3}, kHuge), Each(true));
  LeaseGrant r = tier_->AcquireRead(kAlice, kHuge, Keys({2}));
  ASSERT_THAT(r.codes, ElementsAre(Code::kOk));
  EXPECT_EQ(r.slots[0].length, 5 * kPage + 1);
  EXPECT_TRUE(Holds(2, r.slots[0]));
  ExpectInvariants();
}

}  // namespace
}  // namespace kvtier::tiers
