// NvmeTier behaviour on the in-memory device: reads and writes, namespaces, TTLs, pins, region
// eviction and reinsertion, admission, device faults, and the startup checks.
#include "kvtier/tiers/nvme_tier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tiers/src/nvme/tier_test_util.h"

namespace kvtier::tiers::nvme::testing {
namespace {

TEST(NvmeTierTest, WritesAndReadsBlocksOfAwkwardSizes) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  const std::vector<size_t> sizes = {1, 100, 4095, 4096, 4097, 65536, 100000, 256 << 10};
  for (size_t i = 0; i < sizes.size(); ++i) {
    NvmeWriteOptions o;
    o.codec = static_cast<uint8_t>(i);
    ASSERT_TRUE(Put(h.tier(), i, 1, sizes[i], o).ok()) << sizes[i];
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (bool unaligned : {false, true}) {
      absl::StatusOr<std::vector<std::byte>> got = Get(h.tier(), i, 256 << 10, unaligned);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, TestPayload(i, 1, sizes[i])) << sizes[i];
    }
  }
  AlignedBuffer buf(256 << 10);
  absl::StatusOr<NvmeReadResult> r = h.tier().Read(kNs, TestKey(3), buf.span());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->codec, 3);
  EXPECT_EQ(r->length, 4096u);
  // A buffer shorter than the block is the caller's mistake, not a miss of the cache's making.
  EXPECT_TRUE(
      absl::IsInvalidArgument(h.tier().Read(kNs, TestKey(7), buf.span().first(1000)).status()));
}

TEST(NvmeTierTest, MissesAndCountersKeepTheirInvariants) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, 10000).ok());
  for (int i = 0; i < 8; ++i) (void)Get(h.tier(), i);
  EXPECT_TRUE(absl::IsNotFound(Get(h.tier(), 99).status()));
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.tier.counters.hits, 5u);
  EXPECT_EQ(s.tier.counters.misses, 4u);
  EXPECT_EQ(s.tier.counters.puts, 5u);
  EXPECT_EQ(s.tier.counters.bytes_in, 50000u);
  EXPECT_EQ(s.tier.counters.bytes_out, 50000u);
  EXPECT_EQ(s.tier.blocks, 5u);
  EXPECT_EQ(s.tier.used_bytes, 5u * 16384);  // header unit + 10000 bytes padded to 12288
  // What a promotion reserves in DRAM: the padded payload, without the header unit; no I/O.
  EXPECT_EQ(h.tier().StoredLengthBound(kNs, TestKey(0)), 12288u);
  EXPECT_EQ(h.tier().StoredLengthBound(kNs, TestKey(99)), 0u);
  EXPECT_EQ(s.nvme.flash_bytes_written, 5u * 16384);
  EXPECT_EQ(s.nvme.write_batches, 5u);
  EXPECT_EQ(s.engine, "memory");
  ASSERT_EQ(s.tier.namespaces.size(), 1u);
  EXPECT_EQ(s.tier.namespaces[0].blocks, 5u);
  EXPECT_EQ(s.tier.namespaces[0].counters.hits, 5u);
  EXPECT_LE(s.tier.used_bytes, s.tier.capacity_bytes);
}

TEST(NvmeTierTest, BatchedWritesAndReads) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  std::vector<BlockKey> keys;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<std::span<const std::byte>> blocks;
  for (int i = 0; i < 20; ++i) {
    keys.push_back(TestKey(i));
    payloads.push_back(TestPayload(i, 1, 40000 + i));
  }
  for (auto& p : payloads) blocks.emplace_back(p);
  for (const absl::Status& s : h.tier().Write(kNs, keys, blocks)) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(h.tier().Snapshot().nvme.write_batches, 1u);  // one device batch, one fdatasync
  std::vector<AlignedBuffer> bufs;
  std::vector<std::span<std::byte>> dsts;
  for (int i = 0; i < 20; ++i) bufs.emplace_back(64 << 10);
  for (auto& b : bufs) dsts.push_back(b.span());
  auto results = h.tier().ReadBatch(kNs, keys, dsts);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(std::vector<std::byte>(dsts[i].begin(), dsts[i].begin() + results[i]->length),
              payloads[i]);
  }
}

