#include "tiers/src/nvme/region_log.h"

#include <gtest/gtest.h>

namespace kvtier::tiers::nvme {
namespace {

constexpr uint64_t kRegion = 1 << 20;

TEST(RegionLogTest, NothingAllocatesBeforeARegionIsOpen) {
  RegionLog log(4, kRegion);
  EXPECT_FALSE(log.active().has_value());
  EXPECT_FALSE(log.Allocate(4096).has_value());
}

TEST(RegionLogTest, AppendsUntilFull) {
  RegionLog log(4, kRegion);
  log.Open(0, 1);
  EXPECT_EQ(log.Allocate(8192), 0u);
  EXPECT_EQ(log.Allocate(4096), 8192u);
  EXPECT_EQ(log.Allocate(kRegion - 12288), 12288u);
  EXPECT_FALSE(log.Allocate(4096).has_value());
}

TEST(RegionLogTest, PrefersEmptyRegionsThenOldest) {
  RegionLog log(3, kRegion);
  log.Open(0, 1);
  log.AddLive(0, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 1u);  // empty, never the active one
  log.Open(1, 2);
  log.AddLive(1, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 2u);
  log.Open(2, 3);
  log.AddLive(2, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 0u);  // all full: generation 1 is the oldest
  log.Open(0, 4);                   // region 0 evicted and reopened
  EXPECT_EQ(log.NextToOpen(), 1u);
  log.RemoveLive(2, 4096, false);
  EXPECT_EQ(log.NextToOpen(), 2u);  // emptied by removals: reused before evicting anything
}

TEST(RegionLogTest, SkipsRegionsMostlyPinned) {
  RegionLog log(3, kRegion);
  log.Open(0, 1);
  log.AddLive(0, kRegion / 2 + 4096, true);
  log.Open(1, 2);
  log.AddLive(1, kRegion, false);
  log.Open(2, 3);
  log.AddLive(2, kRegion, false);
  EXPECT_EQ(log.NextToOpen(), 1u);  // region 0 is older but mostly pinned
  log.RemoveLive(0, 8192, true);
  log.AddLive(0, 8192, false);
  EXPECT_EQ(log.NextToOpen(), 0u);  // unpinned enough to be worth reclaiming
  RegionLog pins(2, kRegion);
  pins.Open(0, 1);
  pins.AddLive(0, kRegion, true);
  pins.Open(1, 2);
  pins.AddLive(1, kRegion, true);
  EXPECT_FALSE(pins.NextToOpen().has_value());
}

TEST(RegionLogTest, PendingRecordsKeepARegionFromLookingEmpty) {
  RegionLog log(4, kRegion);
  log.Open(0, 1);
  log.AddPending(0);  // placed, not committed yet: live bytes still 0
  log.AddPending(0);
  EXPECT_FALSE(log.Quiet(0));
  EXPECT_EQ(log.NextToOpen(), 1u);
  log.Open(1, 2);
  EXPECT_EQ(log.NextToOpen(), 2u);  // region 0 is the newest but one, not a free region
  EXPECT_TRUE(log.Quiet(2));
  log.AddLive(0, 4096, false);  // one record committed, the other failed
  log.RemovePending(0);
  log.RemovePending(0);
  EXPECT_EQ(log.pending_records(0), 0u);
  EXPECT_FALSE(log.Quiet(0));
  log.RemoveLive(0, 4096, false);
  EXPECT_TRUE(log.Quiet(0));
  EXPECT_EQ(log.NextToOpen(), 0u);
}

TEST(RegionLogTest, CountsLiveBytes) {
  RegionLog log(3, kRegion);
  log.Restore(1, 9);
  log.AddLive(1, 8192, false);
  log.AddLive(2, 4096, false);
  EXPECT_EQ(log.live_bytes(), 12288u);
  EXPECT_EQ(log.regions_in_use(), 2u);
  EXPECT_EQ(log.generation(1), 9u);
  log.RemoveLive(1, 8192, false);
  EXPECT_EQ(log.live_bytes(1), 0u);
  EXPECT_EQ(log.regions_in_use(), 1u);
  EXPECT_EQ(log.NextToOpen(), 0u);
}

}  // namespace
}  // namespace kvtier::tiers::nvme
