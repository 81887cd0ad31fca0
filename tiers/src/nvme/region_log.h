// RegionLog: which region of the NVMe device is being filled, and which is evicted next.
//
// The device's data area is cut into equal regions (16-64 MiB) used as a log, in the manner of
// CacheLib's BlockCache: records are appended to one active region; when it is full another
// region is opened, a free one if there is one, else the oldest (smallest generation), whose
// blocks are evicted all at once. Whole-region eviction keeps writes large and sequential, which
// is what flash wants, and needs no per-block free-space map.
//
// Every opening gives the region a new generation, which is stored in each record header and
// index entry written into it, so that anything left from the region's previous life is
// recognisable as stale.
//
// Pure bookkeeping, no I/O; not thread-safe (the tier guards it).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace kvtier::tiers::nvme {

class RegionLog {
 public:
  RegionLog(uint32_t region_count, uint64_t region_bytes);

  uint32_t region_count() const { return static_cast<uint32_t>(regions_.size()); }
  uint64_t region_bytes() const { return region_bytes_; }

  // At startup: `region` holds indexed records of `generation`. It is sealed (appends go to a
  // newly opened region, since the old write position is not known exactly after a crash).
  void Restore(uint32_t region, uint64_t generation);

  // Offset within the active region for a record of `bytes`, advancing the write position;
  // nullopt when no region is active or the active one has no room.
  std::optional<uint32_t> Allocate(uint64_t bytes);

  // The region to open next, never the active one: an empty region if there is one, else the
  // one with the smallest generation (oldest first). Empty means no live records and no
  // pending ones (placed, not yet committed: such a region was filled a moment ago and is the
  // newest, not free). Regions more than half full of pinned blocks are skipped: reclaiming
  // them would rewrite the pinned blocks and free little, so a tier full of pins reports
  // itself full instead of wearing the flash. nullopt when no region qualifies.
  std::optional<uint32_t> NextToOpen() const;
  // Up to `n` regions that NextToOpen would pick once every quiet region is used, oldest
  // first: the ones a batched reclaim takes (see NvmeTierOptions::reclaim_batch_regions).
  std::vector<uint32_t> OldestRegions(size_t n) const;
  // True when `region` holds neither live nor pending records: opening it evicts nothing, so
  // the writer need not wait for the commits in flight (see NvmeTier's write pipeline).
  bool Quiet(uint32_t region) const {
    return regions_[region].live_bytes == 0 && regions_[region].pending_records == 0;
  }

  // Makes `region` the active one, with `generation` and write position 0; the previously
  // active region is sealed. REQUIRES: generation is larger than every generation before.
  void Open(uint32_t region, uint64_t generation);
  // `region`'s index entries were deleted and `generation` recorded for it, synced, ahead of
  // its opening: it is clean if no live record is left in it (there should be none; a record
  // the index failed to list stays, making the region an ordinary one to reclaim again).
  // Ends a MarkReclaiming. REQUIRES: not active, generation as Open.
  void Reclaim(uint32_t region, uint64_t generation);
  // A reclaim of `region` is queued (NvmeTier's ReclaimAhead): neither NextToOpen nor
  // OldestRegions picks it until Reclaim or AbortReclaim.
  void MarkReclaiming(uint32_t region) { regions_[region].reclaiming = true; }
  void AbortReclaim(uint32_t region) { regions_[region].reclaiming = false; }
  // Quiet regions other than the active one: the ones the writer can open without waiting.
  uint32_t quiet_regions() const;
  // Regions holding records placed and not yet committed.
  uint32_t pending_regions() const;
  // True for a region that no index entry can point into: never opened since format
  // (generation 0), or reclaimed and not opened since. Opening it needs no synced index write
  // (NvmeTier's ReclaimRegions says why). Not known across restarts: a restored region is
  // not clean.
  bool Clean(uint32_t region) const {
    return regions_[region].generation == 0 || regions_[region].clean;
  }

  std::optional<uint32_t> active() const;
  // 0 for a region never opened since format.
  uint64_t generation(uint32_t region) const { return regions_[region].generation; }

  // Bytes of live (indexed) records per region, for "used" figures and for preferring empty
  // regions; `pinned` records are also counted apart.
  void AddLive(uint32_t region, uint64_t bytes, bool pinned);
  void RemoveLive(uint32_t region, uint64_t bytes, bool pinned);
  uint64_t live_bytes(uint32_t region) const { return regions_[region].live_bytes; }
  uint64_t live_bytes() const { return live_total_; }
  // Records placed in `region` whose commit (index write, or failure) has not finished.
  void AddPending(uint32_t region) { ++regions_[region].pending_records; }
  void RemovePending(uint32_t region);
  uint32_t pending_records(uint32_t region) const { return regions_[region].pending_records; }
  // Regions holding live records, plus the active one.
  uint32_t regions_in_use() const;

 private:
  struct Region {
    uint64_t generation = 0;
    uint64_t live_bytes = 0;
    uint64_t pinned_bytes = 0;
    uint32_t pending_records = 0;
    bool clean = false;       // see Clean()
    bool reclaiming = false;  // see MarkReclaiming()
  };
  // Whether NextToOpen may evict `r`: not active, not being reclaimed, no record placed in it
  // still uncommitted (a region filled a moment ago, even if its generation is the oldest
  // left when one stream wraps around a small tier), not mostly pinned.
  bool Evictable(uint32_t r) const;
  // Whether NextToOpen may open `r` at once: quiet, not active, not being reclaimed (a region
  // whose records all went meanwhile is still the reclaim job's until it ends).
  bool Openable(uint32_t r) const { return active_ != r && !regions_[r].reclaiming && Quiet(r); }
  const uint64_t region_bytes_;
  std::vector<Region> regions_;
  std::optional<uint32_t> active_;
  uint64_t write_offset_ = 0;
  uint64_t live_total_ = 0;
};

}  // namespace kvtier::tiers::nvme