TEST(NvmeTierTest, PipelinedWritesCommitEachBatchOnce) {
  TierHarness h(8);
  ASSERT_TRUE(h.Open().ok());
  constexpr int kCalls = 24, kPerCall = 6;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<std::vector<std::span<const std::byte>>> blocks(kCalls);
  for (int i = 0; i < kCalls * kPerCall; ++i) payloads.push_back(TestPayload(i, 1, 20000 + i));
  std::atomic<int> done_calls{0}, ok_blocks{0};
  std::vector<std::atomic<int>> done_per_call(kCalls);
  for (int c = 0; c < kCalls; ++c) {
    std::vector<BlockKey> keys;  // only needed during the call
    for (int k = 0; k < kPerCall; ++k) {
      keys.push_back(TestKey(c * kPerCall + k));
      blocks[c].emplace_back(payloads[c * kPerCall + k]);
    }
    h.tier().WriteAsync(kNs, keys, blocks[c], {}, [&, c](std::vector<absl::Status> statuses) {
      for (const auto& st : statuses) ok_blocks += st.ok();
      ++done_per_call[c];
      ++done_calls;
    });
  }
  while (done_calls.load() < kCalls) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int c = 0; c < kCalls; ++c) EXPECT_EQ(done_per_call[c].load(), 1) << c;
  EXPECT_EQ(ok_blocks.load(), kCalls * kPerCall);
  for (int i = 0; i < kCalls * kPerCall; ++i) EXPECT_EQ(*Get(h.tier(), i), payloads[i]) << i;
  // Batches queued together shared their syncs.
  EXPECT_LE(h.tier().Snapshot().nvme.write_batches, static_cast<uint64_t>(kCalls));

  // Nothing to write: done runs at once, on the calling thread.
  bool ran = false;
  const BlockKey k = TestKey(1);
  const std::span<const std::byte> empty;
  h.tier().WriteAsync(kNs, {&k, 1}, {&empty, 1}, {}, [&](std::vector<absl::Status> st) {
    ran = true;
    EXPECT_TRUE(absl::IsInvalidArgument(st[0]));
  });
  EXPECT_TRUE(ran);
}

TEST(NvmeTierTest, OverwriteRemoveAndLookups) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, 5000).ok());
  ASSERT_TRUE(Put(h.tier(), 2, 2, 7000).ok());
  EXPECT_EQ(*Get(h.tier(), 2), TestPayload(2, 2, 7000));
  EXPECT_EQ(h.tier().Snapshot().tier.blocks, 4u);

  const std::vector<BlockKey> chain = {TestKey(0), TestKey(1), TestKey(2), TestKey(3), TestKey(9)};
  EXPECT_EQ(h.tier().LookupPrefix(kNs, chain), 4u);
  EXPECT_EQ(h.tier().LookupPrefix(kNs + 1, chain), 0u);
  const std::vector<BlockKey> gone = {TestKey(1), TestKey(9)};
  auto removed = h.tier().Remove(kNs, gone);
  EXPECT_TRUE(removed[0].ok());
  EXPECT_TRUE(absl::IsNotFound(removed[1]));
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(0)));
  EXPECT_EQ(h.tier().LookupPrefix(kNs, chain), 1u);
  EXPECT_TRUE(absl::IsNotFound(Get(h.tier(), 1).status()));
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.tier.blocks, 3u);
  EXPECT_EQ(s.tier.counters.removes, 1u);
  EXPECT_EQ(s.tier.counters.lookups, 3u);
  EXPECT_LE(s.tier.counters.lookup_hit_keys, s.tier.counters.lookup_keys);
}

