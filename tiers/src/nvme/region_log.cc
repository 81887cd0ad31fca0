#include "tiers/src/nvme/region_log.h"

#include <algorithm>
#include <cassert>
#include <cstddef>

namespace kvtier::tiers::nvme {

RegionLog::RegionLog(uint32_t region_count, uint64_t region_bytes)
    : region_bytes_(region_bytes), regions_(region_count) {}

void RegionLog::Restore(uint32_t region, uint64_t generation) {
  regions_[region].generation = generation;
}

std::optional<uint32_t> RegionLog::Allocate(uint64_t bytes) {
  if (!active_ || bytes > region_bytes_ - write_offset_) return std::nullopt;
  const uint64_t offset = write_offset_;
  write_offset_ += bytes;
  return static_cast<uint32_t>(offset);
}

bool RegionLog::Evictable(uint32_t r) const {
  return active_ != r && !regions_[r].reclaiming && regions_[r].pending_records == 0 &&
         regions_[r].pinned_bytes * 2 <= region_bytes_;
}

uint32_t RegionLog::pending_regions() const {
  uint32_t n = 0;
  for (const Region& r : regions_) n += r.pending_records > 0 ? 1 : 0;
  return n;
}

uint32_t RegionLog::quiet_regions() const {
  uint32_t n = 0;
  for (uint32_t r = 0; r < regions_.size(); ++r) n += Openable(r) ? 1 : 0;
  return n;
}

std::optional<uint32_t> RegionLog::NextToOpen() const {
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    if (Openable(r)) return r;
  }
  const std::vector<uint32_t> oldest = OldestRegions(1);
  if (oldest.empty()) return std::nullopt;
  return oldest.front();
}

std::vector<uint32_t> RegionLog::OldestRegions(size_t n) const {
  std::vector<uint32_t> found;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    if (Evictable(r) && !Quiet(r)) found.push_back(r);
  }
  auto older = [&](uint32_t a, uint32_t b) {
    return regions_[a].generation < regions_[b].generation;
  };
  n = std::min(n, found.size());
  std::partial_sort(found.begin(), found.begin() + static_cast<ptrdiff_t>(n), found.end(), older);
  found.resize(n);
  return found;
}

void RegionLog::Open(uint32_t region, uint64_t generation) {
  assert(generation > regions_[region].generation);
  regions_[region].generation = generation;
  regions_[region].clean = false;
  active_ = region;
  write_offset_ = 0;
}

void RegionLog::Reclaim(uint32_t region, uint64_t generation) {
  assert(active_ != region && generation > regions_[region].generation);
  regions_[region].generation = generation;
  regions_[region].clean = Quiet(region);
  regions_[region].reclaiming = false;
}

std::optional<uint32_t> RegionLog::active() const { return active_; }

void RegionLog::AddLive(uint32_t region, uint64_t bytes, bool pinned) {
  regions_[region].live_bytes += bytes;
  if (pinned) regions_[region].pinned_bytes += bytes;
  live_total_ += bytes;
}

void RegionLog::RemoveLive(uint32_t region, uint64_t bytes, bool pinned) {
  assert(regions_[region].live_bytes >= bytes);
  regions_[region].live_bytes -= bytes;
  if (pinned) regions_[region].pinned_bytes -= bytes;
  live_total_ -= bytes;
}

void RegionLog::RemovePending(uint32_t region) {
  assert(regions_[region].pending_records > 0);
  --regions_[region].pending_records;
}

uint32_t RegionLog::regions_in_use() const {
  uint32_t n = 0;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    if (regions_[r].live_bytes > 0 || active_ == r) ++n;
  }
  return n;
}

}  // namespace kvtier::tiers::nvme
