// A test harness around NvmeTier: a temporary index directory, an in-memory or file device, a
// manual Unix clock, and one-line put/get helpers. Test-only.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvtier/common/testing/manual_clock.h"
#include "kvtier/tiers/nvme_tier.h"
#include "kvtier/tiers/testing/nvme_memory_device.h"
#include "tiers/src/nvme/test_util.h"

namespace kvtier::tiers::nvme::testing {

inline constexpr uint32_t kNs = 1;
inline constexpr uint64_t kRegionBytes = 1 << 20;
inline constexpr int64_t kStartUnixNanos = 1'700'000'000'000'000'000;

class TierHarness {
 public:
  // `regions` regions of kRegionBytes on an in-memory device.
  explicit TierHarness(uint32_t regions = 4)
      : medium_(std::make_shared<tiers::testing::MemoryMedium>((1 << 20) +
                                                               uint64_t{regions} * kRegionBytes)),
        clock_(kStartUnixNanos) {
    options_.index_path = dir_ / "index";
    options_.region_bytes = kRegionBytes;
  }

  NvmeTierOptions& options() { return options_; }
  tiers::testing::MemoryMedium& medium() { return *medium_; }
  kvtier::testing::ManualClock& clock() { return clock_; }
  const TempDir& dir() const { return dir_; }

  // Opens a tier on the medium (a restart when one was open before: closes it first).
  absl::StatusOr<NvmeTier*> Open(std::unique_ptr<NvmeAdmissionPolicy> admission = nullptr,
                                 uint64_t block_bytes = 256 << 10) {
    tier_.reset();
    auto tier = NvmeTier::Create(options_, tiers::testing::NewMemoryDevice(medium_), &clock_,
                                 std::move(admission));
    if (!tier.ok()) return tier.status();
    tier_ = std::move(*tier);
    absl::Status s = tier_->AddNamespace(kNs, block_bytes);
    if (!s.ok()) return s;
    return tier_.get();
  }
  void Close() { tier_.reset(); }
  NvmeTier& tier() { return *tier_; }

 private:
  TempDir dir_;
  std::shared_ptr<tiers::testing::MemoryMedium> medium_;
  kvtier::testing::ManualClock clock_;
  NvmeTierOptions options_;
  std::unique_ptr<NvmeTier> tier_;
};

// A tier of `regions` regions of kRegionBytes on a file in `dir`, with namespace kNs (blocks up
// to 64 KiB); io_uring where the host allows it, or the thread pool.
inline absl::StatusOr<std::unique_ptr<NvmeTier>> OpenFileTier(const TempDir& dir, bool io_uring,
                                                              const Clock* clock, uint32_t regions,
                                                              uint32_t queue_depth) {
  NvmeDeviceOptions d;
  d.path = dir / "nvme.dat";
  d.capacity_bytes = (1 << 20) + uint64_t{regions} * kRegionBytes;
  d.engine = io_uring ? NvmeDeviceOptions::Engine::kAuto : NvmeDeviceOptions::Engine::kThreadPool;
  d.queue_depth = queue_depth;
  absl::StatusOr<std::unique_ptr<NvmeDevice>> device = OpenFileDevice(d);
  if (!device.ok()) return device.status();
  NvmeTierOptions o;
  o.index_path = dir / "index";
  o.region_bytes = kRegionBytes;
  absl::StatusOr<std::unique_ptr<NvmeTier>> tier =
      NvmeTier::Create(o, std::move(*device), clock, nullptr);
  if (!tier.ok()) return tier.status();
  absl::Status s = (*tier)->AddNamespace(kNs, 64 << 10);
  if (!s.ok()) return s;
  return tier;
}

inline absl::Status Put(NvmeTier& tier, uint64_t id, uint64_t version, size_t length,
                        const NvmeWriteOptions& options = {}, uint32_t ns = kNs) {
  const std::vector<std::byte> payload = TestPayload(id, version, length);
  const BlockKey key = TestKey(id);
  const std::span<const std::byte> block(payload);
  return tier.Write(ns, {&key, 1}, {&block, 1}, options)[0];
}

// Writes blocks first..first+n-1 (version 1, `length` bytes each) in one call; every one must
// succeed (a gtest failure names the first that did not).
inline void PutRange(NvmeTier& tier, int first, int n, size_t length,
                     const NvmeWriteOptions& options = {}) {
  std::vector<BlockKey> keys;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<std::span<const std::byte>> blocks;
  for (int i = first; i < first + n; ++i) {
    keys.push_back(TestKey(i));
    payloads.push_back(TestPayload(i, 1, length));
  }
  for (auto& p : payloads) blocks.emplace_back(p);
  const std::vector<absl::Status> statuses = tier.Write(kNs, keys, blocks, options);
  for (size_t i = 0; i < statuses.size(); ++i) {
    ASSERT_TRUE(statuses[i].ok()) << "block " << first + static_cast<int>(i) << ": " << statuses[i];
  }
}

// Puts blocks first, first + 1, ... (before `end`) one call each until one fails; returns that
// failure (OK if none did) and how many were written before it.
inline absl::Status PutUntilRefused(NvmeTier& tier, int first, int end, size_t length,
                                    const NvmeWriteOptions& options, int& written) {
  written = 0;
  for (int i = first; i < end; ++i) {
    absl::Status s = Put(tier, i, 1, length, options);
    if (!s.ok()) return s;
    ++written;
  }
  return absl::OkStatus();
}

// The block's bytes, or the read's error. Reads into an aligned buffer unless `unaligned`.
inline absl::StatusOr<std::vector<std::byte>> Get(NvmeTier& tier, uint64_t id,
                                                  size_t capacity = 256 << 10,
                                                  bool unaligned = false, uint32_t ns = kNs) {
  AlignedBuffer buf(capacity + 4096);
  std::span<std::byte> dst =
      unaligned ? buf.span().subspan(8, capacity) : buf.span().first(capacity);
  absl::StatusOr<NvmeReadResult> r = tier.Read(ns, TestKey(id), dst);
  if (!r.ok()) return r.status();
  return std::vector<std::byte>(dst.begin(), dst.begin() + static_cast<ptrdiff_t>(r->length));
}

// True when the read is a miss or returns exactly `expected`'s bytes, the cache's promise.
inline ::testing::AssertionResult MissOrExactly(NvmeTier& tier, uint64_t id,
                                                const std::vector<std::byte>& expected) {
  absl::StatusOr<std::vector<std::byte>> got = Get(tier, id);
  if (!got.ok()) {
    if (absl::IsNotFound(got.status()) || absl::IsUnavailable(got.status())) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "block " << id << ": " << got.status();
  }
  if (*got != expected) return ::testing::AssertionFailure() << "block " << id << ": WRONG BYTES";
  return ::testing::AssertionSuccess();
}

}  // namespace kvtier::tiers::nvme::testing
