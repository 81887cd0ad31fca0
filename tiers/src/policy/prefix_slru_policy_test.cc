// prefix-slru's own promises: leaf-first eviction whatever the touch order, parents of pinned
// blocks kept, orphans evicted first, reused blocks surviving a wave of one-off blocks, and
// blocks back from the ghost starting protected.
#include <set>

#include "gtest/gtest.h"
#include "kvtier/tiers/policies.h"

namespace kvtier::tiers {
namespace {

auto Any() {
  return [](EntryId) { return true; };
}

std::unique_ptr<EvictionPolicy> Make() { return NewPrefixSlruPolicy({.capacity_blocks = 64}); }

// Inserts ids first..last as one chain (each the parent of the next), fingerprints = id + 1.
void InsertChain(EvictionPolicy& p, EntryId first, EntryId last) {
  for (EntryId id = first; id <= last; ++id) {
    BlockInfo info{.size_class = 0, .fingerprint = id + 1};
    if (id > first) info.parent = id - 1;
    p.OnInsertBlock(id, info);
  }
}

std::vector<EntryId> Drain(EvictionPolicy& p) {
  std::vector<EntryId> order;
  while (std::optional<EntryId> v = p.PickVictim(0, Any())) {
    order.push_back(*v);
    p.OnRemove(*v);
  }
  return order;
}

TEST(PrefixSlruTest, AClassesVictimIsOfThatClassWhereverItsChildrenAre) {
  // A chain across size classes, as a compressed namespace's frames of different sizes make:
  // 0 (class 0) -> 1 (class 1) -> 2 (class 0) -> 3 (class 1).
  auto p = Make();
  for (EntryId id = 0; id < 4; ++id) {
    BlockInfo info{.size_class = static_cast<uint32_t>(id % 2), .fingerprint = id + 1};
    if (id > 0) info.parent = id - 1;
    p->OnInsertBlock(id, info);
  }
  // Class 0 must give up a block of class 0: the deepest one, 2, whose only child is of
  // class 1 (the tier asked for a class-0 slot; block 3 would free none).
  std::optional<EntryId> v = p->PickVictim(0, Any());
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, 2u);
  p->OnRemove(*v);
  // Block 3 is an orphan now: class 1's next victim.
  EXPECT_EQ(p->PickVictim(1, Any()), std::optional<EntryId>(3));
  p->OnRemove(3);
  EXPECT_EQ(p->PickVictim(0, Any()), std::optional<EntryId>(0));
  EXPECT_EQ(p->PickVictim(1, Any()), std::optional<EntryId>(1));
}

TEST(PrefixSlruTest, SegmentOfSaysProbationOrProtected) {
  // What DramTier ranks blocks of different size classes by, before their last use.
  auto p = Make();
  p->OnInsertBlock(0, {.fingerprint = 1});
  p->OnInsertBlock(1, {.fingerprint = 2});
  EXPECT_EQ(p->SegmentOf(0), 0);
  EXPECT_EQ(p->SegmentOf(1), 0);
  p->OnAccess(1);
  EXPECT_EQ(p->SegmentOf(1), 1);
  auto lru = NewLruPolicy();
  lru->OnInsert(0, 0);
  lru->OnAccess(0);
  EXPECT_EQ(lru->SegmentOf(0), 0);  // one order: the default
}

TEST(PrefixSlruTest, EvictsAChainFromItsTip) {
  auto p = Make();
  InsertChain(*p, 0, 3);
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{3, 2, 1, 0}));
}

TEST(PrefixSlruTest, RootFirstTouchesStillEvictLeavesFirst) {
  // DramTier touches a prefix root first; the placement rule keeps the tip coldest anyway.
  auto p = Make();
  InsertChain(*p, 0, 3);
  for (EntryId id = 0; id <= 3; ++id) p->OnAccess(id);
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{3, 2, 1, 0}));
}

