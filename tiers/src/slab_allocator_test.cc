#include "tiers/src/slab_allocator.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvtier::tiers::internal {
namespace {

constexpr uint32_t kPage = 4096;
constexpr uint64_t kBase = 8 * kPage;  // as if behind a generation table

std::function<bool(uint64_t)> AllEvictable() {
  return [](uint64_t) { return true; };
}

TEST(SlabAllocatorTest, ClassesRoundUpToPagesAndAreShared) {
  SlabAllocator a(kBase, 64 * kPage, kPage, 16 * kPage);
  const ClassId c1 = a.ClassFor(1);
  EXPECT_EQ(a.slot_bytes(c1), kPage);
  EXPECT_EQ(a.ClassFor(kPage), c1);
  const ClassId c2 = a.ClassFor(kPage + 1);
  EXPECT_NE(c2, c1);
  EXPECT_EQ(a.slot_bytes(c2), 2 * kPage);
  EXPECT_EQ(a.ClassFor(2 * kPage), c2);
  EXPECT_EQ(a.class_count(), 2u);
}

TEST(SlabAllocatorTest, AllocateExistingAvoidsSlabsAndNeverCarvesOne) {
  SlabAllocator a(kBase, 64 * kPage, kPage, 4 * kPage);  // 16 slabs of four one-page slots
  const ClassId c = a.ClassFor(kPage);
  // No slab yet: nothing to take, and free space stays whole.
  EXPECT_FALSE(a.AllocateExisting(c, 1, {}).has_value());
  EXPECT_EQ(a.free_bytes(), 64 * kPage);
  std::vector<SlotHandle> slots;
  for (uint64_t t = 0; t < 8; ++t) slots.push_back(*a.Allocate(c, t));  // two full slabs
  const SlabId first = slots[0].slab, second = slots[4].slab;
  a.Free(slots[1]);  // a free slot in each slab
  a.Free(slots[6]);
  const SlabId avoid[] = {second};
  std::optional<SlotHandle> got = a.AllocateExisting(c, 100, avoid);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->slab, first);
  EXPECT_EQ(a.Tag(*got), 100u);
  // The first slab is full again; the second is avoided; free space is not touched.
  const SlabId both[] = {second, first};
  EXPECT_FALSE(a.AllocateExisting(c, 101, avoid).has_value());
  EXPECT_FALSE(a.AllocateExisting(c, 101, both).has_value());
  EXPECT_EQ(a.free_bytes(), 56 * kPage);
  EXPECT_EQ(a.AllocateExisting(c, 102, {})->slab, second);
  EXPECT_EQ(a.used_bytes(), 8 * kPage);
}

TEST(SlabAllocatorTest, ADrainingSlabHandsOutNoSlotAndStillEmptiesIntoFreeSpace) {
  SlabAllocator a(kBase, 8 * kPage, kPage, 4 * kPage);  // two slabs of four one-page slots
  const ClassId c = a.ClassFor(kPage);
  std::vector<SlotHandle> slots;
  for (uint64_t t = 0; t < 8; ++t) slots.push_back(*a.Allocate(c, t));  // both slabs full
  const SlabId draining = slots[0].slab;
  a.SetDraining(draining, true);
  a.Free(slots[0]);
  a.Free(slots[1]);
  // Its free slots are not handed out, by either allocation, and no slab is carved instead.
  EXPECT_FALSE(a.Allocate(c, 100).has_value());
  EXPECT_FALSE(a.AllocateExisting(c, 100, {}).has_value());
  // Off again: they are.
  a.SetDraining(draining, false);
  std::optional<SlotHandle> got = a.Allocate(c, 100);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->slab, draining);
  a.Free(*got);
  // Once its last slot is freed a draining slab goes back to free space. A reclaim may then
  // still set the flag on and off for it (its blocks all went before it got there): that
  // must not bring the released slab's slots back, or a slot would be handed out twice.
  a.SetDraining(draining, true);
  a.Free(slots[2]);
  a.Free(slots[3]);
  EXPECT_EQ(a.free_bytes(), 4 * kPage);
  a.SetDraining(draining, true);
  a.SetDraining(draining, false);
  std::vector<SlotHandle> fresh;
  for (uint64_t t = 200; t < 204; ++t) {
    std::optional<SlotHandle> got_one = a.Allocate(c, t);
    ASSERT_TRUE(got_one.has_value());
    fresh.push_back(*got_one);
  }
  EXPECT_EQ(a.free_bytes(), 0u);  // a slab carved from free space, not the released one reused
  EXPECT_EQ(a.used_bytes(), 8 * kPage);
  EXPECT_FALSE(a.Allocate(c, 204).has_value());
}

