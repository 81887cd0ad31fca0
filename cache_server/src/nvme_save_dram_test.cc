// NvmePlacement::SaveDram, the save of DRAM to NVMe at a clean shutdown, on the placement
// harness (real tiers, in-memory device), where the counts of its report can be checked
// exactly; integration_nvme_shutdown_save_test runs the real kvtierd.
#include <gtest/gtest.h>

#include <vector>

#include "placement_test_harness.h"

namespace kvtier::server::testing {
namespace {

class SaveDramTest : public PlacementTest {};

// DRAM holds 128 blocks, the tier 120 (8 regions of 1 MiB, 15 records of 68 KiB each): the
// save fills the tier, is refused the next block rather than reclaim a region it wrote, and
// the 120 it saved first -- the most recently used -- are what a restart serves.
TEST_F(SaveDramTest, AFullTierStopsTheSaveAndKeepsWhatItSavedFirst) {
  constexpr uint64_t kBlocks = 128;
  constexpr uint64_t kPut = 8;  // blocks per put; a put's blocks share their last use
  for (uint64_t first = 0; first < kBlocks; first += kPut) {
    std::vector<uint64_t> ids;
    for (uint64_t id = first; id < first + kPut; ++id) ids.push_back(id);
    ASSERT_NO_FATAL_FAILURE(PutDram(ids, 0));
    dram_clock_.Advance(1'000'000);  // the DRAM tier orders blocks by their last use
  }
  const NvmePlacement::SaveReport r = placement_->SaveDram(absl::InfiniteFuture());
  EXPECT_EQ(r.blocks, kBlocks);
  EXPECT_EQ(r.saved, 120u);
  EXPECT_EQ(r.no_room, 8u);
  EXPECT_EQ(r.failed + r.over_quota + r.out_of_time, 0u);
  EXPECT_EQ(Stats().shutdown_saved(), 120u);

  ASSERT_NO_FATAL_FAILURE(Restart());
  EXPECT_EQ(placement_->NvmeSnapshot().recovery.blocks_recovered, 120u);
  for (uint64_t id = 0; id < 8; ++id) {
    EXPECT_FALSE(OnNvme(id)) << id;
    EXPECT_FALSE(Get(id).has_value()) << id;
  }
  for (uint64_t id = 8; id < kBlocks; ++id) EXPECT_TRUE(Serves(id, 0)) << id;
}

// A deadline already past saves nothing and says why.
TEST_F(SaveDramTest, NoTimeLeftSavesNothingAndSaysSo) {
  ASSERT_NO_FATAL_FAILURE(PutDram({1, 2, 3}, 0));
  ASSERT_NO_FATAL_FAILURE(PutDram({4}, 0, kOtherNs));
  const NvmePlacement::SaveReport r = placement_->SaveDram(absl::InfinitePast());
  EXPECT_EQ(r.blocks, 4u);
  EXPECT_EQ(r.saved, 0u);
  EXPECT_EQ(r.out_of_time, 4u);
  ASSERT_NO_FATAL_FAILURE(Restart());
  for (uint64_t id : {1, 2, 3}) EXPECT_FALSE(OnNvme(id)) << id;
  EXPECT_FALSE(OnNvme(4, kOtherNs));
}

}  // namespace
}  // namespace kvtier::server::testing