TEST(PrefixSlruTest, NeverEvictsAParentWhileAChildIsCached) {
  auto p = Make();
  InsertChain(*p, 0, 2);
  // Touch the root last, so that in recency order the root is the coldest... it still waits.
  p->OnAccess(2);
  p->OnAccess(1);
  std::set<EntryId> pinned = {2};
  auto unpinned = [&](EntryId id) { return !pinned.contains(id); };
  // 2 is pinned; 1 is its parent and 0 the grandparent: nothing can go.
  EXPECT_FALSE(p->PickVictim(0, unpinned));
  pinned.clear();
  EXPECT_EQ(p->PickVictim(0, unpinned), 2u);
}

TEST(PrefixSlruTest, OrphansAreTheNextVictims) {
  auto p = Make();
  p->OnInsertBlock(10, {.size_class = 0, .fingerprint = 11});
  p->OnInsertBlock(11, {.size_class = 0, .fingerprint = 12});
  InsertChain(*p, 0, 2);
  // The tier drops the middle block (say, its TTL ran out): 2 can no longer be reached.
  p->OnRemove(1);
  EXPECT_EQ(p->PickVictim(0, Any()), 2u);
  p->OnRemove(2);
  // 0 lost its only child and is a leaf again; the oldest one-off goes next.
  EXPECT_EQ(p->PickVictim(0, Any()), 10u);
}

TEST(PrefixSlruTest, ReusedBlocksSurviveAWaveOfOneOffs) {
  auto p = Make();
  constexpr size_t kCapacity = 20;
  std::set<EntryId> cached;
  const auto insert = [&](EntryId id) {
    if (cached.size() == kCapacity) {
      std::optional<EntryId> v = p->PickVictim(0, Any());
      ASSERT_TRUE(v);
      p->OnRemove(*v);
      cached.erase(*v);
    }
    p->OnInsertBlock(id, {.size_class = 0, .fingerprint = id + 1});
    cached.insert(id);
  };
  for (EntryId id = 0; id < 10; ++id) insert(id);
  for (EntryId id = 0; id < 10; ++id) p->OnAccess(id);  // reused: protected
  for (EntryId id = 100; id < 300; ++id) insert(id);    // 200 blocks used once
  for (EntryId id = 0; id < 10; ++id) EXPECT_TRUE(cached.contains(id)) << id;
}

TEST(PrefixSlruTest, ABlockBackFromTheGhostStartsProtected) {
  auto p = Make();
  p->OnInsertBlock(0, {.size_class = 0, .fingerprint = 500});
  p->OnRemove(0);  // evicted: the ghost remembers fingerprint 500
  p->OnInsertBlock(1, {.size_class = 0, .fingerprint = 600});
  p->OnInsertBlock(0, {.size_class = 0, .fingerprint = 500});
  // 1 is new (probation), 0 came back (protected): 1 goes first although 0 is newer.
  EXPECT_EQ(p->PickVictim(0, Any()), 1u);
}

TEST(PrefixSlruTest, AChildBackFromTheGhostJoinsItsParentOnProbation) {
  auto p = Make();
  InsertChain(*p, 0, 1);
  p->OnRemove(1);  // the tip is evicted; the ghost remembers it
  p->OnInsertBlock(1, {.size_class = 0, .fingerprint = 2, .parent = 0});
  p->OnInsertBlock(7, {.size_class = 0, .fingerprint = 8});
  // Had 1 gone to protected alone, 0 (its parent, on probation) could not leave before it and
  // 7 would be the first victim.
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{1, 0, 7}));
}

TEST(PrefixSlruTest, ALoneUseOfATipStillEvictsLeavesFirst) {
  // A tier may read one block without its prefix: the tip moves to protected, its ancestors
  // stay on probation and must wait for it.
  auto p = Make();
  InsertChain(*p, 0, 2);
  p->OnAccess(2);
  EXPECT_EQ(Drain(*p), (std::vector<EntryId>{2, 1, 0}));
}

}  // namespace
}  // namespace kvtier::tiers