TEST(SlabAllocatorTest, FreeSlotsAndRoomForASlabAreCountedAsAllocateSeesThem) {
  SlabAllocator a(kBase, 8 * kPage, kPage, 4 * kPage);  // room for two slabs of four slots
  const ClassId c = a.ClassFor(kPage);
  EXPECT_EQ(a.free_slot_count(c), 0u);  // free space is not the class's slots yet
  EXPECT_TRUE(a.HasRoomForSlab(c));
  std::vector<SlotHandle> slots;
  for (uint64_t t = 0; t < 5; ++t) slots.push_back(*a.Allocate(c, t));
  EXPECT_EQ(a.free_slot_count(c), 3u);  // the second slab's other three
  EXPECT_FALSE(a.HasRoomForSlab(c));
  a.Free(slots[0]);
  EXPECT_EQ(a.free_slot_count(c), 4u);
  a.SetDraining(slots[1].slab, true);  // a draining slab's free slot is not handed out
  EXPECT_EQ(a.free_slot_count(c), 3u);
  a.SetDraining(slots[1].slab, false);
  for (size_t i = 1; i < 4; ++i) a.Free(slots[i]);  // the first slab empties into free space
  EXPECT_TRUE(a.HasRoomForSlab(c));
  EXPECT_EQ(a.free_slot_count(c), 3u);
}

TEST(SlabAllocatorTest, SlabsAreTrimmedToWholeSlots) {
  SlabAllocator a(kBase, 64 * kPage, kPage, 16 * kPage);
  const ClassId c = a.ClassFor(5 * kPage);  // 3 slots per 16-page slab
  EXPECT_EQ(a.slots_per_slab(c), 3u);
  EXPECT_EQ(a.class_slab_bytes(c), 15 * kPage);
}

TEST(SlabAllocatorTest, SlotsArePageAlignedInsideTheRegionAndDistinct) {
  SlabAllocator a(kBase, 64 * kPage, kPage, 16 * kPage);
  const ClassId c = a.ClassFor(3 * kPage - 100);
  std::set<uint64_t> offsets;
  uint64_t tag = 0;
  while (auto slot = a.Allocate(c, tag++)) {
    const uint64_t off = a.Offset(*slot);
    EXPECT_EQ(off % kPage, 0u);
    EXPECT_GE(off, kBase);
    EXPECT_LE(off + a.slot_bytes(c), kBase + 64 * kPage);
    EXPECT_TRUE(offsets.insert(off).second) << off;
    EXPECT_EQ(a.Tag(*slot), tag - 1);
  }
  // 4 slabs of 5 slots (15 pages each), then 4 pages left: not enough for a slab.
  EXPECT_EQ(offsets.size(), 20u);
  EXPECT_EQ(a.used_bytes(), 20 * 3 * kPage);
  EXPECT_EQ(a.free_bytes(), 4 * kPage);
}

TEST(SlabAllocatorTest, FirstSlotsComeInAddressOrder) {
  SlabAllocator a(kBase, 32 * kPage, kPage, 16 * kPage);
  const ClassId c = a.ClassFor(kPage);
  for (uint64_t i = 0; i < 4; ++i) {
    auto slot = a.Allocate(c, i);
    ASSERT_TRUE(slot);
    EXPECT_EQ(a.Offset(*slot), kBase + i * kPage);
  }
}

TEST(SlabAllocatorTest, BigBlocksGetDedicatedSlabsRoundedToPages) {
  SlabAllocator a(kBase, 64 * kPage, kPage, 16 * kPage);
  const ClassId big = a.ClassFor(20 * kPage + 1);  // 21 pages, larger than a slab
  EXPECT_EQ(a.slot_bytes(big), 21 * kPage);
  EXPECT_EQ(a.slots_per_slab(big), 1u);
  EXPECT_EQ(a.class_slab_bytes(big), 21 * kPage);
  auto s1 = a.Allocate(big, 1);
  auto s2 = a.Allocate(big, 2);
  auto s3 = a.Allocate(big, 3);
  ASSERT_TRUE(s1 && s2 && s3);
  EXPECT_NE(s1->slab, s2->slab);
  EXPECT_FALSE(a.Allocate(big, 4));  // 63 of 64 pages used
  EXPECT_EQ(a.slab_count(big), 3u);
  EXPECT_EQ(a.free_bytes(), kPage);
  a.Free(*s2);
  EXPECT_EQ(a.slab_count(big), 2u);
  EXPECT_EQ(a.free_bytes(), 22 * kPage);
  auto s4 = a.Allocate(big, 4);
  ASSERT_TRUE(s4);
  EXPECT_EQ(a.Offset(*s4), kBase + 21 * kPage);  // the hole s2 left
}