TEST(NvmeTierTest, NamespacesAndBadInput) {
  TierHarness h;
  ASSERT_TRUE(h.Open(nullptr, 64 << 10).ok());
  EXPECT_TRUE(h.tier().AddNamespace(kNs, 64 << 10).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(h.tier().AddNamespace(kNs, 128 << 10)));
  EXPECT_TRUE(absl::IsInvalidArgument(h.tier().AddNamespace(2, 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(h.tier().AddNamespace(2, kRegionBytes)));  // + header
  EXPECT_TRUE(absl::IsInvalidArgument(Put(h.tier(), 1, 1, 100, {}, /*ns=*/5)));
  EXPECT_TRUE(absl::IsInvalidArgument(Put(h.tier(), 1, 1, (64 << 10) + 1)));
  EXPECT_TRUE(absl::IsInvalidArgument(Put(h.tier(), 1, 1, 0)));
  const std::vector<BlockKey> twice = {TestKey(1), TestKey(1)};
  const auto p = TestPayload(1, 1, 100);
  const std::vector<std::span<const std::byte>> blocks = {p, p};
  auto st = h.tier().Write(kNs, twice, blocks);
  EXPECT_TRUE(st[0].ok());
  EXPECT_TRUE(absl::IsInvalidArgument(st[1]));
}

TEST(NvmeTierTest, TtlExpires) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  NvmeWriteOptions o;
  o.ttl_seconds = 10;
  ASSERT_TRUE(Put(h.tier(), 1, 1, 1000, o).ok());
  ASSERT_TRUE(Put(h.tier(), 2, 1, 1000).ok());
  h.clock().Advance(9'000'000'000);
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(1)));
  h.clock().Advance(2'000'000'000);
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
  EXPECT_TRUE(absl::IsNotFound(Get(h.tier(), 1).status()));
  EXPECT_TRUE(Get(h.tier(), 2).ok());
  EXPECT_EQ(h.tier().Snapshot().nvme.expired, 1u);
  // The deadline is durable: still expired after a restart.
  ASSERT_TRUE(h.Open().ok());
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(2)));
}

TEST(NvmeTierTest, EachBlockOfABatchKeepsItsOwnTtlAndReadsReportIt) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  const std::vector<BlockKey> keys = {TestKey(1), TestKey(2), TestKey(3)};
  const auto p1 = TestPayload(1, 1, 100), p2 = TestPayload(2, 1, 100), p3 = TestPayload(3, 1, 100);
  const std::vector<std::span<const std::byte>> blocks = {p1, p2, p3};
  const std::vector<uint32_t> ttls = {5, 0, 20};
  NvmeWriteOptions o;
  o.ttls_seconds = ttls;
  for (const absl::Status& s : h.tier().Write(kNs, keys, blocks, o)) ASSERT_TRUE(s.ok()) << s;
  std::vector<std::byte> dst(8192);
  auto r = h.tier().Read(kNs, TestKey(3), dst);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ttl_left_seconds, 20u);
  auto none = h.tier().Read(kNs, TestKey(2), dst);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->ttl_left_seconds, 0u);
  h.clock().Advance(6'000'000'000);
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(2)));
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(3)));
  // One TTL per key or none.
  const std::vector<uint32_t> short_list = {1};
  o.ttls_seconds = short_list;
  for (const absl::Status& s : h.tier().Write(kNs, keys, blocks, o)) {
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  }
}

// 4 regions of 1 MiB; records of 60 KiB + header = 64 KiB: 16 per region.
constexpr size_t kBlock = 60 << 10;

TEST(NvmeTierTest, AWriteAcrossFreeRegionsIsOneBatchAndEvictionStillDrains) {
  TierHarness h(4);  // 16 records of kBlock per region
  ASSERT_TRUE(h.Open().ok());
  auto write = [&](int first, int n) { PutRange(h.tier(), first, n, kBlock); };
  // Regions 1 and 2 are free when region 0 fills: they are opened without waiting for the
  // commits in flight, so the whole call reaches the device as one batch and one fdatasync
  // (it took three when every region boundary drained the pipeline).
  write(0, 40);
  NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.write_batches, 1u);
  EXPECT_EQ(s.nvme.region_evictions, 0u);
  EXPECT_EQ(s.tier.blocks, 40u);
  // 8 more fill region 2, 16 go to the free region 3, then region 0 is evicted for the last
  // 16: the batch splits there (what was placed is written and committed before the region's
  // entries are listed), and everything reads back.
  write(40, 40);
  s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.region_evictions, 1u);
  EXPECT_EQ(s.nvme.write_batches, 3u);
  for (int i = 0; i < 16; ++i) EXPECT_FALSE(h.tier().Contains(kNs, TestKey(i))) << i;
  for (int i = 16; i < 80; ++i) {
    absl::StatusOr<std::vector<std::byte>> got = Get(h.tier(), i);
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    EXPECT_EQ(*got, TestPayload(i, 1, kBlock)) << i;
  }
}

