// A test fixture around NvmePlacement as kvtierd runs it: a real DRAM tier (on a manual
// clock) and a real NVMe tier over the in-memory fault-injecting device (test-only target
// kvtier_tiers_nvme_testing, injected through the NvmeDevice interface), with the daemon's put
// and get paths as one-line helpers. Two namespaces, kNs and kOtherNs, of kBlock-byte blocks.
// Test-only (header-only; included by *_test.cc).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/common/testing/temp_dir.h"
#include "kvtier/tiers/dram_tier.h"
#include "kvtier/tiers/nvme_tier.h"
#include "kvtier/tiers/testing/nvme_memory_device.h"
#include "nvme_placement.h"
#include "tests/testing/seeded_blocks.h"

namespace kvtier::server::testing {

using StatusCode = absl::StatusCode;

inline constexpr uint32_t kNs = 1;
inline constexpr uint32_t kOtherNs = 2;  // a second namespace, for tests that need one
inline constexpr tiers::OwnerId kOwner = 1;
inline constexpr uint64_t kBlock = 64 << 10;
inline constexpr uint64_t kRegion = 1 << 20;
inline constexpr uint64_t kAlignment = 4096;
inline constexpr uint64_t kRecord = kAlignment + kBlock;  // one header unit, then the payload
inline constexpr int64_t kLeaseTimeout = 1'000'000'000;

inline BlockKey Key(uint64_t id) { return kvtier::testing::SeededKey(id ^ 0x77); }
inline std::vector<std::byte> Content(uint64_t id, uint64_t version) {
  return kvtier::testing::SeededBytes(id * 1000003 + version, kBlock);
}

using kvtier::testing::TempDir;

class PlacementTest : public ::testing::Test {
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
    for (uint32_t ns : {kNs, kOtherNs}) ASSERT_TRUE(dram_->AddNamespace(ns, kBlock).ok());

    tiers::NvmeTierOptions nvme_options;
    nvme_options.index_path = dir_.path() + "/index";
    nvme_options.region_bytes = kRegion;
    auto nvme = tiers::NvmeTier::Create(nvme_options, tiers::testing::NewMemoryDevice(medium_),
                                        &unix_clock_, nullptr);
    ASSERT_TRUE(nvme.ok()) << nvme.status();
    nvme_ = std::move(*nvme);
    placement_ = std::make_unique<NvmePlacement>(NvmePlacementOptions{}, dram_.get(), nvme_.get(),
                                                 tiers::NewAdmitAllPolicy());
    for (uint32_t ns : {kNs, kOtherNs}) ASSERT_TRUE(placement_->AddNamespace(ns, kBlock).ok());
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

  // A put of `ids` (all new to DRAM) as the daemon runs it under --nvme-write-through:
  // reserve, copy into the slots, write through and commit. The codes WriteThroughAndCommit
  // returns.
  std::vector<StatusCode> Put(const std::vector<uint64_t>& ids, uint64_t version,
                              uint32_t ns = kNs) {
    const tiers::LeaseId lease = Reserve(ids, version, ns);
    if (lease == 0) return {};
    absl::StatusOr<std::vector<StatusCode>> codes =
        placement_->WriteThroughAndCommit(kOwner, lease);
    EXPECT_TRUE(codes.ok()) << codes.status();
    return codes.ok() ? *codes : std::vector<StatusCode>{};
  }

  // The same put without write-through: the blocks are in DRAM only.
  void PutDram(const std::vector<uint64_t>& ids, uint64_t version, uint32_t ns = kNs) {
    const tiers::LeaseId lease = Reserve(ids, version, ns);
    ASSERT_NE(lease, 0u);
    absl::StatusOr<std::vector<StatusCode>> codes = dram_->CommitPut(kOwner, lease);
    ASSERT_TRUE(codes.ok()) << codes.status();
    for (StatusCode c : *codes) ASSERT_EQ(c, StatusCode::kOk);
  }

  // Reserves slots for `ids` and copies their bytes in; the lease, or 0 after a failure.
  tiers::LeaseId Reserve(const std::vector<uint64_t>& ids, uint64_t version, uint32_t ns) {
    std::vector<BlockKey> keys;
    for (uint64_t id : ids) keys.push_back(Key(id));
    const std::vector<uint64_t> lengths(ids.size(), kBlock);
    const tiers::LeaseGrant grant = dram_->ReservePut(kOwner, ns, keys, lengths);
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(grant.codes[i], StatusCode::kOk) << "block " << ids[i] << " is in DRAM already";
      if (grant.codes[i] != StatusCode::kOk) return 0;
      const std::vector<std::byte> bytes = Content(ids[i], version);
      std::memcpy(dram_->arena_base() + grant.slots[i].offset, bytes.data(), bytes.size());
    }
    return grant.lease_id;
  }

  // A get as the daemon serves it: DRAM, else a promotion from NVMe. nullopt on a miss.
  std::optional<std::vector<std::byte>> Get(uint64_t id, uint32_t ns = kNs) {
    const BlockKey key = Key(id);
    tiers::LeaseGrant grant = dram_->AcquireRead(kOwner, ns, {&key, 1});
    if (grant.codes[0] != StatusCode::kOk) {
      (void)placement_->Promote(ns, {&key, 1});
      grant = dram_->AcquireRead(kOwner, ns, {&key, 1});
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
  ::testing::AssertionResult Serves(uint64_t id, uint64_t version, uint32_t ns = kNs) {
    const std::optional<std::vector<std::byte>> got = Get(id, ns);
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
  bool OnNvme(uint64_t id, uint32_t ns = kNs) { return nvme_->Contains(ns, Key(id)); }

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

}  // namespace kvtier::server::testing