TEST(SlabAllocatorTest, EmptiedSlabReturnsToFreeSpaceAndCoalesces) {
  SlabAllocator a(kBase, 32 * kPage, kPage, 16 * kPage);
  const ClassId small = a.ClassFor(kPage);
  const ClassId other = a.ClassFor(2 * kPage);
  auto x = a.Allocate(small, 1);
  auto y = a.Allocate(other, 2);
  ASSERT_TRUE(x && y);
  EXPECT_EQ(a.free_bytes(), 0u);
  EXPECT_FALSE(a.Allocate(a.ClassFor(3 * kPage), 3));
  a.Free(*x);
  a.Free(*y);
  EXPECT_EQ(a.slab_count(small), 0u);
  EXPECT_EQ(a.slab_count(other), 0u);
  EXPECT_EQ(a.free_bytes(), 32 * kPage);
  EXPECT_EQ(a.free_extent_count(), 1u);
  EXPECT_EQ(a.used_bytes(), 0u);
  // The whole region is one extent again: a block of the whole capacity fits.
  EXPECT_TRUE(a.Allocate(a.ClassFor(32 * kPage), 4));
}

TEST(SlabAllocatorTest, FreedSlotIsReusedWithinItsSlab) {
  SlabAllocator a(kBase, 16 * kPage, kPage, 16 * kPage);
  const ClassId c = a.ClassFor(kPage);
  std::vector<SlotHandle> slots;
  for (uint64_t i = 0; i < 16; ++i) slots.push_back(*a.Allocate(c, i));
  EXPECT_FALSE(a.Allocate(c, 99));
  const uint64_t off = a.Offset(slots[7]);
  a.Free(slots[7]);
  auto again = a.Allocate(c, 100);
  ASSERT_TRUE(again);
  EXPECT_EQ(a.Offset(*again), off);
  EXPECT_EQ(a.Tag(*again), 100u);
}

TEST(SlabAllocatorTest, ReclaimPicksTheSlabWithFewestBlocks) {
  SlabAllocator a(kBase, 48 * kPage, kPage, 16 * kPage);
  const ClassId c = a.ClassFor(kPage);
  // Three slabs: 16, 2 and 16 blocks; tags say which slab.
  std::vector<SlotHandle> slots;
  for (uint64_t i = 0; i < 48; ++i) slots.push_back(*a.Allocate(c, i));
  for (uint64_t i = 16; i < 30; ++i) a.Free(slots[i]);  // middle slab keeps tags 30, 31
  EXPECT_EQ(a.slab_count(c), 3u);
  const ClassId other = a.ClassFor(2 * kPage);
  EXPECT_EQ(a.slab_count(other), 0u);
  EXPECT_FALSE(a.Allocate(other, 100));
  std::vector<uint64_t> tags;
  ASSERT_TRUE(a.FindReclaim(other, AllEvictable(), &tags));
  EXPECT_THAT(tags, ::testing::UnorderedElementsAre(30, 31));
  a.Free(slots[30]);
  a.Free(slots[31]);
  auto slot = a.Allocate(other, 100);
  ASSERT_TRUE(slot);
  EXPECT_EQ(a.Offset(*slot), kBase + 16 * kPage);
}

TEST(SlabAllocatorTest, ReclaimSkipsSlabsWithUnevictableBlocks) {
  SlabAllocator a(kBase, 32 * kPage, kPage, 16 * kPage);
  const ClassId c = a.ClassFor(kPage);
  for (uint64_t i = 0; i < 32; ++i) ASSERT_TRUE(a.Allocate(c, i));
  const ClassId other = a.ClassFor(2 * kPage);
  std::vector<uint64_t> tags;
  // Tag 3 (first slab) is pinned: the second slab is the only candidate.
  ASSERT_TRUE(a.FindReclaim(
      other, [](uint64_t t) { return t != 3; }, &tags));
  EXPECT_EQ(tags.size(), 16u);
  EXPECT_EQ(*std::min_element(tags.begin(), tags.end()), 16u);
  // One pinned block in each slab: nothing can be reclaimed.
  tags.clear();
  EXPECT_FALSE(a.FindReclaim(
      other, [](uint64_t t) { return t != 3 && t != 20; }, &tags));
  EXPECT_TRUE(tags.empty());
}