TEST(NvmeTierTest, EvictsTheOldestRegionAndReinsertsHotBlocks) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, kBlock).ok()) << i;
  EXPECT_EQ(h.tier().Snapshot().nvme.region_evictions, 0u);
  // Blocks 0..3 of the oldest region are read: hot.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Get(h.tier(), i).ok());
  ASSERT_TRUE(Put(h.tier(), 100, 1, kBlock).ok());  // needs a region: region 0 goes
  NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.region_evictions, 1u);
  EXPECT_EQ(s.nvme.reinserted_blocks, 4u);
  EXPECT_EQ(s.nvme.evicted_blocks, 12u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(h.tier().Contains(kNs, TestKey(i))) << i;
  for (int i = 4; i < 16; ++i) EXPECT_FALSE(h.tier().Contains(kNs, TestKey(i))) << i;
  for (int i = 16; i < 64; ++i) EXPECT_TRUE(h.tier().Contains(kNs, TestKey(i))) << i;
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(100)));
  EXPECT_EQ(s.tier.blocks, 53u);
  // Reinserted blocks start cold again: without new reads they go with their region next time.
  for (int i = 200; i < 300; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, kBlock).ok());
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(h.tier().Contains(kNs, TestKey(i))) << i;
}

TEST(NvmeTierTest, ReinsertionPolicyAndBudgetAreHonoured) {
  TierHarness h(4);
  int asked = 0;
  h.options().reinsertion = [&](const ReinsertionCandidate& c) {
    ++asked;
    EXPECT_EQ(c.length, kBlock);
    return true;  // every block, even cold ones
  };
  h.options().max_reinsert_fraction = 0.25;  // 4 records of 64 KiB per 1 MiB region
  ASSERT_TRUE(h.Open().ok());
  for (int i = 0; i < 65; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, kBlock).ok());
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.reinserted_blocks, 4u);
  EXPECT_EQ(asked, 4);
  // The first four of the oldest region, read back and rewritten byte for byte.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, kBlock)) << i;
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(4)));
}

TEST(NvmeTierTest, PinnedBlocksSurviveEvictionUntilUnpinned) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  NvmeWriteOptions pinned;
  pinned.pinned = true;
  ASSERT_TRUE(Put(h.tier(), 0, 1, kBlock, pinned).ok());
  ASSERT_TRUE(Put(h.tier(), 1, 1, kBlock).ok());
  const std::vector<BlockKey> k1 = {TestKey(1)};
  EXPECT_TRUE(h.tier().SetPinned(kNs, k1, true)[0].ok());
  for (int i = 10; i < 200; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, kBlock).ok());
  EXPECT_EQ(*Get(h.tier(), 0), TestPayload(0, 1, kBlock));
  EXPECT_EQ(*Get(h.tier(), 1), TestPayload(1, 1, kBlock));
  const std::vector<BlockKey> both = {TestKey(0), TestKey(1)};
  for (const auto& s : h.tier().SetPinned(kNs, both, false)) EXPECT_TRUE(s.ok());
  for (int i = 200; i < 400; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, kBlock).ok());
  // Unpinned and read once each since: reinserted once, then dropped the next time around.
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(0)));
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
}

TEST(NvmeTierTest, AllPinnedIsResourceExhaustedNotALoop) {
  TierHarness h(2);
  ASSERT_TRUE(h.Open().ok());
  NvmeWriteOptions pinned;
  pinned.pinned = true;
  absl::Status last;
  int written = 0;
  for (int i = 0; i < 40 && last.ok(); ++i) {
    last = Put(h.tier(), i, 1, kBlock, pinned);
    if (last.ok()) ++written;
  }
  EXPECT_TRUE(absl::IsResourceExhausted(last)) << last;
  EXPECT_EQ(written, 32);
  EXPECT_EQ(h.tier().Snapshot().nvme.region_evictions, 0u);  // refused without rewriting pins
  for (int i = 0; i < written; ++i) EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, kBlock));
}

TEST(NvmeTierTest, DeviceFullIsResourceExhaustedAndKeepsWhatWasThere) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(Put(h.tier(), 1, 1, 5000).ok());
  h.medium().FailWritesAfter(0, ENOSPC);
  absl::Status s = Put(h.tier(), 2, 1, 5000);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("full"), std::string::npos) << s;
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(2)));
  EXPECT_EQ(*Get(h.tier(), 1), TestPayload(1, 1, 5000));
  EXPECT_EQ(h.tier().Snapshot().nvme.io_errors, 1u);
  h.medium().ClearFaults();
  ASSERT_TRUE(Put(h.tier(), 2, 1, 5000).ok());
  EXPECT_EQ(*Get(h.tier(), 2), TestPayload(2, 1, 5000));
}

