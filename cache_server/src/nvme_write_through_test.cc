// Write-through (NvmePlacement::WriteThroughAndCommit, what kvtierd runs for a put under
// --nvme-write-through) when the NVMe device fails: EIO on a write, a torn (short) write, a
// failed fdatasync, and a put lease that runs out while its blocks are being written. The DRAM
// and NVMe tiers are real; the device is the in-memory one with fault injection, injected
// through the NvmeDevice interface (kvtier_tiers_nvme_testing, test-only).
//
// What must hold after every failure: the put fails with a code that says so (UNAVAILABLE for
// the block the device failed, ABORTED for the others of the put), nothing of it is served by
// either tier -- not even after a restart -- an earlier acknowledged block is never replaced
// by the failed put's bytes, the failure is counted, and everything else keeps working.
#include <gtest/gtest.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "placement_test_harness.h"

namespace kvtier::server::testing {
namespace {

class WriteThroughTest : public PlacementTest {};

TEST_F(WriteThroughTest, EioOnTheWriteFailsThePutStoresNothingAndIsCounted) {
  ASSERT_EQ(Put({0, 1, 2}, 0), std::vector<StatusCode>(3, StatusCode::kOk));
  medium_->FailWritesAfter(0, EIO);
  EXPECT_EQ(Put({10}, 0), std::vector<StatusCode>{StatusCode::kUnavailable});
  EXPECT_FALSE(InDram(10));
  EXPECT_FALSE(OnNvme(10));
  EXPECT_FALSE(Get(10).has_value());
  proto::NvmeStats stats = Stats();
  EXPECT_EQ(stats.write_throughs(), 3u);
  EXPECT_EQ(stats.write_through_failures(), 1u);
  EXPECT_GE(stats.io_errors(), 1u);

  // The acknowledged blocks are still served, from DRAM and, once gone from it, from NVMe,
  // while the device still fails writes.
  for (uint64_t id : {0, 1, 2}) EXPECT_TRUE(Serves(id, 0)) << id;
  const std::vector<BlockKey> evict = {Key(0)};
  ASSERT_EQ(dram_->Remove(kNs, evict)[0], StatusCode::kOk);
  EXPECT_TRUE(Serves(0, 0));

  // The device recovers: the same key can be put again, and it is served.
  medium_->ClearFaults();
  EXPECT_EQ(Put({10}, 1), std::vector<StatusCode>{StatusCode::kOk});
  EXPECT_TRUE(Serves(10, 1));
  stats = Stats();
  EXPECT_EQ(stats.write_throughs(), 4u);
  EXPECT_EQ(stats.write_through_failures(), 1u);
}

TEST_F(WriteThroughTest, TornWriteOfOneBlockAbandonsTheWholePut) {
  // The first block's record lands, the second's is cut short by EIO half-way through.
  medium_->FailWritesAfter(kRecord + kRecord / 2, EIO, /*torn=*/true);
  const std::vector<StatusCode> codes = Put({20, 21, 22}, 0);
  ASSERT_EQ(codes.size(), 3u);
  EXPECT_EQ(codes[0], StatusCode::kAborted);  // written, then removed again: all or nothing
  EXPECT_EQ(codes[1], StatusCode::kUnavailable);
  EXPECT_EQ(codes[2], StatusCode::kUnavailable);
  for (uint64_t id : {20, 21, 22}) {
    EXPECT_FALSE(InDram(id)) << id;
    EXPECT_FALSE(OnNvme(id)) << id;
    EXPECT_TRUE(MissOrExactly(id, std::nullopt));
  }
  EXPECT_EQ(Stats().write_through_failures(), 3u);
  EXPECT_EQ(Stats().write_throughs(), 0u);

  // Nothing comes back after a restart either: the torn record is not indexed, and the
  // removal of the one that was is durable.
  medium_->ClearFaults();
  ASSERT_NO_FATAL_FAILURE(Restart());
  for (uint64_t id : {20, 21, 22}) {
    EXPECT_FALSE(OnNvme(id)) << id;
    EXPECT_TRUE(MissOrExactly(id, std::nullopt));
  }
  EXPECT_EQ(Put({20, 21, 22}, 1), std::vector<StatusCode>(3, StatusCode::kOk));
  for (uint64_t id : {20, 21, 22}) EXPECT_TRUE(Serves(id, 1)) << id;
}

TEST_F(WriteThroughTest, FailedFdatasyncFailsThePutAndNothingSurvivesARestart) {
  ASSERT_EQ(Put({30}, 0), std::vector<StatusCode>{StatusCode::kOk});
  medium_->FailSyncs(EIO);
  EXPECT_EQ(Put({31, 32}, 0), std::vector<StatusCode>(2, StatusCode::kUnavailable));
  for (uint64_t id : {31, 32}) {
    EXPECT_FALSE(InDram(id)) << id;
    EXPECT_FALSE(OnNvme(id)) << id;
  }
  EXPECT_EQ(Stats().write_through_failures(), 2u);
  EXPECT_GE(Stats().io_errors(), 1u);
  EXPECT_TRUE(Serves(30, 0));

  medium_->ClearFaults();
  ASSERT_NO_FATAL_FAILURE(Restart());
  EXPECT_TRUE(Serves(30, 0));  // from NVMe: it was acknowledged
  for (uint64_t id : {31, 32}) {
    EXPECT_FALSE(OnNvme(id)) << id;
    EXPECT_TRUE(MissOrExactly(id, std::nullopt));
  }
}

TEST_F(WriteThroughTest, AFailedPutNeverReplacesAnAcknowledgedBlock) {
  // Blocks 40 and 41 are acknowledged (version 0) and then leave DRAM, so that they live on
  // NVMe only and the failing puts below reach the same keys.
  ASSERT_EQ(Put({40, 41}, 0), std::vector<StatusCode>(2, StatusCode::kOk));
  const std::vector<BlockKey> keys = {Key(40), Key(41)};
  for (StatusCode c : dram_->Remove(kNs, keys)) ASSERT_EQ(c, StatusCode::kOk);

  medium_->FailWritesAfter(0, EIO);
  EXPECT_EQ(Put({40}, 1), std::vector<StatusCode>{StatusCode::kUnavailable});
  EXPECT_TRUE(MissOrExactly(40, 0));
  // A put whose first block (41, version 1) reaches NVMe before its second one fails: 41 may
  // be lost, but never served with the bytes of that put.
  medium_->FailWritesAfter(kRecord, EIO);
  const std::vector<StatusCode> codes = Put({41, 42}, 1);
  EXPECT_EQ(codes, (std::vector<StatusCode>{StatusCode::kAborted, StatusCode::kUnavailable}));
  EXPECT_TRUE(MissOrExactly(41, 0));
  EXPECT_TRUE(MissOrExactly(42, std::nullopt));

  medium_->ClearFaults();
  ASSERT_NO_FATAL_FAILURE(Restart());
  EXPECT_TRUE(MissOrExactly(40, 0));
  EXPECT_TRUE(MissOrExactly(41, 0));
  EXPECT_TRUE(MissOrExactly(42, std::nullopt));
}

// The device is slow enough that the put lease expires while its blocks are being written: the
// commit answers DEADLINE_EXCEEDED ("nothing was stored"), so NVMe must not keep them either.
TEST_F(WriteThroughTest, APutLeaseThatExpiresDuringTheWriteLeavesNothingOnNvme) {
  medium_->OnWrite([this] { dram_clock_.Advance(2 * kLeaseTimeout); });
  EXPECT_EQ(Put({50, 51}, 0), std::vector<StatusCode>(2, StatusCode::kDeadlineExceeded));
  medium_->OnWrite(nullptr);
  for (uint64_t id : {50, 51}) {
    EXPECT_FALSE(InDram(id)) << id;
    EXPECT_FALSE(OnNvme(id)) << id;
    EXPECT_TRUE(MissOrExactly(id, std::nullopt));
  }
  EXPECT_EQ(Stats().write_throughs(), 0u);
  ASSERT_NO_FATAL_FAILURE(Restart());
  for (uint64_t id : {50, 51}) EXPECT_TRUE(MissOrExactly(id, std::nullopt));
  // The keys can be put again.
  EXPECT_EQ(Put({50, 51}, 1), std::vector<StatusCode>(2, StatusCode::kOk));
  EXPECT_TRUE(Serves(51, 1));
}

}  // namespace
}  // namespace kvtier::server::testing
