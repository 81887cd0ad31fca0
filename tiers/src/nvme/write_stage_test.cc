// NvmeTier's write stage: calls that arrive while records are in flight join one device stream,
// commits keep the order of placement, other writers of write_mu_ are not starved, and a full
// tier reclaims regions in batches (one wait for the commits in flight per batch).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "kvtier/tiers/nvme_tier.h"
#include "tiers/src/nvme/tier_test_util.h"

namespace kvtier::tiers::nvme::testing {
namespace {

constexpr size_t kBlock = 60 << 10;  // a 64 KiB record: 16 per 1 MiB region

void WriteRange(NvmeTier& tier, int first, int n, const NvmeWriteOptions& options = {}) {
  PutRange(tier, first, n, kBlock, options);
}

// Every block of ids [first, end) the tier holds reads back exact; returns how many it holds.
int CheckHeld(NvmeTier& tier, int first, int end) {
  int held = 0;
  for (int i = first; i < end; ++i) {
    if (!tier.Contains(kNs, TestKey(i))) continue;
    ++held;
    EXPECT_EQ(*Get(tier, i), TestPayload(i, 1, kBlock)) << i;
  }
  return held;
}

// A full tier of 8 regions of 16 blocks, written three regions' worth in one call. One region
// at a time, every region boundary waits for the commits in flight: the call splits into three
// groups. In batches of 3, the first boundary reclaims regions 0-2 at once; opening region 1
// leaves one quiet region, so regions 3-5 go to the commit thread, which reclaims them behind
// the commits in flight; when region 2 opens, regions 6-7 may follow (if that job is done and
// the records in flight are counted); the call goes out as one group either way.
TEST(NvmeWriteStageTest, ReclaimingInBatchesWaitsOnceForSeveralRegions) {
  for (const uint32_t batch : {1u, 3u}) {
    SCOPED_TRACE(batch);
    TierHarness h(8);
    h.options().reclaim_batch_regions = batch;
    h.options().max_reinsert_fraction = 0;  // the reads below must not make blocks hot
    ASSERT_TRUE(h.Open().ok());
    // Every region full. Nothing is reclaimed ahead meanwhile: the regions filled first hold
    // records of this very call, uncommitted, which no reclaim may take.
    WriteRange(h.tier(), 0, 128);
    const NvmeTierSnapshot before = h.tier().Snapshot();
    ASSERT_EQ(before.nvme.region_evictions, 0u);
    ASSERT_EQ(before.tier.blocks, 128u);
    WriteRange(h.tier(), 1000, 48);
    const NvmeTierSnapshot after = h.tier().Snapshot();
    const uint64_t evictions = after.nvme.region_evictions;
    EXPECT_EQ(after.nvme.write_batches - before.nvme.write_batches, batch == 3 ? 1u : 3u);
    EXPECT_EQ(evictions - after.nvme.reclaimed_ahead, 3u);  // by the writer
    if (batch == 1) {
      EXPECT_EQ(after.nvme.reclaimed_ahead, 0u);
    } else {
      EXPECT_TRUE(after.nvme.reclaimed_ahead == 3 || after.nvme.reclaimed_ahead == 5)
          << after.nvme.reclaimed_ahead;
    }
    // Oldest first: the regions evicted are the first ones filled.
    EXPECT_EQ(after.nvme.evicted_blocks, evictions * 16);
    for (int i = 0; i < static_cast<int>(evictions) * 16; ++i) {
      EXPECT_FALSE(h.tier().Contains(kNs, TestKey(i))) << i;
    }
    EXPECT_EQ(CheckHeld(h.tier(), 0, 128), 128 - static_cast<int>(evictions) * 16);
    EXPECT_EQ(CheckHeld(h.tier(), 1000, 1048), 48);
    // Regions reclaimed ahead, clean and unwritten, across a restart: nothing lost or confused.
    WriteRange(h.tier(), 2000, 20);
    const uint64_t held = h.tier().Snapshot().tier.blocks;
    ASSERT_TRUE(h.Open().ok());
    EXPECT_EQ(h.tier().Snapshot().tier.blocks, held);
    EXPECT_EQ(CheckHeld(h.tier(), 2000, 2020), 20);
    EXPECT_EQ(
        static_cast<uint64_t>(CheckHeld(h.tier(), 0, 128) + CheckHeld(h.tier(), 1000, 1048) + 20),
        held);
    WriteRange(h.tier(), 3000, 64);
    EXPECT_EQ(CheckHeld(h.tier(), 3000, 3064), 64);
  }
}

// The hot blocks of every region of a batch are read back before any of them is written
// again, and rewritten into the region opened and the clean ones beside it.
TEST(NvmeWriteStageTest, BatchedReclaimReinsertsTheHotBlocksOfEveryRegion) {
  TierHarness h(8);
  h.options().reclaim_batch_regions = 3;
  ASSERT_TRUE(h.Open().ok());
  WriteRange(h.tier(), 0, 128);
  std::vector<int> hot;
  for (int region = 0; region < 3; ++region) {
    for (int i = 0; i < 4; ++i) hot.push_back(region * 16 + i);
  }
  for (int i : hot) ASSERT_TRUE(Get(h.tier(), i).ok()) << i;
  WriteRange(h.tier(), 1000, 1);  // reclaims regions 0-2 at once
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.region_evictions, 3u);
  EXPECT_EQ(s.nvme.reinserted_blocks, 12u);
  EXPECT_EQ(s.nvme.evicted_blocks, 36u);
  EXPECT_EQ(s.tier.blocks, 128u - 36u + 1u);
  for (int i = 0; i < 48; ++i) {
    const bool kept = std::find(hot.begin(), hot.end(), i) != hot.end();
    if (kept) {
      EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, kBlock)) << i;
    } else {
      EXPECT_FALSE(h.tier().Contains(kNs, TestKey(i))) << i;
    }
  }
  EXPECT_EQ(*Get(h.tier(), 1000), TestPayload(1000, 1, kBlock));
  ASSERT_TRUE(h.Open().ok());  // and after a restart
  for (int i : hot) EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, kBlock)) << i;
}