// A write with keep_from stops where making room would reclaim a region written since the
// mark, so a shutdown save that outgrows the tier keeps what it wrote first.
TEST(NvmeTierTest, KeepFromRefusesToReclaimRegionsWrittenSinceTheMark) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  constexpr size_t kBlock = 100 << 10;  // a 104 KiB record: 9 per 1 MiB region
  for (int i = 0; i < 18; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, kBlock).ok());  // regions 0, 1
  NvmeWriteOptions keep;
  keep.source = NvmeWriteOptions::Source::kShutdown;
  keep.keep_from = h.tier().LogMark();  // region 1 is the active one: it and later are kept
  int written = 0;
  const absl::Status refused = PutUntilRefused(h.tier(), 100, 200, kBlock, keep, written);
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_NE(refused.message().find("keep_from"), std::string::npos) << refused;
  // Regions 2 and 3 (empty) and 0 (reclaimed: blocks 0..8) took them; region 1 was kept.
  EXPECT_EQ(written, 27);
  for (int i = 100; i < 100 + written; ++i) {
    EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, kBlock)) << i;
  }
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(0)));
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(17)));
  // Without the mark, the oldest region is reclaimed as usual.
  ASSERT_TRUE(Put(h.tier(), 300, 1, kBlock).ok());
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(17)));
  EXPECT_TRUE(h.tier().Contains(kNs, TestKey(100)));
}

TEST(NvmeTierTest, FailedSyncIndexesNothing) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  h.medium().FailSyncs(EIO);
  EXPECT_TRUE(absl::IsUnavailable(Put(h.tier(), 1, 1, 5000)));
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
  h.medium().ClearFaults();
  ASSERT_TRUE(h.Open().ok());  // and not after a restart either
  EXPECT_FALSE(h.tier().Contains(kNs, TestKey(1)));
}

TEST(NvmeTierTest, ReadErrorsAreMissesCounted) {
  TierHarness h;
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(Put(h.tier(), 1, 1, 5000).ok());
  h.medium().FailReads(EIO);
  EXPECT_TRUE(absl::IsUnavailable(Get(h.tier(), 1).status()));
  h.medium().ClearFaults();
  EXPECT_TRUE(Get(h.tier(), 1).ok());
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.io_errors, 1u);
  EXPECT_EQ(s.tier.counters.misses, 1u);
  EXPECT_EQ(s.tier.counters.hits, 1u);
}

TEST(NvmeTierTest, AdmissionPolicyGatesOnlyDemotions) {
  TierHarness h;
  ASSERT_TRUE(h.Open(NewMinHitsAdmissionPolicy(1)).ok());
  const uint32_t cold = 0, warm = 2;
  NvmeWriteOptions demote;
  demote.upper_tier_hits = {&cold, 1};
  EXPECT_TRUE(absl::IsResourceExhausted(Put(h.tier(), 1, 1, 100, demote)));
  demote.upper_tier_hits = {&warm, 1};
  EXPECT_TRUE(Put(h.tier(), 2, 1, 100, demote).ok());
  NvmeWriteOptions through;
  through.source = NvmeWriteOptions::Source::kWriteThrough;
  EXPECT_TRUE(Put(h.tier(), 3, 1, 100, through).ok());
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_EQ(s.nvme.admission_rejections, 1u);
  EXPECT_EQ(s.admission_policy, "hits:1");
}

TEST(NvmeAdmissionTest, ParsesSpecsAndLimitsRate) {
  kvtier::testing::ManualClock clock;
  EXPECT_EQ((*ParseAdmissionPolicy("all", &clock))->Name(), "all");
  EXPECT_EQ((*ParseAdmissionPolicy("hits:2", &clock))->Name(), "hits:2");
  EXPECT_TRUE(absl::IsInvalidArgument(ParseAdmissionPolicy("some", &clock).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseAdmissionPolicy("rate:lots/s", &clock).status()));
  auto rate = ParseAdmissionPolicy("rate:1MiB/s", &clock);
  ASSERT_TRUE(rate.ok()) << rate.status();
  AdmissionRequest r;
  r.length = 512 << 10;
  EXPECT_TRUE((*rate)->Admit(r));
  EXPECT_TRUE((*rate)->Admit(r));
  EXPECT_FALSE((*rate)->Admit(r));  // the one-second burst is spent
  clock.Advance(500'000'000);
  EXPECT_TRUE((*rate)->Admit(r));
}