TEST(SlabAllocatorTest, ReclaimMergesAdjacentSlabsAndFreeSpaceForABigSlab) {
  // Four 8-page slabs of a 1-page class, a 16-page block needs two adjacent ones.
  SlabAllocator a(kBase, 32 * kPage, kPage, 8 * kPage);
  const ClassId c = a.ClassFor(kPage);
  std::vector<SlotHandle> slots;
  for (uint64_t i = 0; i < 32; ++i) slots.push_back(*a.Allocate(c, i));
  // Slab 0: 8 blocks, slab 1: 1 block (tag 8), slab 2: 8 blocks (tag 17 pinned), slab 3: 1
  // block (tag 24) but next to the pinned slab 2.
  for (uint64_t i = 9; i < 16; ++i) a.Free(slots[i]);
  for (uint64_t i = 25; i < 32; ++i) a.Free(slots[i]);
  const ClassId big = a.ClassFor(16 * kPage);
  std::vector<uint64_t> tags;
  ASSERT_TRUE(a.FindReclaim(
      big, [](uint64_t t) { return t != 17; }, &tags));
  // Slabs 0+1 (9 blocks) are the only adjacent pair without the pinned block.
  EXPECT_EQ(tags.size(), 9u);
  for (uint64_t t : tags) a.Free(slots[t]);
  auto slot = a.Allocate(big, 100);
  ASSERT_TRUE(slot);
  EXPECT_EQ(a.Offset(*slot), kBase);
}

TEST(SlabAllocatorTest, ReclaimCountsFreeSpaceInTheRun) {
  SlabAllocator a(kBase, 24 * kPage, kPage, 8 * kPage);
  const ClassId c = a.ClassFor(kPage);
  std::vector<SlotHandle> slots;
  for (uint64_t i = 0; i < 24; ++i) slots.push_back(*a.Allocate(c, i));
  for (uint64_t i = 16; i < 24; ++i) a.Free(slots[i]);  // last slab back to free space
  const ClassId big = a.ClassFor(16 * kPage);
  std::vector<uint64_t> tags;
  ASSERT_TRUE(a.FindReclaim(big, AllEvictable(), &tags));
  EXPECT_EQ(tags.size(), 8u);  // one slab + the free 8 pages
  EXPECT_EQ(*std::min_element(tags.begin(), tags.end()), 8u);
}

TEST(SlabAllocatorTest, RandomWorkloadNeverExceedsCapacityOrOverlaps) {
  constexpr uint64_t kBytes = 256 * kPage;
  SlabAllocator a(kBase, kBytes, kPage, 16 * kPage);
  const std::vector<uint64_t> sizes = {100, kPage, 3 * kPage, 7 * kPage + 5, 20 * kPage};
  std::vector<ClassId> classes;
  for (uint64_t s : sizes) classes.push_back(a.ClassFor(s));
  std::mt19937_64 rng(42);
  std::vector<SlotHandle> live;
  std::map<uint64_t, uint64_t> ranges;  // offset -> end
  uint64_t tag = 0;
  for (int step = 0; step < 20000; ++step) {
    if (!live.empty() && rng() % 2 == 0) {
      const size_t i = rng() % live.size();
      ranges.erase(a.Offset(live[i]));
      a.Free(live[i]);
      live[i] = live.back();
      live.pop_back();
    } else {
      const ClassId c = classes[rng() % classes.size()];
      auto slot = a.Allocate(c, tag++);
      if (!slot) continue;
      const uint64_t off = a.Offset(*slot);
      const uint64_t end = off + a.slot_bytes(c);
      ASSERT_EQ(off % kPage, 0u);
      ASSERT_GE(off, kBase);
      ASSERT_LE(end, kBase + kBytes);
      auto next = ranges.lower_bound(off);
      if (next != ranges.end()) {
        ASSERT_LE(end, next->first);
      }
      if (next != ranges.begin()) {
        ASSERT_LE(std::prev(next)->second, off);
      }
      ranges.emplace(off, end);
      live.push_back(*slot);
    }
    ASSERT_LE(a.used_bytes(), a.capacity_bytes());
    ASSERT_LE(a.used_bytes() + a.free_bytes(), a.capacity_bytes());
  }
  for (const SlotHandle& s : live) a.Free(s);
  EXPECT_EQ(a.used_bytes(), 0u);
  EXPECT_EQ(a.free_bytes(), kBytes);
  EXPECT_EQ(a.free_extent_count(), 1u);
}

}  // namespace
}  // namespace kvtier::tiers::internal
