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
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/nvme_tier.h"
#include "kvtier/tiers/testing/nvme_memory_device.h"
#include "nvme_placement.h"
#include "tests/testing/seeded_blocks.h"

namespace kvtier::server {
namespace {

using absl::StatusCode;

constexpr uint32_t kNs = 1;
constexpr tiers::OwnerId kOwner = 1;
constexpr uint64_t kBlock = 64 << 10;
constexpr uint64_t kRegion = 1 << 20;
constexpr uint64_t kAlignment = 4096;
constexpr uint64_t kRecord = kAlignment + kBlock;  // one header unit, then the payload
constexpr int64_t kLeaseTimeout = 1'000'000'000;

BlockKey Key(uint64_t id) { return testing::SeededKey(id ^ 0x77); }
std::vector<std::byte> Content(uint64_t id, uint64_t version) {
  return testing::SeededBytes(id * 1000003 + version, kBlock);
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvtier-wt-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class WriteThroughTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Start()); }
  void TearDown() override { Stop(); }

  // A daemon's worth of tiers over medium_: a fresh DRAM tier, the NVMe tier recovered from
  // the medium and its index.
  void Start() {
    tiers::DramTierOptions dram_options;
    dram_options.capacity_bytes = 8 << 20;
    dram_options.slab_bytes = 1 << 20;
    dram_options.lease_timeout_ns = kLeaseTimeout;
    dram_options.preallocate = false;
    auto dram = tiers::DramTier::Create(dram_options, &dram_clock_, nullptr);
    ASSERT_TRUE(dram.ok()) << dram.status();
    dram_ = std::move(*dram);
    ASSERT_TRUE(dram_->AddNamespace(kNs, kBlock).ok());

    tiers::NvmeTierOptions nvme_options;
    nvme_options.index_path = dir_.path() + "/index";
    nvme_options.region_bytes = kRegion;
    auto nvme = tiers::NvmeTier::Create(nvme_options, tiers::testing::NewMemoryDevice(medium_),
                                        &unix_clock_, nullptr);
    ASSERT_TRUE(nvme.ok()) << nvme.status();
    nvme_ = std::move(*nvme);
    placement_ = std::make_unique<NvmePlacement>(NvmePlacementOptions{}, dram_.get(), nvme_.get(),
                                                 tiers::NewAdmitAllPolicy());
    ASSERT_TRUE(placement_->AddNamespace(kNs, kBlock).ok());
  }

  void Stop() {
    placement_.reset();
    nvme_.reset();
    dram_.reset();
  }

  void Restart() {
    Stop();
    ASSERT_NO_FATAL_FAILURE(Start());
  }

  // A put of `ids` (all new to DRAM) as the daemon runs it: reserve, copy into the slots,
  // write through and commit. The codes WriteThroughAndCommit returns.
  std::vector<StatusCode> Put(const std::vector<uint64_t>& ids, uint64_t version) {
    std::vector<BlockKey> keys;
    for (uint64_t id : ids) keys.push_back(Key(id));
    const std::vector<uint64_t> lengths(ids.size(), kBlock);
    const tiers::LeaseGrant grant = dram_->ReservePut(kOwner, kNs, keys, lengths);
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(grant.codes[i], StatusCode::kOk) << "block " << ids[i] << " is in DRAM already";
      if (grant.codes[i] != StatusCode::kOk) return {};
      const std::vector<std::byte> bytes = Content(ids[i], version);
      std::memcpy(dram_->arena_base() + grant.slots[i].offset, bytes.data(), bytes.size());
    }
    absl::StatusOr<std::vector<StatusCode>> codes =
        placement_->WriteThroughAndCommit(kOwner, grant.lease_id);
    EXPECT_TRUE(codes.ok()) << codes.status();
    return codes.ok() ? *codes : std::vector<StatusCode>{};
  }

  // A get as the daemon serves it: DRAM, else a promotion from NVMe. nullopt on a miss.
  std::optional<std::vector<std::byte>> Get(uint64_t id) {
    const BlockKey key = Key(id);
    tiers::LeaseGrant grant = dram_->AcquireRead(kOwner, kNs, {&key, 1});
    if (grant.codes[0] != StatusCode::kOk) {
      (void)placement_->Promote(kNs, {&key, 1});
      grant = dram_->AcquireRead(kOwner, kNs, {&key, 1});
    }
    if (grant.codes[0] != StatusCode::kOk) return std::nullopt;
    const std::byte* at = dram_->arena_base() + grant.slots[0].offset;
    std::vector<std::byte> out(at, at + grant.slots[0].length);
    EXPECT_TRUE(dram_->Release(kOwner, grant.lease_id).ok());
    return out;
  }

  // The cache's promise for one key: a miss, or exactly the bytes of `acked` (nullopt: no
  // acknowledged put, so only a miss will do).
  ::testing::AssertionResult MissOrExactly(uint64_t id, std::optional<uint64_t> acked) {
    const std::optional<std::vector<std::byte>> got = Get(id);
    if (!got.has_value()) return ::testing::AssertionSuccess();
    if (acked.has_value() && *got == Content(id, *acked)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "block " << id << " served bytes that no acknowledged put wrote";
  }

  // A hit with exactly the bytes of version `version`.
  ::testing::AssertionResult Serves(uint64_t id, uint64_t version) {
    const std::optional<std::vector<std::byte>> got = Get(id);
    if (!got.has_value()) return ::testing::AssertionFailure() << "block " << id << " missed";
    if (*got != Content(id, version)) {
      return ::testing::AssertionFailure() << "block " << id << ": wrong bytes";
    }
    return ::testing::AssertionSuccess();
  }

  bool InDram(uint64_t id) {
    const BlockKey key = Key(id);
    return dram_->Present(kNs, {&key, 1})[0];
  }
  bool OnNvme(uint64_t id) { return nvme_->Contains(kNs, Key(id)); }

  proto::NvmeStats Stats() const {
    proto::NvmeStats stats;
    placement_->FillStats(placement_->NvmeSnapshot(), &stats);
    return stats;
  }

  TempDir dir_;
  std::shared_ptr<tiers::testing::MemoryMedium> medium_ =
      std::make_shared<tiers::testing::MemoryMedium>((1 << 20) + 8 * kRegion);
  kvtier::testing::ManualClock dram_clock_;
  tiers::UnixClock unix_clock_;
  std::unique_ptr<tiers::DramTier> dram_;
  std::unique_ptr<tiers::NvmeTier> nvme_;
  std::unique_ptr<NvmePlacement> placement_;
};

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
}  // namespace kvtier::server