// The commit thread reclaims regions 4-7 while a call is being written; the hot blocks 64-67
// of region 4 are read back and queued to be written again. Meanwhile a newer copy of block 64
// is written (placed before the rewrite, committed after it would have been) and block 65 is
// removed: neither the older bytes of 64 nor block 65 may come back. Repeated, since the
// remove races the rewrite.
TEST(NvmeWriteStageTest, RewritesAfterAReclaimNeverBringBackOlderBytesOrRemovedBlocks) {
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    TierHarness h(8);
    h.options().reclaim_batch_regions = 4;
    ASSERT_TRUE(h.Open().ok());
    WriteRange(h.tier(), 0, 128);
    for (int i = 64; i < 68; ++i) ASSERT_TRUE(Get(h.tier(), i).ok()) << i;  // hot

    // Regions 0-3 are reclaimed by the writer for the first call; opening region 1 hands
    // regions 4-7 to the commit thread. The second call is placed behind the first.
    std::vector<BlockKey> keys;
    std::vector<std::vector<std::byte>> payloads;
    std::vector<std::span<const std::byte>> blocks;
    for (int i = 1000; i < 1020; ++i) {
      keys.push_back(TestKey(i));
      payloads.push_back(TestPayload(i, 1, kBlock));
    }
    for (auto& p : payloads) blocks.emplace_back(p);
    const BlockKey newer_key = TestKey(64);
    const std::vector<std::byte> newer = TestPayload(64, 2, kBlock);
    const std::span<const std::byte> newer_block(newer);
    std::atomic<int> done{0};
    h.tier().WriteAsync(kNs, keys, blocks, {}, [&](std::vector<absl::Status>) { ++done; });
    h.tier().WriteAsync(kNs, {&newer_key, 1}, {&newer_block, 1}, {},
                        [&](std::vector<absl::Status> st) {
                          EXPECT_TRUE(st[0].ok()) << st[0];
                          ++done;
                        });
    const BlockKey removed = TestKey(65);
    (void)h.tier().Remove(kNs, {&removed, 1});  // OK or NotFound, depending on the race
    while (done.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Blocks 66 and 67 are rewritten (nothing else touches them).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!(h.tier().Contains(kNs, TestKey(66)) && h.tier().Contains(kNs, TestKey(67))) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(*Get(h.tier(), 66), TestPayload(66, 1, kBlock));
    EXPECT_EQ(*Get(h.tier(), 67), TestPayload(67, 1, kBlock));
    EXPECT_EQ(*Get(h.tier(), 64), newer);
    EXPECT_FALSE(h.tier().Contains(kNs, removed));
    // And so after a restart.
    ASSERT_TRUE(h.Open().ok());
    EXPECT_EQ(*Get(h.tier(), 64), newer);
    EXPECT_FALSE(h.tier().Contains(kNs, removed));
    EXPECT_EQ(h.tier().Snapshot().nvme.region_evictions, 0u);  // (counters restart)
  }
}

// The regions reclaimed with the target stop at a keep_from mark, as the target does.
TEST(NvmeWriteStageTest, BatchedReclaimStopsAtTheKeepFromMark) {
  TierHarness h(8);
  h.options().reclaim_batch_regions = 4;
  ASSERT_TRUE(h.Open().ok());
  WriteRange(h.tier(), 0, 32);  // regions 0 and 1; region 1 is the active one
  NvmeWriteOptions keep;
  keep.source = NvmeWriteOptions::Source::kShutdown;
  keep.keep_from = h.tier().LogMark();
  int written = 0;
  const absl::Status refused = PutUntilRefused(h.tier(), 100, 300, kBlock, keep, written);
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  // Regions 2-7 (free) and region 0, reclaimed alone: region 1 is at the mark.
  EXPECT_EQ(written, 7 * 16);
  EXPECT_EQ(h.tier().Snapshot().nvme.region_evictions, 1u);
  for (int i = 0; i < 16; ++i) EXPECT_FALSE(h.tier().Contains(kNs, TestKey(i))) << i;
  for (int i = 16; i < 32; ++i) EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, kBlock)) << i;
}

