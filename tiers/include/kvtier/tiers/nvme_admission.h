// NvmeAdmissionPolicy: decides which demoted blocks are worth writing to flash.
//
// Flash wears out and its write bandwidth is shared with reads, so a cache should not write
// every block that falls out of DRAM: a block read once and never again costs a write and
// buys nothing. The NVMe tier asks its policy about each block of a demotion batch
// (NvmeWriteOptions::Source::kDemotion) and counts the refusals; write-through puts, shutdown
// flushes and reinsertions are not asked.
//
// Not thread-safe: the tier calls its policy under a lock of its own, one call at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/clock.h"

namespace kvtier::tiers {

struct AdmissionRequest {
  uint32_t namespace_id = 0;
  BlockKey key;
  uint64_t length = 0;
  // Hits the block had in the tier above (reported by the caller with the batch).
  uint32_t upper_tier_hits = 0;
};

class NvmeAdmissionPolicy {
 public:
  virtual ~NvmeAdmissionPolicy() = default;
  // Short name for logs and stats ("all", "hits>=1", "rate").
  virtual std::string_view Name() const = 0;
  // True to write the block. A refused block is simply not cached on NVMe.
  virtual bool Admit(const AdmissionRequest& request) = 0;
};

// Admits every block (--nvme-admission all).
std::unique_ptr<NvmeAdmissionPolicy> NewAdmitAllPolicy();

// Admits blocks with at least `min_hits` hits in the tier above (--nvme-admission hits:N):
// blocks that were reused once are likely to be reused again.
std::unique_ptr<NvmeAdmissionPolicy> NewMinHitsAdmissionPolicy(uint32_t min_hits);

// A token bucket over bytes: admits while the average write rate stays under
// `bytes_per_second`, with bursts up to `burst_bytes` (--nvme-admission rate:SIZE), so flash
// endurance is protected under any workload. `clock` must outlive the policy.
std::unique_ptr<NvmeAdmissionPolicy> NewWriteRateAdmissionPolicy(uint64_t bytes_per_second,
                                                                 uint64_t burst_bytes,
                                                                 const Clock* clock);

// Parses the flag's value: "all", "hits:N" or "rate:SIZE/s" (SIZE as in ParseByteSize; the
// burst is one second's worth). kInvalidArgument naming the accepted forms otherwise.
absl::StatusOr<std::unique_ptr<NvmeAdmissionPolicy>> ParseAdmissionPolicy(std::string_view spec,
                                                                          const Clock* clock);

}  // namespace kvtier::tiers