TEST(NvmeTierTest, RestartServesEverythingAgain) {
  TierHarness h(8);
  ASSERT_TRUE(h.Open().ok());
  // Enough to wrap the log once, so that the restart sees evicted and reused regions.
  std::map<int, size_t> sizes;
  for (int i = 0; i < 300; ++i) {
    sizes[i] = 20000 + 997 * (i % 41);
    ASSERT_TRUE(Put(h.tier(), i, 1, sizes[i]).ok());
  }
  const NvmeTierSnapshot before = h.tier().Snapshot();
  ASSERT_GT(before.nvme.region_evictions, 0u);
  ASSERT_TRUE(h.Open().ok());
  const NvmeTierSnapshot after = h.tier().Snapshot();
  EXPECT_EQ(after.tier.blocks, before.tier.blocks);
  EXPECT_EQ(after.tier.used_bytes, before.tier.used_bytes);
  EXPECT_EQ(after.recovery.blocks_recovered, before.tier.blocks);
  EXPECT_EQ(after.recovery.blocks_dropped, 0u);
  EXPECT_FALSE(after.recovery.index_rebuilt);
  EXPECT_FALSE(after.recovery.formatted);
  EXPECT_GT(after.recovery.startup_nanos, 0);
  size_t present = 0;
  for (const auto& [i, size] : sizes) {
    if (!h.tier().Contains(kNs, TestKey(i))) continue;
    ++present;
    EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, size)) << i;
  }
  EXPECT_EQ(present, before.tier.blocks);
  // Writing goes on in fresh generations; nothing recovered is disturbed.
  for (int i = 1000; i < 1100; ++i) ASSERT_TRUE(Put(h.tier(), i, 1, 30000).ok());
  for (int i = 1000; i < 1100; ++i) {
    if (h.tier().Contains(kNs, TestKey(i))) {
      EXPECT_EQ(*Get(h.tier(), i), TestPayload(i, 1, 30000));
    }
  }
}

// The same restart on a real file, written with one engine and read back with the other.
class NvmeTierFileTest : public ::testing::TestWithParam<bool> {};

TEST_P(NvmeTierFileTest, RestartOnAFileAcrossEngines) {
  TempDir dir;
  kvtier::testing::ManualClock clock(kStartUnixNanos);
  auto open = [&](bool io_uring) { return OpenFileTier(dir, io_uring, &clock, 6, 8); };
  const bool first = GetParam();
  {
    auto tier = open(first);
    ASSERT_TRUE(tier.ok()) << tier.status();
    for (int i = 0; i < 120; ++i) ASSERT_TRUE(Put(**tier, i, 1, 10000 + 311 * i).ok()) << i;
  }
  auto tier = open(!first);
  ASSERT_TRUE(tier.ok()) << tier.status();
  const NvmeTierSnapshot s = (*tier)->Snapshot();
  EXPECT_EQ(s.recovery.blocks_recovered, 120u);
  size_t present = 0;
  for (int i = 0; i < 120; ++i) {
    if (!(*tier)->Contains(kNs, TestKey(i))) continue;
    ++present;
    EXPECT_EQ(*Get(**tier, i, 64 << 10), TestPayload(i, 1, 10000 + 311 * i)) << i;
  }
  EXPECT_EQ(present, 120u);  // ~4 MiB of records in 6 MiB of regions: nothing evicted
}

INSTANTIATE_TEST_SUITE_P(Engines, NvmeTierFileTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? "IoUringThenThreadPool" : "ThreadPoolThenIoUring";
});