class NvmeWriteStreamTest : public ::testing::TestWithParam<bool> {};

// Calls queued back to back each write key 0 (and a few others) again: whatever groups the
// stream cuts them into and in whatever order the device completes their records, the index
// ends at the last call's copy, and every call's `done` runs once.
TEST_P(NvmeWriteStreamTest, ConsecutiveCallsOfOneKeyLeaveTheLastCopy) {
  TempDir dir;
  kvtier::testing::ManualClock clock(kStartUnixNanos);
  auto tier = OpenFileTier(dir, GetParam(), &clock, 16, 4);
  ASSERT_TRUE(tier.ok()) << tier.status();
  constexpr int kCalls = 60, kPerCall = 4;
  std::vector<std::vector<std::vector<std::byte>>> payloads(kCalls);
  std::vector<std::vector<std::span<const std::byte>>> blocks(kCalls);
  std::vector<std::vector<BlockKey>> keys(kCalls);
  for (int c = 0; c < kCalls; ++c) {
    for (int k = 0; k < kPerCall; ++k) {
      const int id = k == 0 ? 0 : c * kPerCall + k;  // block 0 in every call
      keys[c].push_back(TestKey(id));
      payloads[c].push_back(TestPayload(id, c + 1, 20000 + 97 * c + k));
    }
    for (auto& p : payloads[c]) blocks[c].emplace_back(p);
  }
  std::vector<std::atomic<int>> done(kCalls);
  std::atomic<int> failed{0};
  for (int c = 0; c < kCalls; ++c) {
    (*tier)->WriteAsync(kNs, keys[c], blocks[c], {}, [&, c](std::vector<absl::Status> statuses) {
      for (const absl::Status& s : statuses) failed += !s.ok();
      ++done[c];
    });
  }
  for (int c = 0; c < kCalls; ++c) {
    while (done[c].load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int c = 0; c < kCalls; ++c) EXPECT_EQ(done[c].load(), 1) << c;
  EXPECT_EQ(failed.load(), 0);
  // Fewer commit groups than calls: calls that queued meanwhile shared them.
  EXPECT_LT((*tier)->Snapshot().nvme.write_batches, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(*Get(**tier, 0, 64 << 10), payloads[kCalls - 1][0]);
  for (int c = 0; c < kCalls; ++c) {
    for (int k = 1; k < kPerCall; ++k) {
      EXPECT_EQ(*Get(**tier, c * kPerCall + k, 64 << 10), payloads[c][k]) << c << " " << k;
    }
  }
  tier->reset();
  tier = OpenFileTier(dir, !GetParam(), &clock, 16, 4);  // and so does the index on the device
  ASSERT_TRUE(tier.ok()) << tier.status();
  EXPECT_EQ(*Get(**tier, 0, 64 << 10), payloads[kCalls - 1][0]);
}

// Removes (and everything else that takes the write lock) get in while writes keep coming:
// the stream ends at its next group instead of running as long as there are callers.
TEST_P(NvmeWriteStreamTest, AStreamOfWritesLetsRemovesIn) {
  TempDir dir;
  kvtier::testing::ManualClock clock(kStartUnixNanos);
  auto tier = OpenFileTier(dir, GetParam(), &clock, 64, 4);
  ASSERT_TRUE(tier.ok()) << tier.status();
  ASSERT_TRUE(Put(**tier, 1, 1, 5000).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    const std::vector<std::byte> payload = TestPayload(7, 1, kBlock);
    const std::span<const std::byte> block(payload);
    std::atomic<int> in_flight{0};
    // Several calls in flight at all times, so that the stream always has a next group.
    for (int i = 0; !stop.load() && i < 20000; ++i) {
      while (in_flight.load() >= 6) std::this_thread::yield();
      ++in_flight;
      const BlockKey key = TestKey(100 + i % 1000);
      (*tier)->WriteAsync(kNs, {&key, 1}, {&block, 1}, {}, [&](std::vector<absl::Status>) {
        --in_flight;
        ++writes;
      });
    }
    while (in_flight.load() > 0) std::this_thread::yield();
  });
  while (writes.load() < 50) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const BlockKey key = TestKey(1);
  EXPECT_TRUE((*tier)->Remove(kNs, {&key, 1})[0].ok());
  const bool writer_still_writing = !stop.exchange(true);
  writer.join();
  EXPECT_TRUE(writer_still_writing);
  EXPECT_FALSE((*tier)->Contains(kNs, key));
}

INSTANTIATE_TEST_SUITE_P(Engines, NvmeWriteStreamTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "IoUring" : "ThreadPool"; });

}  // namespace
}  // namespace kvtier::tiers::nvme::testing
