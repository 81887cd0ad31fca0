#include <set>

#include "gtest/gtest.h"
#include "kvtier/tiers/eviction_policy.h"

namespace kvtier::tiers {
namespace {

auto Any() {
  return [](EntryId) { return true; };
}

TEST(LruPolicyTest, EvictsLeastRecentlyInsertedFirst) {
  auto lru = NewLruPolicy();
  EXPECT_EQ(lru->Name(), "lru");
  for (EntryId id = 0; id < 4; ++id) lru->OnInsert(id, 0);
  EXPECT_EQ(lru->PickVictim(0, Any()), 0u);
  lru->OnRemove(0);
  EXPECT_EQ(lru->PickVictim(0, Any()), 1u);
}

TEST(LruPolicyTest, AccessMovesToTheHotEnd) {
  auto lru = NewLruPolicy();
  for (EntryId id = 0; id < 3; ++id) lru->OnInsert(id, 0);
  lru->OnAccess(0);
  EXPECT_EQ(lru->PickVictim(0, Any()), 1u);
  lru->OnAccess(1);
  EXPECT_EQ(lru->PickVictim(0, Any()), 2u);
  lru->OnAccess(2);
  EXPECT_EQ(lru->PickVictim(0, Any()), 0u);
}

TEST(LruPolicyTest, ExactOrderAfterMixedOperations) {
  auto lru = NewLruPolicy();
  for (EntryId id = 10; id < 15; ++id) lru->OnInsert(id, 0);
  lru->OnAccess(12);
  lru->OnAccess(10);
  lru->OnRemove(13);
  // Cold to hot: 11, 14, 12, 10.
  for (EntryId want : {11u, 14u, 12u, 10u}) {
    ASSERT_EQ(lru->PickVictim(0, Any()), want);
    lru->OnRemove(want);
  }
  EXPECT_FALSE(lru->PickVictim(0, Any()));
}

TEST(LruPolicyTest, VictimSkipsPinnedEntries) {
  auto lru = NewLruPolicy();
  for (EntryId id = 0; id < 4; ++id) lru->OnInsert(id, 0);
  std::set<EntryId> pinned = {0, 1};
  auto unpinned = [&](EntryId id) { return !pinned.contains(id); };
  EXPECT_EQ(lru->PickVictim(0, unpinned), 2u);
  pinned = {0, 1, 2, 3};
  EXPECT_FALSE(lru->PickVictim(0, unpinned));
  // PickVictim does not remove: the same victim comes back until OnRemove.
  pinned.clear();
  EXPECT_EQ(lru->PickVictim(0, unpinned), 0u);
  EXPECT_EQ(lru->PickVictim(0, unpinned), 0u);
}

TEST(LruPolicyTest, SizeClassesAreSeparate) {
  auto lru = NewLruPolicy();
  lru->OnInsert(0, 0);
  lru->OnInsert(1, 1);
  lru->OnInsert(2, 0);
  lru->OnInsert(3, 1);
  EXPECT_EQ(lru->PickVictim(0, Any()), 0u);
  EXPECT_EQ(lru->PickVictim(1, Any()), 1u);
  EXPECT_FALSE(lru->PickVictim(7, Any()));
  lru->OnRemove(1);
  EXPECT_EQ(lru->PickVictim(1, Any()), 3u);
  lru->OnRemove(3);
  EXPECT_FALSE(lru->PickVictim(1, Any()));
  EXPECT_EQ(lru->PickVictim(0, Any()), 0u);
}

TEST(LruPolicyTest, IdsCanBeReusedAfterRemoval) {
  auto lru = NewLruPolicy();
  lru->OnInsert(0, 0);
  lru->OnInsert(1, 0);
  lru->OnRemove(0);
  lru->OnInsert(0, 1);  // same id, other class
  EXPECT_EQ(lru->PickVictim(0, Any()), 1u);
  EXPECT_EQ(lru->PickVictim(1, Any()), 0u);
  // Unknown and already-removed ids are ignored.
  lru->OnRemove(0);
  lru->OnRemove(0);
  lru->OnAccess(1000);
  lru->OnRemove(1000);
  EXPECT_FALSE(lru->PickVictim(1, Any()));
}

}  // namespace
}  // namespace kvtier::tiers
