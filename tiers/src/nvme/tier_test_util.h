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

inline absl::Status Put(NvmeTier& tier, uint64_t id, uint64_t version, size_t length,
                        const NvmeWriteOptions& options = {}, uint32_t ns = kNs) {
  const std::vector<std::byte> payload = TestPayload(id, version, length);
  const BlockKey key = TestKey(id);
  const std::span<const std::byte> block(payload);
  return tier.Write(ns, {&key, 1}, {&block, 1}, options)[0];
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
