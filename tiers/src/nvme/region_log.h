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
// The writer asks its questions at every region it opens (a 1 TiB tier has 64K regions), so
// none of them scans the regions: every transition keeps the regions that can be opened at
// once in a set by number, the ones that would be evicted in a set by generation, and counts
// the regions holding live and pending records. A transition costs O(1), or O(log regions)
// when it moves a region into or out of a set; CheckCounters compares all of it with a full
// scan (debug builds do after every transition of a small log).
//
// Pure bookkeeping, no I/O; not thread-safe (the tier guards it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/status.h"

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

  // The region to open next, never the active one: an empty region if there is one (the
  // lowest-numbered), else the one with the smallest generation (oldest first). Empty means no
  // live records and no pending ones (placed, not yet committed: such a region was filled a
  // moment ago and is the newest, not free). Regions more than half full of pinned blocks are
  // skipped: reclaiming them would rewrite the pinned blocks and free little, so a tier full of
  // pins reports itself full instead of wearing the flash. nullopt when no region qualifies.
  // O(log regions).
  std::optional<uint32_t> NextToOpen() const;
  // Up to `n` regions that NextToOpen would pick once every quiet region is used, oldest
  // first (equal generations by region number): the ones a batched reclaim takes (see
  // NvmeTierOptions::reclaim_batch_regions). O(n + log regions).
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
  void MarkReclaiming(uint32_t region);
  void AbortReclaim(uint32_t region);
  // Quiet regions other than the active one and those being reclaimed: the ones the writer
  // can open without waiting. O(1).
  uint32_t quiet_regions() const { return static_cast<uint32_t>(openable_.size()); }
  // Regions holding records placed and not yet committed. O(1).
  uint32_t pending_regions() const { return pending_regions_; }
  // True for a region that no index entry can point into: never opened since format
  // (generation 0), or reclaimed and not opened since. Opening it needs no synced index write
  // (NvmeTier's ReclaimRegions says why). Not known across restarts: a restored region is
  // not clean.
  bool Clean(uint32_t region) const {
    return regions_[region].generation == 0 || regions_[region].clean;
  }

  std::optional<uint32_t> active() const { return active_; }
  // 0 for a region never opened since format.
  uint64_t generation(uint32_t region) const { return regions_[region].generation; }

  // Bytes of live (indexed) records per region, for "used" figures and for preferring empty
  // regions; `pinned` records are also counted apart.
  void AddLive(uint32_t region, uint64_t bytes, bool pinned);
  void RemoveLive(uint32_t region, uint64_t bytes, bool pinned);
  uint64_t live_bytes(uint32_t region) const { return regions_[region].live_bytes; }
  uint64_t live_bytes() const { return live_total_; }
  // Records placed in `region` whose commit (index write, or failure) has not finished.
  void AddPending(uint32_t region);
  void RemovePending(uint32_t region);
  uint32_t pending_records(uint32_t region) const { return regions_[region].pending_records; }
  // Regions holding live records, plus the active one. O(1).
  uint32_t regions_in_use() const;

  // Recounts everything the transitions keep (the sets, the counters, the live total) with a
  // full scan of the regions; InternalError naming the first difference. O(regions log regions):
  // for tests, and for debug builds, which run it after every transition of a log of up to
  // kDebugCheckRegions regions.
  absl::Status CheckCounters() const;
  static constexpr size_t kDebugCheckRegions = 1024;

 private:
  struct Region {
    uint64_t generation = 0;
    uint64_t live_bytes = 0;
    uint64_t pinned_bytes = 0;
    uint32_t pending_records = 0;
    bool clean = false;       // see Clean()
    bool reclaiming = false;  // see MarkReclaiming()
  };
  // Where a region stands in the sets and counters; taken before a transition and compared
  // with the state after it by Restand.
  struct Standing {
    bool openable = false;
    bool evictable = false;  // Evictable and not Quiet: in oldest_
    bool live = false;
    bool pending = false;
    uint64_t generation = 0;
  };
  // Whether NextToOpen may evict `r`: not active, not being reclaimed, no record placed in it
  // still uncommitted (a region filled a moment ago, even if its generation is the oldest
  // left when one stream wraps around a small tier), not mostly pinned.
  bool Evictable(uint32_t r) const;
  // Whether NextToOpen may open `r` at once: quiet, not active, not being reclaimed (a region
  // whose records all went meanwhile is still the reclaim job's until it ends).
  bool Openable(uint32_t r) const { return active_ != r && !regions_[r].reclaiming && Quiet(r); }
  Standing StandingOf(uint32_t r) const;
  // Moves `r` in the sets and counters from where it stood (`before`) to where it stands now.
  void Restand(uint32_t r, const Standing& before);
  // CheckCounters, aborting on a difference; debug builds of logs up to kDebugCheckRegions.
  void DebugCheck() const;

  const uint64_t region_bytes_;
  std::vector<Region> regions_;
  std::optional<uint32_t> active_;
  uint64_t write_offset_ = 0;
  uint64_t live_total_ = 0;
  // Kept by Restand at every transition:
  absl::btree_set<uint32_t> openable_;                     // Openable regions, by number
  absl::btree_set<std::pair<uint64_t, uint32_t>> oldest_;  // (generation, r): Evictable, not Quiet
  uint32_t live_regions_ = 0;                              // regions with live_bytes > 0
  uint32_t pending_regions_ = 0;                           // regions with pending records
};

}  // namespace kvtier::tiers::nvme