TEST(NvmeTierTest, LostIndexIsRebuiltFromTheDevice) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  NvmeWriteOptions pinned;
  pinned.pinned = true;
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(Put(h.tier(), i, 1, 30000, i == 0 ? pinned : NvmeWriteOptions{}).ok());
  ASSERT_TRUE(Put(h.tier(), 5, 2, 31000).ok());  // the newer copy must win the rebuild
  h.Close();
  std::filesystem::remove_all(h.options().index_path);
  ASSERT_TRUE(h.Open().ok());
  const NvmeTierSnapshot s = h.tier().Snapshot();
  EXPECT_TRUE(s.recovery.index_rebuilt);
  EXPECT_TRUE(s.recovery.rebuilt_from_device);
  EXPECT_EQ(s.tier.blocks, 30u);
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(*Get(h.tier(), i), i == 5 ? TestPayload(5, 2, 31000) : TestPayload(i, 1, 30000));
  }
  // The rebuilt index is durable: the next start is an ordinary one.
  ASSERT_TRUE(h.Open().ok());
  EXPECT_FALSE(h.tier().Snapshot().recovery.index_rebuilt);
  EXPECT_EQ(h.tier().Snapshot().tier.blocks, 30u);
}

TEST(NvmeTierTest, RebuildCanBeTurnedOff) {
  TierHarness h(4);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(Put(h.tier(), 1, 1, 30000).ok());
  h.Close();
  std::filesystem::remove_all(h.options().index_path);
  h.options().rebuild_from_device = false;
  ASSERT_TRUE(h.Open().ok());
  EXPECT_TRUE(h.tier().Snapshot().recovery.index_rebuilt);
  EXPECT_EQ(h.tier().Snapshot().tier.blocks, 0u);
}

TEST(NvmeTierTest, IndexOfAnotherDeviceIsNotTrusted) {
  TierHarness a(4), b(4);
  ASSERT_TRUE(a.Open().ok());
  ASSERT_TRUE(b.Open().ok());
  ASSERT_TRUE(Put(a.tier(), 1, 1, 30000).ok());
  ASSERT_TRUE(Put(b.tier(), 2, 1, 30000).ok());
  a.Close();
  // b's device with a's index: the instance ids differ, so b's own records are scanned.
  b.Close();
  b.options().index_path = a.options().index_path;
  ASSERT_TRUE(b.Open().ok());
  EXPECT_TRUE(b.tier().Snapshot().recovery.index_rebuilt);
  EXPECT_FALSE(b.tier().Contains(kNs, TestKey(1)));
  EXPECT_EQ(*Get(b.tier(), 2), TestPayload(2, 1, 30000));
}

TEST(NvmeTierTest, StartupRefusesForeignDataAndOtherLayouts) {
  TierHarness h(4);
  const std::vector<std::byte> junk(100, std::byte{0x42});
  h.medium().Overwrite(0, junk);
  absl::Status s = h.Open().status();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("not a kvtier"), std::string::npos) << s;
  EXPECT_EQ(h.medium().Read(0, 1)[0], std::byte{0x42});  // untouched

  TierHarness g(4);
  ASSERT_TRUE(g.Open().ok());
  ASSERT_TRUE(Put(g.tier(), 1, 1, 1000).ok());
  g.Close();
  g.options().region_bytes = 2 << 20;
  s = g.Open().status();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("region bytes"), std::string::npos) << s;
  g.options().reformat_on_mismatch = true;
  ASSERT_TRUE(g.Open().ok());
  EXPECT_TRUE(g.tier().Snapshot().recovery.formatted);
  EXPECT_EQ(g.tier().Snapshot().tier.blocks, 0u);
  EXPECT_EQ(g.tier().Snapshot().regions, 2u);  // (1 MiB + 4 MiB - 1 MiB) / 2 MiB

  TierHarness small(1);
  s = small.Open().status();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("at least 2"), std::string::npos) << s;
}

TEST(NvmeTierTest, DramMetadataPerBlockStaysUnder100Bytes) {
  TierHarness h(40);  // 40 MiB: 5000 records of 8 KiB
  ASSERT_TRUE(h.Open().ok());
  std::vector<BlockKey> keys;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<std::span<const std::byte>> blocks;
  for (int i = 0; i < 5000; ++i) {
    keys.push_back(TestKey(i));
    payloads.push_back(TestPayload(i, 1, 64));
  }
  for (auto& p : payloads) blocks.emplace_back(p);
  for (const auto& s : h.tier().Write(kNs, keys, blocks)) ASSERT_TRUE(s.ok()) << s;
  const NvmeTierSnapshot s = h.tier().Snapshot();
  ASSERT_EQ(s.tier.blocks, 5000u);
  EXPECT_LT(s.dram_index_bytes / s.tier.blocks, 100u) << s.dram_index_bytes;
}

}  // namespace
}  // namespace kvtier::tiers::nvme::testing
