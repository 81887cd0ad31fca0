// Plain counters a tier reports. Counted under the tier's lock; read as a snapshot.
// Invariants (tested): hits + misses == keys asked for by AcquireRead;
// lookup_hit_keys <= lookup_keys; blocks and used_bytes never exceed the capacity.
#pragma once

#include <cstdint>
#include <vector>

namespace kvtier::tiers {

struct TierCounters {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t bytes_in = 0;   // bytes of committed puts
  uint64_t bytes_out = 0;  // bytes reported by RecordBytesOut
  uint64_t puts = 0;       // blocks committed
  uint64_t removes = 0;
  uint64_t lookups = 0;
  uint64_t lookup_keys = 0;
  uint64_t lookup_hit_keys = 0;
  uint64_t expirations = 0;       // blocks dropped because their TTL ran out (not evictions)
  uint64_t quota_evictions = 0;   // evictions to keep a namespace within its quota (DRAM: also
                                  // in evictions; NVMe: records dropped, NvmeCounters::quota_drops)
  uint64_t quota_rejections = 0;  // NVMe tier: blocks refused because the namespace's quota
                                  // cannot hold them
};

struct NamespaceSnapshot {
  uint32_t namespace_id = 0;
  uint64_t block_bytes = 0;
  uint64_t blocks = 0;
  uint64_t used_bytes = 0;     // sum of stored lengths
  uint64_t raw_bytes = 0;      // DRAM tier: the original bytes those stand for (>= used_bytes
                               // when blocks are compressed; ratio = raw_bytes / used_bytes)
  uint64_t slot_bytes = 0;     // DRAM tier: bytes of the slots those blocks occupy, what
                               // quota_bytes bounds (with the slots of blocks being written)
  uint64_t pinned_blocks = 0;  // held by SetPinned (DRAM tier)
  uint64_t quota_bytes = 0;    // the tier's SetNamespaceLimits; 0 = no quota
  int32_t priority = 0;
  int64_t default_ttl_nanos = 0;
  TierCounters counters;
};

struct TierSnapshot {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;    // bytes of slots holding blocks (committed or being written)
  uint64_t blocks = 0;        // committed blocks
  uint64_t stored_bytes = 0;  // DRAM tier: stored lengths of committed blocks
  uint64_t raw_bytes = 0;     // DRAM tier: their original lengths (see NamespaceSnapshot)
  uint64_t leases_active = 0;
  uint64_t leases_expired = 0;  // total since start
  // DRAM tier, totals since start: slabs one size class took from another (their blocks
  // evicted or moved), and blocks such a reclaim moved within their class instead of evicting.
  uint64_t slab_reclaims = 0;
  uint64_t blocks_moved = 0;
  uint64_t slab_reclaims_ahead = 0;  // of slab_reclaims, made by DramTier::ReclaimAhead
  TierCounters counters;
  std::vector<NamespaceSnapshot> namespaces;
};

}  // namespace kvtier::tiers
